//! YAML → validated `Dag`. Pure: no database, no network.
//!
//! The file is read into a span-aware tree ([`super::yaml`]), then a builder walks it key by key,
//! recording every problem with its line and column instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;

use chrono_tz::Tz;
use serde_json::Value;
use updraft_operators::Registry;

use super::Dag;
use super::model::{Param, ParamType, RetryPolicy, Schedule};
use super::reader::Reader;
use super::tasks::{TaskDefaults, build_tasks};
use super::values::{check_id, parse_date, parse_schedule, parse_timezone};
use super::yaml::{self, Entry, Kind, Node};

/// One problem in a DAG file, located.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Top-level keys of a DAG file.
pub const DAG_KEYS: &[&str] = &[
    "dag_id",
    "description",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "tags",
    "is_paused_upon_creation",
    "params",
    "default_args",
    "tasks",
];

/// Keys of `default_args` (each also a per-task override).
pub const DEFAULT_ARGS_KEYS: &[&str] = &[
    "owner",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
];

pub const PARAM_KEYS: &[&str] = &["default", "type", "description", "enum"];

/// Parses and validates one DAG file, collecting every error.
pub fn parse_dag(file: &str, source: &str, registry: &Registry) -> Result<Dag, Vec<Diagnostic>> {
    let mut reader = Reader::new(file);
    let root = match yaml::parse(source) {
        Ok(root) => root,
        Err(errors) => {
            for error in errors {
                reader.error(error.pos, error.message);
            }
            return Err(reader.diagnostics);
        }
    };
    let dag = build_dag(&mut reader, &root, registry);
    if reader.diagnostics.is_empty() {
        Ok(dag)
    } else {
        reader
            .diagnostics
            .sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
        Err(reader.diagnostics)
    }
}

fn build_dag(reader: &mut Reader<'_>, root: &Node, registry: &Registry) -> Dag {
    let mut dag = Dag::default();
    if !matches!(root.kind, Kind::Map(_)) {
        reader.error(
            root.pos,
            format!(
                "a DAG file must be a mapping with `dag_id` and `tasks`, found {}",
                root.type_name()
            ),
        );
        return dag;
    }
    let Some(keys) = reader.mapping(root, "the DAG", DAG_KEYS) else {
        return dag;
    };

    match keys.get("dag_id") {
        Some(entry) => {
            if let Some(dag_id) = reader.text(entry, "") {
                if let Err(message) = check_id(&dag_id) {
                    reader.error(entry.value.pos, format!("`dag_id` {message}"));
                }
                dag.dag_id = dag_id;
            }
        }
        None => reader.error(root.pos, "missing required key `dag_id`"),
    }
    if let Some(entry) = keys.get("description") {
        dag.description = reader
            .optional_string(entry, "")
            .flatten()
            .map(str::to_string);
    }
    if let Some(entry) = keys.get("timezone")
        && let Some(name) = reader.string(entry, "")
    {
        match parse_timezone(name) {
            Ok(timezone) => dag.timezone = timezone,
            Err(message) => reader.error(entry.value.pos, format!("`timezone`: {message}")),
        }
    }
    if let Some(entry) = keys.get("schedule")
        && let Some(text) = reader.optional_string(entry, "")
    {
        dag.schedule = match text.map(parse_schedule) {
            None => Schedule::Manual,
            Some(Ok(schedule)) => schedule,
            Some(Err(message)) => {
                reader.error(entry.value.pos, format!("`schedule`: {message}"));
                Schedule::Manual
            }
        };
    }
    read_dates(reader, &keys, &mut dag);
    if let Some(entry) = keys.get("catchup") {
        dag.catchup = reader.bool(entry, "").unwrap_or(dag.catchup);
    }
    if let Some(entry) = keys.get("is_paused_upon_creation") {
        dag.is_paused_upon_creation = reader
            .bool(entry, "")
            .unwrap_or(dag.is_paused_upon_creation);
    }
    if let Some(entry) = keys.get("max_active_runs") {
        dag.max_active_runs = reader.u32(entry, "", 1).unwrap_or(dag.max_active_runs);
    }
    if let Some(entry) = keys.get("max_active_tasks") {
        dag.max_active_tasks = reader.u32(entry, "", 1).unwrap_or(dag.max_active_tasks);
    }
    if let Some(entry) = keys.get("tags")
        && let Some(tags) = reader.string_list(entry, "")
    {
        dag.tags = tags.into_iter().map(|(tag, _)| tag.to_string()).collect();
    }
    if let Some(entry) = keys.get("params") {
        dag.params = read_params(reader, entry);
    }
    let defaults = match keys.get("default_args") {
        Some(entry) => read_default_args(reader, entry, &dag.owner),
        None => TaskDefaults {
            owner: dag.owner.clone(),
            ..TaskDefaults::default()
        },
    };
    dag.owner = defaults.owner.clone();
    match keys.get("tasks") {
        Some(entry) => dag.tasks = build_tasks(reader, entry, &defaults, registry),
        None => reader.error(root.pos, "missing required key `tasks`"),
    }
    Dag::new(dag)
}

