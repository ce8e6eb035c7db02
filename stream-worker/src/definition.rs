//! Stream definitions: a YAML file per stream (`streams/*.yaml`) that says where records come from,
//! how a JSON record maps to columns, and which Cassandra table they go to.
//!
//! Parsing is pure (no network): `parse(path, text)` returns the validated [`Stream`] or every
//! error found, each located as `file:line:col`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use scylla::statement::Consistency;
use serde::Deserialize;

use crate::transform::{Stage, Vrl};
use crate::yaml_marks::Marks;

/// Records larger than this go to the dead-letter topic unless the definition says otherwise.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

// ---- the loose spec, mirroring the YAML ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    name: Option<String>,
    source: SourceSpec,
    #[serde(default)]
    types: Vec<TypeSpec>,
    columns: Vec<ColumnSpec>,
    target: TargetSpec,
    dead_letter_topic: Option<String>,
    max_record_bytes: Option<usize>,
    #[serde(rename = "where")]
    filter: Option<String>,
    transform: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSpec {
    topic: String,
    group: String,
    #[serde(default)]
    start_offset: StartOffset,
    conn_id: Option<String>,
    #[serde(default)]
    format: Format,
    registry: Option<String>,
    registry_conn_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeSpec {
    name: String,
    fields: Vec<FieldSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    name: String,
    cql_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSpec {
    name: String,
    cql_type: String,
    field: Option<String>,
    #[serde(default)]
    required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    keyspace: String,
    table: String,
    primary_key: Vec<String>,
    #[serde(default)]
    clustering_key: Vec<String>,
    ttl: Option<u32>,
    #[serde(default)]
    tables: Vec<TableSpec>,
    replication: Option<BTreeMap<String, serde_yaml_ng::Value>>,
    consistency: Option<String>,
    conn_id: Option<String>,
}

/// A fan-out table (`target.tables[i]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSpec {
    table: String,
    primary_key: Vec<String>,
    #[serde(default)]
    clustering_key: Vec<String>,
    columns: Option<Vec<String>>,
    ttl: Option<u32>,
}

// ---- the validated model ----

/// Where to start reading a partition that has no committed offset for the group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartOffset {
    /// From the oldest retained record (the seed's `startingOffsets=earliest`).
    #[default]
    Earliest,
    /// Only records produced after the worker joined.
    Latest,
}

impl StartOffset {
    /// The value of librdkafka's `auto.offset.reset`.
    pub fn as_kafka(self) -> &'static str {
        match self {
            StartOffset::Earliest => "earliest",
            StartOffset::Latest => "latest",
        }
    }
}

/// How a record's value is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A JSON object.
    #[default]
    Json,
    /// Avro in the Confluent wire format: a magic byte, the schema id, the datum; the writer's
    /// schema is read from the schema registry.
    Avro,
}

pub use crate::cql_type::CqlType;

/// A user-defined type of the definition's `types:`, created in the stream's keyspace; a
/// column holds one as `frozen<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserType {
    pub name: String,
    /// Field names and types, in order (scalars and collections of scalars).
    pub fields: Vec<(String, CqlType)>,
}

/// One column of the target table and the JSON field it is read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub cql_type: CqlType,
    /// The JSON field as written (`name` or a dotted path such as `location.postcode`).
    pub field: String,
    pub required: bool,
}

/// One table a stream writes: the main one (`target.table`) or a fan-out one
/// (`target.tables`), each with its own key and columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    /// Partition key columns.
    pub primary_key: Vec<String>,
    pub clustering_key: Vec<String>,
    /// Positions in [`Stream::columns`] of the columns this table holds, in order.
    pub columns: Vec<usize>,
    /// `USING TTL` seconds: rows expire that long after their write time.
    pub ttl: Option<u32>,
}

impl Table {
    /// Whether `column` is part of this table's key.
    pub fn is_key(&self, column: &str) -> bool {
        self.primary_key
            .iter()
            .chain(&self.clustering_key)
            .any(|key| key == column)
    }
}

/// Cassandra's longest TTL: 20 years.
const MAX_TTL_SECONDS: u32 = 630_720_000;

