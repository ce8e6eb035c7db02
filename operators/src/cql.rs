//! `cql`: runs CQL statements on Cassandra from a connection. Each statement is prepared, so
//! every `?` is bound with the type Cassandra expects for it (never spliced into the text); the
//! last statement's rows, up to `max_rows`, are the output, read page by page.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate};
use futures::StreamExt;
use schemars::JsonSchema;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::frame::response::result::{CollectionType, ColumnType, NativeType};
use scylla::statement::Consistency;
use scylla::value::{Counter, CqlDate, CqlTimestamp, CqlTimeuuid, CqlValue, Row};
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use updraft_secrets::Connection;

use crate::fields::Templated;
use crate::sql::{default_max_rows, default_max_rows_value};
use crate::statements::{BoundedRows, Statements, describe_parameter, parsed, text};
use crate::{Operator, OperatorError, TaskContext};

/// Rows fetched per page.
const PAGE_SIZE: i32 = 1_000;

#[derive(Debug, Default)]
pub struct CqlOperator;

/// `cql`'s fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CqlConfig {
    /// A `cassandra` connection: host (comma-separated contact points), port (default 9042),
    /// login and password, schema (the keyspace statements run in).
    pub conn_id: String,
    /// One statement or a list, run in order. Write values as `?` and give them in
    /// `parameters`.
    pub cql: Statements,
    /// Positional values for the `?` marks: each statement binds the first ones it uses, each
    /// converted to the column's type (a string to a uuid or timestamp, a list to a list or set,
    /// an object to a map).
    #[serde(default)]
    pub parameters: Vec<Value>,
    /// ONE, QUORUM, LOCAL_QUORUM, ALL... Default LOCAL_QUORUM.
    #[serde(default)]
    pub consistency: Option<String>,
    /// Rows of the last statement kept in the output; the rest are counted. Default 1000.
    #[serde(default = "default_max_rows")]
    #[schemars(default = "default_max_rows_value")]
    pub max_rows: Templated<usize>,
}

#[async_trait]
impl Operator for CqlOperator {
    const NAME: &'static str = "cql";
    type Config = CqlConfig;

    fn check(config: &CqlConfig) -> Result<(), String> {
        config.cql.list()?;
        if let Some(name) = &config.consistency {
            consistency_named(name)?;
        }
        Ok(())
    }

    async fn execute(&self, config: CqlConfig, ctx: &TaskContext) -> Result<Value, OperatorError> {
        let connection = ctx.connection(&config.conn_id).map_err(OperatorError::Config)?;
        let statements = config.cql.list().map_err(OperatorError::Config)?;
        let max_rows = config.max_rows.resolve("max_rows")?;
        let consistency = match &config.consistency {
            Some(name) => consistency_named(name).map_err(OperatorError::Config)?,
            None => Consistency::LocalQuorum,
        };
        let work = async {
            let (session, target) = connect(&connection).await?;
            let mut rows = BoundedRows::new(max_rows);
            for (index, text) in statements.iter().enumerate() {
                let name = format!("statement {} of {}", index + 1, statements.len());
                let started = Instant::now();
                rows.clear();
                run(&session, text, &config.parameters, consistency, &mut rows)
                    .await
                    .map_err(|error| OperatorError::Failed(format!("{target}: {name}: {error}")))?;
                ctx.log(format!("{name}: done in {} ms", started.elapsed().as_millis()));
            }
            if rows.truncated() {
                ctx.log(format!("the output keeps the first {max_rows} rows (max_rows)"));
            }
            Ok(rows.into_output(None))
        };
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => Err(OperatorError::Cancelled),
            result = work => result,
        }
    }
}

fn consistency_named(name: &str) -> Result<Consistency, String> {
    Ok(match name.trim().to_ascii_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        other => return Err(format!("`consistency`: unknown level `{other}`")),
    })
}

/// A session to the connection's cluster, in its keyspace when it names one.
async fn connect(connection: &Connection) -> Result<(Session, String), OperatorError> {
    let conn_id = &connection.conn_id;
    if connection.conn_type != "cassandra" {
        return Err(OperatorError::Config(format!(
            "connection `{conn_id}` is of type `{}`; the cql operator needs a `cassandra` one",
            connection.conn_type
        )));
    }
    let points = connection.cassandra_contact_points().map_err(OperatorError::Config)?;
    let target = format!("Cassandra `{conn_id}` ({})", points.join(","));
    let mut builder = SessionBuilder::new()
        .known_nodes(&points)
        .connection_timeout(Duration::from_secs(10));
    if let Some(login) = &connection.login {
        builder = builder.user(login, connection.password.as_deref().unwrap_or_default());
    }
    if let Some(keyspace) = connection.schema.as_deref().filter(|ks| !ks.is_empty()) {
        builder = builder.use_keyspace(keyspace, false);
    }
    let session = builder
        .build()
        .await
        .map_err(|error| OperatorError::Failed(format!("cannot connect to {target}: {error}")))?;
    Ok((session, target))
}