fn read_dates(reader: &mut Reader<'_>, keys: &BTreeMap<&str, &Entry>, dag: &mut Dag) {
    let timezone: Tz = dag.timezone;
    let read = |reader: &mut Reader<'_>, key: &str| {
        let entry = keys.get(key)?;
        let text = reader.optional_string(entry, "")??;
        match parse_date(text, timezone) {
            Ok(date) => Some((date, *entry)),
            Err(message) => {
                reader.error(entry.value.pos, format!("`{key}`: {message}"));
                None
            }
        }
    };
    let start = read(reader, "start_date");
    let end = read(reader, "end_date");
    if let (Some((start, start_entry)), Some((end, end_entry))) = (start, end)
        && start > end
    {
        reader.error(
            end_entry.value.pos,
            format!(
                "`start_date` ({}, line {}) is after `end_date` ({})",
                start.to_rfc3339(),
                start_entry.value.pos.line,
                end.to_rfc3339()
            ),
        );
    }
    dag.start_date = start.map(|(date, _)| date);
    dag.end_date = end.map(|(date, _)| date);
    if dag.start_date.is_none()
        && !matches!(dag.schedule, Schedule::Manual)
        && let Some(entry) = keys.get("schedule")
        && !keys.contains_key("start_date")
    {
        reader.error(
            entry.key_pos,
            "a scheduled DAG needs a `start_date` (or `schedule: null` for manual runs)",
        );
    }
}

/// `default_args`: owner and retry settings inherited by every task.
fn read_default_args(reader: &mut Reader<'_>, entry: &Entry, owner: &str) -> TaskDefaults {
    let mut defaults = TaskDefaults {
        owner: owner.to_string(),
        ..TaskDefaults::default()
    };
    let Some(keys) = reader.mapping(&entry.value, "`default_args`", DEFAULT_ARGS_KEYS) else {
        return defaults;
    };
    apply_overrides(
        reader,
        &keys,
        "`default_args`",
        &mut defaults.owner,
        &mut defaults.retry,
        &mut defaults.execution_timeout,
    );
    defaults
}

/// Reads the retry/owner/timeout keys present in `keys` over the given values (shared by
/// `default_args` and per-task overrides).
pub fn apply_overrides(
    reader: &mut Reader<'_>,
    keys: &BTreeMap<&str, &Entry>,
    context: &str,
    owner: &mut String,
    retry: &mut RetryPolicy,
    execution_timeout: &mut Option<std::time::Duration>,
) {
    if let Some(entry) = keys.get("owner")
        && let Some(text) = reader.text(entry, context)
    {
        *owner = text;
    }
    if let Some(entry) = keys.get("retries") {
        retry.retries = reader.u32(entry, context, 0).unwrap_or(retry.retries);
    }
    if let Some(entry) = keys.get("retry_delay") {
        retry.retry_delay = reader.duration(entry, context).unwrap_or(retry.retry_delay);
    }
    if let Some(entry) = keys.get("retry_exponential_backoff") {
        retry.exponential_backoff = reader
            .bool(entry, context)
            .unwrap_or(retry.exponential_backoff);
    }
    if let Some(entry) = keys.get("max_retry_delay") {
        retry.max_retry_delay = if entry.value.is_null() {
            None
        } else {
            reader.duration(entry, context).or(retry.max_retry_delay)
        };
    }
    if let Some(entry) = keys.get("execution_timeout") {
        *execution_timeout = if entry.value.is_null() {
            None
        } else {
            reader.duration(entry, context).or(*execution_timeout)
        };
    }
}