/// A validated stream definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// `name:` or the file stem; used in metrics labels and logs.
    pub name: String,
    pub topic: String,
    pub group: String,
    pub start_offset: StartOffset,
    pub format: Format,
    /// `source.registry`: the schema registry of an Avro stream (else the worker's
    /// `--schema-registry-url`).
    pub registry_url: Option<String>,
    /// The schema registry connection (`source.registry_conn_id`): an HTTP connection whose
    /// host and login the worker uses for its Avro streams.
    pub registry_conn_id: Option<String>,
    pub columns: Vec<Column>,
    pub keyspace: String,
    /// User-defined types (`types:`), created in the keyspace before the tables.
    pub types: Vec<UserType>,
    /// The tables each record is written to: `target.table` first, then `target.tables`. A
    /// record is done (its offset may be committed) when every table has its row.
    pub tables: Vec<Table>,
    /// Keyspace replication options, e.g. `class: SimpleStrategy, replication_factor: "1"`.
    pub replication: BTreeMap<String, String>,
    /// The write consistency level of every insert.
    pub consistency: Consistency,
    pub dead_letter_topic: String,
    pub max_record_bytes: usize,
    /// `where:`, a VRL boolean expression: records for which it is false are skipped.
    pub filter: Option<Vrl>,
    /// `transform:`, a VRL program run on each kept record before its fields map to columns.
    pub transform: Option<Vrl>,
    /// The Kafka connection (`source.conn_id`) whose brokers and settings the worker uses.
    pub kafka_conn_id: Option<String>,
    /// The Cassandra connection (`target.conn_id`) whose hosts and credentials the worker uses.
    pub cassandra_conn_id: Option<String>,
}

/// One problem in one definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every error found in a set of definition files.
#[derive(Debug, thiserror::Error)]
pub struct DefinitionErrors(pub Vec<DefinitionError>);

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{} error(s) in stream definitions:\n{}",
            self.0.len(),
            lines.join("\n")
        )
    }
}