/// Prepares and runs one statement; its rows go to `rows`.
async fn run(
    session: &Session,
    text: &str,
    parameters: &[Value],
    consistency: Consistency,
    rows: &mut BoundedRows,
) -> Result<(), String> {
    let mut prepared = session.prepare(text).await.map_err(|error| error.to_string())?;
    prepared.set_consistency(consistency);
    prepared.set_page_size(PAGE_SIZE);
    let markers = prepared.get_variable_col_specs();
    if markers.len() > parameters.len() {
        return Err(format!(
            "it has {} `?` marks but `parameters` gives {}",
            markers.len(),
            parameters.len()
        ));
    }
    let values = markers
        .iter()
        .zip(parameters)
        .enumerate()
        .map(|(position, (marker, value))| {
            to_cql(marker.typ(), value).map_err(|error| {
                format!("{} for `{}`: {error}", describe_parameter(position + 1, value), marker.name())
            })
        })
        .collect::<Result<Vec<Option<CqlValue>>, String>>()?;
    if prepared.get_current_result_set_col_specs().get().len() == 0 {
        session.execute_unpaged(&prepared, values).await.map_err(|error| error.to_string())?;
        return Ok(());
    }
    let pager = session.execute_iter(prepared, values).await.map_err(|error| error.to_string())?;
    let mut stream = pager.rows_stream::<Row>().map_err(|error| error.to_string())?;
    let mut names: Vec<String> = Vec::new();
    while let Some(row) = stream.next().await {
        let row = row.map_err(|error| error.to_string())?;
        if names.is_empty() {
            names = stream.column_specs().iter().map(|spec| spec.name().to_string()).collect();
        }
        rows.push(|| {
            Ok(names
                .iter()
                .cloned()
                .zip(row.columns.into_iter().map(|value| value.map_or(Value::Null, from_cql)))
                .collect())
        })?;
    }
    Ok(())
}

/// `value` as the CQL type `expected`; null is null.
fn to_cql(expected: &ColumnType, value: &Value) -> Result<Option<CqlValue>, String> {
    fn items(value: &Value) -> Result<&Vec<Value>, String> {
        value.as_array().ok_or_else(|| "expected a list".to_string())
    }
    fn each(item: &ColumnType, values: &[Value]) -> Result<Vec<CqlValue>, String> {
        values
            .iter()
            .map(|value| to_cql(item, value)?.ok_or_else(|| "a collection cannot hold null".to_string()))
            .collect()
    }
    if value.is_null() {
        return Ok(None);
    }
    let cql = match expected {
        ColumnType::Native(native) => match native {
            NativeType::Ascii => CqlValue::Ascii(text(value)),
            NativeType::Text => CqlValue::Text(text(value)),
            NativeType::Boolean => CqlValue::Boolean(value.as_bool().ok_or("expected true or false")?),
            NativeType::TinyInt => CqlValue::TinyInt(parsed(value, "an 8-bit integer")?),
            NativeType::SmallInt => CqlValue::SmallInt(parsed(value, "a 16-bit integer")?),
            NativeType::Int => CqlValue::Int(parsed(value, "a 32-bit integer")?),
            NativeType::BigInt => CqlValue::BigInt(parsed(value, "a 64-bit integer")?),
            NativeType::Counter => CqlValue::Counter(Counter(parsed(value, "a 64-bit integer")?)),
            NativeType::Float => CqlValue::Float(parsed(value, "a number")?),
            NativeType::Double => CqlValue::Double(parsed(value, "a number")?),
            NativeType::Uuid => CqlValue::Uuid(parsed(value, "a UUID")?),
            NativeType::Timeuuid => {
                CqlValue::Timeuuid(CqlTimeuuid::from(parsed::<uuid::Uuid>(value, "a UUID")?))
            }
            NativeType::Inet => CqlValue::Inet(parsed::<IpAddr>(value, "an IP address")?),
            NativeType::Timestamp => CqlValue::Timestamp(CqlTimestamp(match value {
                Value::Number(millis) => millis.as_i64().ok_or("expected milliseconds since 1970")?,
                _ => parsed::<DateTime<chrono::Utc>>(value, "an RFC 3339 timestamp")?.timestamp_millis(),
            })),
            NativeType::Date => {
                let day = parsed::<NaiveDate>(value, "a date like 2024-01-31")?;
                let since_epoch = (day - NaiveDate::default()).num_days();
                CqlValue::Date(CqlDate(
                    u32::try_from(since_epoch + (1 << 31)).map_err(|_| "the date is out of range")?,
                ))
            }
            other => return Err(cannot_bind(&format!("{other:?}"))),
        },
        ColumnType::Collection { typ, .. } => match typ {
            CollectionType::List(item) => CqlValue::List(each(item, items(value)?)?),
            CollectionType::Set(item) => CqlValue::Set(each(item, items(value)?)?),
            CollectionType::Map(key, item) => {
                let object = value.as_object().ok_or("expected an object")?;
                let entries = object
                    .iter()
                    .map(|(name, value)| {
                        let key = to_cql(key, &Value::String(name.clone()))?.ok_or("a map key cannot be null")?;
                        let value = to_cql(item, value)?.ok_or("a map value cannot be null")?;
                        Ok((key, value))
                    })
                    .collect::<Result<_, String>>()?;
                CqlValue::Map(entries)
            }
            other => return Err(cannot_bind(&format!("{other:?}"))),
        },
        other => return Err(cannot_bind(&format!("{other:?}"))),
    };
    Ok(Some(cql))
}