/// `params`: `name: {default, type, description}`, or `name: value` for a default alone.
fn read_params(reader: &mut Reader<'_>, entry: &Entry) -> BTreeMap<String, Param> {
    let mut params = BTreeMap::new();
    let Some(names) = reader.mapping(&entry.value, "`params`", &[]) else {
        return params;
    };
    for (name, param_entry) in names {
        let context = format!("param `{name}`");
        let param = match &param_entry.value.kind {
            Kind::Map(_) => {
                let Some(keys) = reader.mapping(&param_entry.value, &context, PARAM_KEYS) else {
                    continue;
                };
                let default = keys.get("default").map(|entry| entry.value.to_json());
                let kind = match keys.get("type") {
                    Some(type_entry) => match reader.string(type_entry, &context).map(param_type) {
                        Some(Ok(kind)) => kind,
                        Some(Err(message)) => {
                            reader.error(type_entry.value.pos, format!("{context}: {message}"));
                            continue;
                        }
                        None => continue,
                    },
                    None => default.as_ref().map_or(ParamType::Any, infer_type),
                };
                if let (Some(default), Some(default_entry)) = (&default, keys.get("default"))
                    && !type_matches(kind, default)
                {
                    reader.error(
                        default_entry.value.pos,
                        format!(
                            "{context}: default {default} is not of type `{}`",
                            type_name(kind)
                        ),
                    );
                }
                let description = keys
                    .get("description")
                    .and_then(|entry| reader.string(entry, &context))
                    .map(str::to_string);
                let choices = match keys.get("enum") {
                    Some(entry) => match entry.value.to_json() {
                        Value::Array(choices) if !choices.is_empty() => Some(choices),
                        _ => {
                            reader.error(
                                entry.value.pos,
                                format!("{context}: `enum` must be a non-empty list of values"),
                            );
                            continue;
                        }
                    },
                    None => None,
                };
                let param = Param {
                    default,
                    kind,
                    description,
                    choices,
                };
                if let Some(choices) = &param.choices
                    && let Some(bad) = choices.iter().find(|c| !type_matches(kind, c))
                {
                    let at = keys
                        .get("enum")
                        .map_or(param_entry.value.pos, |e| e.value.pos);
                    reader.error(
                        at,
                        format!(
                            "{context}: `enum` value {bad} is not of type `{}`",
                            type_name(kind)
                        ),
                    );
                    continue;
                }
                if let (Some(default), Some(choices), Some(entry)) =
                    (&param.default, &param.choices, keys.get("default"))
                    && !default.is_null()
                    && !choices.contains(default)
                {
                    reader.error(
                        entry.value.pos,
                        format!("{context}: default {default} is not one of `enum`"),
                    );
                }
                param
            }
            _ => {
                let default = param_entry.value.to_json();
                Param {
                    kind: infer_type(&default),
                    default: Some(default),
                    description: None,
                    choices: None,
                }
            }
        };
        params.insert(name.to_string(), param);
    }
    params
}

const PARAM_TYPES: &[(&str, ParamType)] = &[
    ("string", ParamType::String),
    ("integer", ParamType::Integer),
    ("number", ParamType::Number),
    ("boolean", ParamType::Boolean),
    ("array", ParamType::Array),
    ("object", ParamType::Object),
    ("any", ParamType::Any),
];

fn param_type(text: &str) -> Result<ParamType, String> {
    PARAM_TYPES
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| {
            let names: Vec<&str> = PARAM_TYPES.iter().map(|(name, _)| *name).collect();
            format!(
                "unknown type `{text}`; expected one of: {}",
                names.join(", ")
            )
        })
}

pub fn type_name(kind: ParamType) -> &'static str {
    PARAM_TYPES
        .iter()
        .find(|(_, candidate)| *candidate == kind)
        .map_or("any", |(name, _)| name)
}

fn infer_type(value: &Value) -> ParamType {
    match value {
        Value::String(_) => ParamType::String,
        Value::Number(number) if number.is_i64() || number.is_u64() => ParamType::Integer,
        Value::Number(_) => ParamType::Number,
        Value::Bool(_) => ParamType::Boolean,
        Value::Array(_) => ParamType::Array,
        Value::Object(_) => ParamType::Object,
        Value::Null => ParamType::Any,
    }
}

/// Whether a value fits a param type (null fits any: "no value").
pub fn type_matches(kind: ParamType, value: &Value) -> bool {
    match (kind, value) {
        (ParamType::Any, _) | (_, Value::Null) => true,
        (ParamType::Number, Value::Number(_)) => true,
        (ParamType::Integer, Value::Number(number)) => number.is_i64() || number.is_u64(),
        (kind, value) => infer_type(value) == kind,
    }
}