/// Loads every `*.yaml`/`*.yml` file of the given files and directories (directories are not
/// recursed into), collecting the errors of all files before failing.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Stream>, DefinitionErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(error) => errors.push(file_error(path, format!("cannot read: {error}"))),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut streams = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => match parse(file, &text) {
                Ok(stream) => streams.push((file.clone(), stream)),
                Err(mut found) => errors.append(&mut found),
            },
            Err(error) => errors.push(file_error(file, format!("cannot read: {error}"))),
        }
    }
    if streams.is_empty() && errors.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        errors.push(file_error(
            paths.first().map_or(Path::new("."), PathBuf::as_path),
            format!(
                "no stream definitions (*.yaml) found in {}",
                shown.join(", ")
            ),
        ));
    }
    // Names label metrics and logs: two streams with one name would be indistinguishable.
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for (file, stream) in &streams {
        if let Some(first) = names.insert(stream.name.clone(), file.clone()) {
            errors.push(file_error(
                file,
                format!(
                    "duplicate stream name `{}` (also in {})",
                    stream.name,
                    first.display()
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(streams.into_iter().map(|(_, stream)| stream).collect())
    } else {
        Err(DefinitionErrors(errors))
    }
}

fn file_error(file: &Path, message: String) -> DefinitionError {
    DefinitionError {
        file: file.to_path_buf(),
        line: 1,
        column: 1,
        message,
    }
}

/// Parses and validates one definition. `file` is used for error locations and the default name.
pub fn parse(file: &Path, text: &str) -> Result<Stream, Vec<DefinitionError>> {
    let spec: Spec = match serde_yaml_ng::from_str(text) {
        Ok(spec) => spec,
        Err(error) => {
            let (line, column) = error.location().map_or((1, 1), |l| (l.line(), l.column()));
            let message = strip_location(&error.to_string());
            return Err(vec![DefinitionError {
                file: file.to_path_buf(),
                line,
                column,
                message,
            }]);
        }
    };
    let marks = Marks::of(text);
    let mut errors = Vec::new();
    let mut error_at = |path: &str, message: String| {
        let (line, column) = marks.find(path);
        errors.push(DefinitionError {
            file: file.to_path_buf(),
            line,
            column,
            message,
        });
    };

    let name = spec.name.clone().unwrap_or_else(|| {
        file.file_stem().map_or_else(
            || "stream".to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    });
    if spec.source.topic.trim().is_empty() {
        error_at("source.topic", "source.topic must not be empty".into());
    }
    if spec.source.group.trim().is_empty() {
        error_at("source.group", "source.group must not be empty".into());
    }
    if let Err(why) = check_identifier(&spec.target.keyspace) {
        error_at(
            "target.keyspace",
            format!("target.keyspace `{}` {why}", spec.target.keyspace),
        );
    }
    for (path, conn_id) in [
        ("source.conn_id", &spec.source.conn_id),
        ("source.registry_conn_id", &spec.source.registry_conn_id),
        ("target.conn_id", &spec.target.conn_id),
    ] {
        if let Some(conn_id) = conn_id
            && let Err(why) = updraft_secrets::Connection::validate_conn_id(conn_id)
        {
            error_at(path, format!("{path} `{conn_id}`: {why}"));
        }
    }
    if spec.source.registry.is_some() && spec.source.registry_conn_id.is_some() {
        error_at(
            "source.registry_conn_id",
            "give source.registry or source.registry_conn_id, not both".into(),
        );
    }
    if spec.source.registry_conn_id.is_some() && spec.source.format != Format::Avro {
        error_at(
            "source.registry_conn_id",
            "source.registry_conn_id is read only with `format: avro`".into(),
        );
    }
    if let Some(url) = &spec.source.registry {
        if spec.source.format != Format::Avro {
            error_at(
                "source.registry",
                "source.registry is read only with `format: avro`".into(),
            );
        } else if let Err(error) = schema_registry::Registry::new(url) {
            error_at("source.registry", format!("source.registry: {error}"));
        }
    }
    if spec.columns.is_empty() {
        error_at("columns", "a stream needs at least one column".into());
    }

    let mut types: Vec<UserType> = Vec::new();
    for (index, declared) in spec.types.iter().enumerate() {
        let path = format!("types[{index}]");
        if let Err(why) = check_identifier(&declared.name) {
            error_at(
                &format!("{path}.name"),
                format!("type `{}` {why}", declared.name),
            );
        }
        if types.iter().any(|t| t.name == declared.name) {
            error_at(
                &format!("{path}.name"),
                format!("type `{}` is declared twice", declared.name),
            );
        }
        if declared.fields.is_empty() {
            error_at(
                &format!("{path}.fields"),
                "a type needs at least one field".into(),
            );
        }
        let mut fields = Vec::new();
        for (at, field) in declared.fields.iter().enumerate() {
            if let Err(why) = check_identifier(&field.name) {
                error_at(
                    &format!("{path}.fields[{at}].name"),
                    format!("field `{}` {why}", field.name),
                );
            }
            // Fields are scalars or collections of them: no type inside a type.
            match CqlType::parse(&field.cql_type, &|_| false) {
                Ok(cql_type) => fields.push((field.name.clone(), cql_type)),
                Err(why) => error_at(
                    &format!("{path}.fields[{at}].cql_type"),
                    format!("field `{}` of type `{}`: {why}", field.name, declared.name),
                ),
            }
        }
        types.push(UserType {
            name: declared.name.clone(),
            fields,
        });
    }

    let mut columns = Vec::new();
    let mut seen = HashMap::new();
    for (index, column) in spec.columns.iter().enumerate() {
        if let Err(why) = check_identifier(&column.name) {
            error_at(
                &format!("columns[{index}].name"),
                format!("column `{}` {why}", column.name),
            );
        }
        if let Some(first) = seen.insert(column.name.clone(), index) {
            error_at(
                &format!("columns[{index}].name"),
                format!(
                    "duplicate column `{}` (first defined as columns[{first}])",
                    column.name
                ),
            );
        }
        let cql_type = CqlType::parse(&column.cql_type, &|name| {
            types
                .iter()
                .any(|declared: &UserType| declared.name == name)
        })
        .map_err(|why| {
            error_at(
                &format!("columns[{index}].cql_type"),
                format!("column `{}`: {why}", column.name),
            );
        })
        .ok();
        let field = column.field.clone().unwrap_or_else(|| column.name.clone());
        if field.trim().is_empty() || field.split('.').any(str::is_empty) {
            error_at(
                &format!("columns[{index}].field"),
                format!("invalid field path `{field}`"),
            );
        }
        if let Some(cql_type) = cql_type {
            columns.push(Column {
                name: column.name.clone(),
                cql_type,
                field,
                required: column.required,
            });
        }
    }

    let all_columns: Vec<String> = spec.columns.iter().map(|c| c.name.clone()).collect();
    let mut tables = vec![table(
        "target",
        TableSpec {
            table: spec.target.table.clone(),
            primary_key: spec.target.primary_key.clone(),
            clustering_key: spec.target.clustering_key.clone(),
            columns: None,
            ttl: spec.target.ttl,
        },
        &all_columns,
        &mut error_at,
    )];
    for (index, fan_out) in spec.target.tables.iter().enumerate() {
        let path = format!("target.tables[{index}]");
        if tables.iter().any(|t| t.name == fan_out.table) {
            error_at(
                &format!("{path}.table"),
                format!("table `{}` is written twice", fan_out.table),
            );
        }
        tables.push(table(
            &path,
            TableSpec {
                table: fan_out.table.clone(),
                primary_key: fan_out.primary_key.clone(),
                clustering_key: fan_out.clustering_key.clone(),
                columns: fan_out.columns.clone(),
                ttl: fan_out.ttl,
            },
            &all_columns,
            &mut error_at,
        ));
    }
    // Key columns can never be null in Cassandra: a record without one is a bad record.
    for column in &mut columns {
        if tables.iter().any(|t| t.is_key(&column.name)) {
            column.required = true;
        }
    }

    let replication = match &spec.target.replication {
        None => BTreeMap::from([
            ("class".to_string(), "SimpleStrategy".to_string()),
            ("replication_factor".to_string(), "1".to_string()),
        ]),
        Some(map) => {
            let mut out = BTreeMap::new();
            for (key, value) in map {
                let text = match value {
                    serde_yaml_ng::Value::String(s) => Some(s.clone()),
                    serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
                match text {
                    Some(text) if !text.contains('\'') && !key.contains('\'') => {
                        out.insert(key.clone(), text);
                    }
                    _ => error_at(
                        &format!("target.replication.{key}"),
                        format!("replication option `{key}` must be a plain string or number"),
                    ),
                }
            }
            if !out.contains_key("class") {
                error_at(
                    "target.replication",
                    "target.replication needs a `class`".into(),
                );
            }
            out
        }
    };

    let consistency = match spec.target.consistency.as_deref() {
        None => default_consistency(&replication),
        Some(name) => consistency_named(name).unwrap_or_else(|| {
            error_at(
                "target.consistency",
                format!("unknown consistency level `{name}` (one of {CONSISTENCY_NAMES})"),
            );
            Consistency::LocalQuorum
        }),
    };

    let max_record_bytes = spec.max_record_bytes.unwrap_or(DEFAULT_MAX_RECORD_BYTES);
    if max_record_bytes == 0 {
        error_at(
            "max_record_bytes",
            "max_record_bytes must be greater than 0".into(),
        );
    }
    let dead_letter_topic = spec
        .dead_letter_topic
        .clone()
        .unwrap_or_else(|| format!("{}.dlq", spec.source.topic));
    if dead_letter_topic == spec.source.topic {
        error_at(
            "dead_letter_topic",
            "dead_letter_topic must differ from source.topic".into(),
        );
    }

    let mut programs = [None, None];
    for (slot, stage, source) in [
        (0, Stage::Where, &spec.filter),
        (1, Stage::Transform, &spec.transform),
    ] {
        let Some(source) = source else { continue };
        match Vrl::compile(stage, source) {
            Ok(program) => programs[slot] = Some(program),
            Err(found) => {
                for error in found {
                    let (line, column) =
                        program_position(text, &marks, stage.key(), source, error.offset);
                    errors.push(DefinitionError {
                        file: file.to_path_buf(),
                        line,
                        column,
                        message: error.message,
                    });
                }
            }
        }
    }
    let [filter, transform] = programs;

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Stream {
        name,
        topic: spec.source.topic,
        group: spec.source.group,
        start_offset: spec.source.start_offset,
        format: spec.source.format,
        registry_url: spec.source.registry,
        registry_conn_id: spec.source.registry_conn_id,
        columns,
        keyspace: spec.target.keyspace,
        types,
        tables,
        replication,
        consistency,
        dead_letter_topic,
        max_record_bytes,
        filter,
        transform,
        kafka_conn_id: spec.source.conn_id,
        cassandra_conn_id: spec.target.conn_id,
    })
}

/// Validates one table at `path` (`target` or `target.tables[i]`): its name, its columns (by
/// default every column of the stream) and that each key column is among them.
fn table(
    path: &str,
    spec: TableSpec,
    all_columns: &[String],
    error_at: &mut impl FnMut(&str, String),
) -> Table {
    if let Err(why) = check_identifier(&spec.table) {
        error_at(
            &format!("{path}.table"),
            format!("{path}.table `{}` {why}", spec.table),
        );
    }
    let mut columns = Vec::new();
    match &spec.columns {
        None => columns.extend(0..all_columns.len()),
        Some(names) => {
            for (index, name) in names.iter().enumerate() {
                match all_columns.iter().position(|c| c == name) {
                    Some(_) if names[..index].contains(name) => error_at(
                        &format!("{path}.columns[{index}]"),
                        format!("column `{name}` is listed twice"),
                    ),
                    Some(position) => columns.push(position),
                    None => error_at(
                        &format!("{path}.columns[{index}]"),
                        format!("column `{name}` is not one of the stream's columns"),
                    ),
                }
            }
        }
    }
    if spec.primary_key.is_empty() {
        error_at(
            &format!("{path}.primary_key"),
            format!("{path}.primary_key needs at least one column"),
        );
    }
    for (kind, keys) in [
        ("primary_key", &spec.primary_key),
        ("clustering_key", &spec.clustering_key),
    ] {
        for (index, key) in keys.iter().enumerate() {
            if !columns.iter().any(|&c| all_columns[c] == *key) {
                let whose = if spec.columns.is_some() {
                    "this table's columns"
                } else {
                    "the columns"
                };
                error_at(
                    &format!("{path}.{kind}[{index}]"),
                    format!("{kind} column `{key}` is not one of {whose}"),
                );
            }
        }
    }
    if spec
        .ttl
        .is_some_and(|ttl| ttl == 0 || ttl > MAX_TTL_SECONDS)
    {
        error_at(
            &format!("{path}.ttl"),
            format!("{path}.ttl must be 1 to {MAX_TTL_SECONDS} seconds (20 years)"),
        );
    }
    Table {
        name: spec.table,
        primary_key: spec.primary_key,
        clustering_key: spec.clustering_key,
        columns,
        ttl: spec.ttl,
    }
}

/// Unquoted CQL identifiers are folded to lower case; we accept only names that mean the same
/// quoted or not, so the schema check compares like with like.
fn check_identifier(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts_well || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err("must be a lower-case identifier ([a-z][a-z0-9_]*)");
    }
    if name.len() > 48 {
        return Err("is longer than 48 characters");
    }
    Ok(())
}

/// Where byte `offset` of a VRL program (the value of top-level `key`) is in the YAML file.
/// Exact for a literal block (`|`, which keeps the program's lines and indents each alike) and
/// for a plain value; the value's start for a quoted or folded one.
fn program_position(
    text: &str,
    marks: &Marks,
    key: &str,
    source: &str,
    offset: usize,
) -> (usize, usize) {
    let (line, column) = marks.find(key);
    let value_start = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.get(column.saturating_sub(1)..))
        .unwrap_or_default();
    if !value_start.starts_with(source.lines().next().unwrap_or_default()) {
        return (line, column);
    }
    let before = &source[..offset.min(source.len())];
    let program_line = before.matches('\n').count();
    let program_column = before.len() - before.rfind('\n').map_or(0, |at| at + 1);
    (line + program_line, column + program_column)
}

fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
#[path = "definition_tests.rs"]
mod tests;

const CONSISTENCY_NAMES: &str =
    "ANY, ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE";

fn consistency_named(name: &str) -> Option<Consistency> {
    Some(match name.to_ascii_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        _ => return None,
    })
}

/// `LOCAL_QUORUM` when a quorum survives a node's loss (3 replicas or more in a data centre),
/// else `LOCAL_ONE`: with 2 replicas a quorum is both, so one node down would stop every write.
fn default_consistency(replication: &BTreeMap<String, String>) -> Consistency {
    let most_replicas = replication
        .iter()
        .filter(|(key, _)| key.as_str() != "class")
        .filter_map(|(_, value)| value.parse::<u32>().ok())
        .max()
        .unwrap_or(1);
    if most_replicas >= 3 {
        Consistency::LocalQuorum
    } else {
        Consistency::LocalOne
    }
}