fn cannot_bind(expected: &str) -> String {
    format!("Cassandra expects {expected} here, which the cql operator cannot bind")
}

/// A CQL value as JSON: numbers as numbers, times as RFC 3339 text, collections as lists and
/// objects, everything else (decimals, varints, blobs, durations) as CQL's own text.
fn from_cql(value: CqlValue) -> Value {
    let float = |v: f64| Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number);
    match value {
        CqlValue::Ascii(text) | CqlValue::Text(text) => Value::String(text),
        CqlValue::Boolean(flag) => Value::Bool(flag),
        CqlValue::TinyInt(n) => n.into(),
        CqlValue::SmallInt(n) => n.into(),
        CqlValue::Int(n) => n.into(),
        CqlValue::BigInt(n) | CqlValue::Counter(Counter(n)) => n.into(),
        CqlValue::Float(n) => float(f64::from(n)),
        CqlValue::Double(n) => float(n),
        CqlValue::Uuid(id) => id.to_string().into(),
        CqlValue::Timeuuid(id) => id.to_string().into(),
        CqlValue::Inet(address) => address.to_string().into(),
        CqlValue::Timestamp(CqlTimestamp(millis)) => DateTime::from_timestamp_millis(millis)
            .map_or_else(|| millis.into(), |at| at.to_rfc3339().into()),
        CqlValue::Date(CqlDate(days)) => NaiveDate::default()
            .checked_add_signed(chrono::TimeDelta::days(i64::from(days) - (1 << 31)))
            .map_or_else(|| i64::from(days).into(), |day| day.to_string().into()),
        CqlValue::List(items) | CqlValue::Set(items) | CqlValue::Vector(items) => {
            Value::Array(items.into_iter().map(from_cql).collect())
        }
        CqlValue::Tuple(items) => Value::Array(
            items.into_iter().map(|item| item.map_or(Value::Null, from_cql)).collect(),
        ),
        CqlValue::Map(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(key, value)| {
                    let key = match from_cql(key) {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (key, from_cql(value))
                })
                .collect::<Map<_, _>>(),
        ),
        CqlValue::UserDefinedType { fields, .. } => Value::Object(
            fields
                .into_iter()
                .map(|(name, value)| (name, value.map_or(Value::Null, from_cql)))
                .collect(),
        ),
        CqlValue::Empty => Value::Null,
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_convert_to_the_expected_cql_types_and_back() {
        let cases = [
            (ColumnType::Native(NativeType::Int), json!(42)),
            (ColumnType::Native(NativeType::BigInt), json!(-7)),
            (ColumnType::Native(NativeType::Text), json!("Ada")),
            (ColumnType::Native(NativeType::Boolean), json!(true)),
            (ColumnType::Native(NativeType::Double), json!(2.5)),
            (ColumnType::Native(NativeType::Uuid), json!("6f1c5d1e-8a43-4c53-9c1a-2f7b8e6d4a10")),
            (ColumnType::Native(NativeType::Timestamp), json!("2024-01-31T12:00:00+00:00")),
            (ColumnType::Native(NativeType::Date), json!("1969-07-20")),
            (
                ColumnType::Collection {
                    frozen: false,
                    typ: CollectionType::List(Box::new(ColumnType::Native(NativeType::Text))),
                },
                json!(["a", "b"]),
            ),
            (
                ColumnType::Collection {
                    frozen: false,
                    typ: CollectionType::Map(
                        Box::new(ColumnType::Native(NativeType::Text)),
                        Box::new(ColumnType::Native(NativeType::Int)),
                    ),
                },
                json!({"a": 1, "b": 2}),
            ),
        ];
        for (typ, value) in cases {
            let cql = to_cql(&typ, &value).unwrap().unwrap();
            assert_eq!(from_cql(cql), value, "{typ:?}");
        }
        assert_eq!(to_cql(&ColumnType::Native(NativeType::Int), &json!(null)).unwrap(), None);
    }

    #[test]
    fn a_value_of_the_wrong_shape_says_what_was_expected() {
        let error = to_cql(&ColumnType::Native(NativeType::Uuid), &json!("not-a-uuid")).unwrap_err();
        assert_eq!(error, "expected a UUID");
        let error = to_cql(&ColumnType::Native(NativeType::Int), &json!("3.5")).unwrap_err();
        assert_eq!(error, "expected a 32-bit integer");
    }
}
