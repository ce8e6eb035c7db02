//! `sql`: runs statements on PostgreSQL from a connection, in one transaction unless
//! `autocommit`. Each statement is prepared first, so every parameter is bound with the type
//! the server expects for it (never spliced into the text); the last statement's rows, up to
//! `max_rows`, are the output.

use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgRow, PgSslMode, Postgres};
use sqlx::query::Query;
use sqlx::{
    AssertSqlSafe, Column, Connection as _, Either, Executor, Row, SqlSafeStr, Statement, TypeInfo,
    ValueRef,
};
use updraft_secrets::Connection;

use crate::fields::Templated;
use crate::statements::{
    BoundedRows, DEFAULT_MAX_ROWS, Statements, describe_parameter, parsed, text,
};
use crate::{Operator, OperatorError, TaskContext};

#[derive(Debug, Default)]
pub struct SqlOperator;

/// `sql`'s fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// A `postgres` connection: host, port (default 5432), login, password, schema (the
    /// database) and `extra.sslmode` (disable, prefer, require, verify-ca, verify-full).
    pub conn_id: String,
    /// One statement or a list, run in order. Write values as `$1`, `$2`... and give them in
    /// `parameters`; a template in the text is rendered into it as is.
    pub sql: Statements,
    /// Positional values for `$1`, `$2`...: each statement binds the first ones it uses, each
    /// converted to the type PostgreSQL infers for it (a string to a timestamptz, a list to an
    /// array...).
    #[serde(default)]
    pub parameters: Vec<Value>,
    /// Commit each statement on its own (for `CREATE DATABASE`, `VACUUM`); by default all of
    /// them commit together or not at all.
    #[serde(default)]
    pub autocommit: bool,
    /// Rows of the last statement kept in the output; the rest are counted. Default 1000.
    #[serde(default = "default_max_rows")]
    #[schemars(default = "default_max_rows_value")]
    pub max_rows: Templated<usize>,
}

pub(crate) fn default_max_rows() -> Templated<usize> {
    Templated::Value(DEFAULT_MAX_ROWS)
}

pub(crate) fn default_max_rows_value() -> usize {
    DEFAULT_MAX_ROWS
}

#[async_trait]
impl Operator for SqlOperator {
    const NAME: &'static str = "sql";
    type Config = SqlConfig;

    fn check(config: &SqlConfig) -> Result<(), String> {
        config.sql.list().map(drop)
    }

    async fn execute(&self, config: SqlConfig, ctx: &TaskContext) -> Result<Value, OperatorError> {
        let connection = ctx.connection(&config.conn_id).map_err(OperatorError::Config)?;
        let (options, target) = connect_options(&connection).map_err(OperatorError::Config)?;
        let statements = config.sql.list().map_err(OperatorError::Config)?;
        let max_rows = config.max_rows.resolve("max_rows")?;
        let work = async {
            let mut conn = PgConnection::connect_with(&options)
                .await
                .map_err(|error| OperatorError::Failed(format!("cannot connect to {target}: {error}")))?;
            let mut rows = BoundedRows::new(max_rows);
            let failed = |error: String| OperatorError::Failed(format!("{target}: {error}"));
            let affected = if config.autocommit {
                run(&mut conn, &statements, &config.parameters, &mut rows, ctx).await.map_err(failed)?
            } else {
                let mut transaction = conn.begin().await.map_err(|e| failed(e.to_string()))?;
                let affected = run(&mut transaction, &statements, &config.parameters, &mut rows, ctx)
                    .await
                    .map_err(failed)?;
                transaction.commit().await.map_err(|e| failed(format!("commit: {e}")))?;
                affected
            };
            if rows.truncated() {
                ctx.log(format!("the output keeps the first {max_rows} rows (max_rows)"));
            }
            Ok(rows.into_output(Some(affected)))
        };
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => Err(OperatorError::Cancelled),
            result = work => result,
        }
    }
}

/// Connect options from an Airflow `postgres` connection, and how messages name it.
fn connect_options(connection: &Connection) -> Result<(PgConnectOptions, String), String> {
    let conn_id = &connection.conn_id;
    if !matches!(connection.conn_type.as_str(), "postgres" | "postgresql") {
        return Err(format!(
            "connection `{conn_id}` is of type `{}`; the sql operator needs a `postgres` one",
            connection.conn_type
        ));
    }
    let host = connection.host.as_deref().filter(|host| !host.is_empty()).unwrap_or("127.0.0.1");
    let port = connection.port.unwrap_or(5432);
    let mut options = PgConnectOptions::new_without_pgpass()
        .host(host)
        .port(port)
        .application_name("updraft");
    if let Some(login) = &connection.login {
        options = options.username(login);
    }
    if let Some(password) = &connection.password {
        options = options.password(password);
    }
    if let Some(database) = connection.schema.as_deref().filter(|db| !db.is_empty()) {
        options = options.database(database);
    }
    let extra = connection.extra_dejson().map_err(|error| error.to_string())?;
    if let Some(mode) = extra.get("sslmode") {
        let mode: PgSslMode = mode
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|error| format!("connection `{conn_id}`: extra `sslmode`: {error}"))?;
        options = options.ssl_mode(mode);
    }
    let database = connection.schema.as_deref().unwrap_or("");
    Ok((options, format!("PostgreSQL `{conn_id}` ({host}:{port}/{database})")))
}

/// Runs every statement; `rows` ends with the last one's. Returns the last one's affected rows.
async fn run(
    conn: &mut PgConnection,
    statements: &[&str],
    parameters: &[Value],
    rows: &mut BoundedRows,
    ctx: &TaskContext,
) -> Result<u64, String> {
    let mut affected = 0;
    for (index, text) in statements.iter().enumerate() {
        let started = Instant::now();
        let name = format!("statement {}", index + 1);
        rows.clear();
        let prepared = (&mut *conn)
            .prepare(AssertSqlSafe(text.to_string()).into_sql_str())
            .await
            .map_err(|error| format!("{name}: {}", server_message(&error)))?;
        let types = match prepared.parameters() {
            Some(Either::Left(types)) => types.to_vec(),
            _ => Vec::new(),
        };
        if types.len() > parameters.len() {
            return Err(format!(
                "{name} uses ${} but `parameters` gives {}",
                types.len(),
                parameters.len()
            ));
        }
        let mut query = sqlx::query(AssertSqlSafe(text.to_string()));
        for (position, (expected, value)) in types.iter().zip(parameters).enumerate() {
            query = bind(query, expected.name(), value)
                .map_err(|error| format!("{name}: {}: {error}", describe_parameter(position + 1, value)))?;
        }
        affected = if prepared.columns().is_empty() {
            query
                .execute(&mut *conn)
                .await
                .map_err(|error| format!("{name}: {}", server_message(&error)))?
                .rows_affected()
        } else {
            let mut results = query.fetch(&mut *conn);
            while let Some(row) = futures::StreamExt::next(&mut results).await {
                let row = row.map_err(|error| format!("{name}: {}", server_message(&error)))?;
                rows.push(|| row_to_json(&row))
                    .map_err(|error| format!("{name}: {error}"))?;
            }
            rows.row_count()
        };
        ctx.log(format!(
            "{name} of {}: {affected} rows affected in {} ms",
            statements.len(),
            started.elapsed().as_millis()
        ));
    }
    Ok(affected)
}

/// The server's own message (with its SQLSTATE) where there is one.
fn server_message(error: &sqlx::Error) -> String {
    match error.as_database_error() {
        Some(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        None => error.to_string(),
    }
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// Binds `value` as the type PostgreSQL expects (`expected`, the type's name).
fn bind<'q>(query: PgQuery<'q>, expected: &str, value: &Value) -> Result<PgQuery<'q>, String> {
    fn list<T>(value: &Value, item: impl Fn(&Value) -> Result<T, String>) -> Result<Vec<Option<T>>, String> {
        let Value::Array(items) = value else {
            return Err("expected a list".into());
        };
        items.iter().map(|value| (!value.is_null()).then(|| item(value)).transpose()).collect()
    }
    let null = value.is_null();
    Ok(match expected {
        "BOOL" => query.bind((!null).then(|| value.as_bool().ok_or("expected true or false")).transpose()?),
        "INT2" => query.bind((!null).then(|| parsed::<i16>(value, "a 16-bit integer")).transpose()?),
        "INT4" => query.bind((!null).then(|| parsed::<i32>(value, "a 32-bit integer")).transpose()?),
        "INT8" => query.bind((!null).then(|| parsed::<i64>(value, "a 64-bit integer")).transpose()?),
        "FLOAT4" => query.bind((!null).then(|| parsed::<f32>(value, "a number")).transpose()?),
        "FLOAT8" => query.bind((!null).then(|| parsed::<f64>(value, "a number")).transpose()?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" => query.bind((!null).then(|| text(value))),
        "UUID" => query.bind((!null).then(|| parsed::<uuid::Uuid>(value, "a UUID")).transpose()?),
        "JSON" | "JSONB" => query.bind(sqlx::types::Json(value.clone())),
        "TIMESTAMPTZ" => query.bind(
            (!null)
                .then(|| parsed::<DateTime<Utc>>(value, "an RFC 3339 timestamp with a zone"))
                .transpose()?,
        ),
        "TIMESTAMP" => query.bind(
            (!null)
                .then(|| parsed::<NaiveDateTime>(value, "a timestamp like 2024-01-31T12:00:00"))
                .transpose()?,
        ),
        "DATE" => query.bind((!null).then(|| parsed::<NaiveDate>(value, "a date like 2024-01-31")).transpose()?),
        "TEXT[]" | "VARCHAR[]" => query.bind((!null).then(|| list(value, |v| Ok(text(v)))).transpose()?),
        "INT4[]" => query.bind((!null).then(|| list(value, |v| parsed::<i32>(v, "32-bit integers"))).transpose()?),
        "INT8[]" => query.bind((!null).then(|| list(value, |v| parsed::<i64>(v, "64-bit integers"))).transpose()?),
        other => {
            return Err(format!(
                "PostgreSQL expects {other} here, which the sql operator cannot bind; cast the parameter in the statement (e.g. `$1::text::{}`)",
                other.to_lowercase()
            ));
        }
    })
}

/// One row as `{column: value}`.
fn row_to_json(row: &PgRow) -> Result<Map<String, Value>, String> {
    let mut object = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let value = column_to_json(row, index, column.type_info().name())
            .map_err(|error| format!("column `{}`: {error}", column.name()))?;
        object.insert(column.name().to_string(), value);
    }
    Ok(object)
}

fn column_to_json(row: &PgRow, index: usize, type_name: &str) -> Result<Value, String> {
    fn get<'r, T>(row: &'r PgRow, index: usize) -> Result<Option<T>, String>
    where
        T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
    {
        row.try_get::<Option<T>, _>(index).map_err(|error| error.to_string())
    }
    fn float(value: Option<f64>) -> Value {
        value.map_or(Value::Null, |v| Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number))
    }
    let json = |value: Option<Value>| value.unwrap_or(Value::Null);
    Ok(match type_name {
        "BOOL" => json(get::<bool>(row, index)?.map(Value::from)),
        "INT2" => json(get::<i16>(row, index)?.map(Value::from)),
        "INT4" => json(get::<i32>(row, index)?.map(Value::from)),
        "INT8" => json(get::<i64>(row, index)?.map(Value::from)),
        "FLOAT4" => float(get::<f32>(row, index)?.map(f64::from)),
        "FLOAT8" => float(get::<f64>(row, index)?),
        "NUMERIC" => {
            let raw = row.try_get_raw(index).map_err(|error| error.to_string())?;
            if raw.is_null() {
                Value::Null
            } else {
                numeric_to_json(raw.as_bytes().map_err(|error| error.to_string())?)?
            }
        }
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => json(get::<String>(row, index)?.map(Value::from)),
        "UUID" => json(get::<uuid::Uuid>(row, index)?.map(|id| Value::from(id.to_string()))),
        "JSON" | "JSONB" => json(get::<sqlx::types::Json<Value>>(row, index)?.map(|json| json.0)),
        "TIMESTAMPTZ" => json(get::<DateTime<Utc>>(row, index)?.map(|at| Value::from(at.to_rfc3339()))),
        "TIMESTAMP" => json(get::<NaiveDateTime>(row, index)?.map(|at| Value::from(at.to_string()))),
        "DATE" => json(get::<NaiveDate>(row, index)?.map(|day| Value::from(day.to_string()))),
        "TIME" => json(get::<NaiveTime>(row, index)?.map(|time| Value::from(time.to_string()))),
        "VOID" => Value::Null,
        "TEXT[]" | "VARCHAR[]" => json(get::<Vec<Option<String>>>(row, index)?.map(Value::from)),
        "INT4[]" => json(get::<Vec<Option<i32>>>(row, index)?.map(Value::from)),
        "INT8[]" => json(get::<Vec<Option<i64>>>(row, index)?.map(Value::from)),
        other => {
            return Err(format!(
                "the sql operator cannot read type {other}; cast it in the statement (e.g. `::text`, or `to_jsonb(...)`)"
            ));
        }
    })
}

/// PostgreSQL's binary NUMERIC (base-10000 digits) as a JSON number where one holds it exactly
/// (integers in 64 bits, up to 15 significant digits otherwise), else as its decimal text.
fn numeric_to_json(bytes: &[u8]) -> Result<Value, String> {
    let word = |at: usize| -> Result<i16, String> {
        bytes
            .get(at..at + 2)
            .map(|pair| i16::from_be_bytes([pair[0], pair[1]]))
            .ok_or_else(|| "a NUMERIC value is cut short".to_string())
    };
    let (ndigits, weight, sign, dscale) = (word(0)?, word(2)?, word(4)? as u16, word(6)? as u16);
    match sign {
        0xC000 => return Ok(Value::from("NaN")),
        0xD000 => return Ok(Value::from("Infinity")),
        0xF000 => return Ok(Value::from("-Infinity")),
        _ => {}
    }
    let digits = (0..ndigits.max(0) as usize)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<Vec<_>, _>>()?;
    let group = |position: i32| -> i16 {
        usize::try_from(position).ok().and_then(|p| digits.get(p).copied()).unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        text.push_str(&group(0).to_string());
        for position in 1..=i32::from(weight) {
            text.push_str(&format!("{:04}", group(position)));
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut position = i32::from(weight) + 1;
        while fraction.len() < usize::from(dscale) {
            fraction.push_str(&format!("{:04}", group(position)));
            position += 1;
        }
        fraction.truncate(usize::from(dscale));
        text.push('.');
        text.push_str(&fraction);
    }
    let significant = text.chars().filter(char::is_ascii_digit).collect::<String>();
    let significant = significant.trim_start_matches('0').len();
    if dscale == 0
        && let Ok(integer) = text.parse::<i64>()
    {
        return Ok(Value::from(integer));
    }
    if significant <= 15
        && let Some(number) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Ok(Value::Number(number));
    }
    Ok(Value::String(text))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// PostgreSQL's binary NUMERIC: ndigits, weight, sign, dscale, then base-10000 digits.
    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [digits.len() as i16, weight, sign as i16, dscale as i16] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        for digit in digits {
            bytes.extend_from_slice(&digit.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn numerics_decode_exactly() {
        let cases = [
            (numeric(0, 0, 0, &[42]), json!(42)),
            (numeric(1, 0x4000, 0, &[12, 3456]), json!(-123456)),
            (numeric(0, 0, 2, &[12, 5000]), json!(12.5)),
            (numeric(-1, 0, 4, &[5]), json!(0.0005)),
            (numeric(-2, 0, 6, &[1200]), json!(0.000012)),
            (numeric(0, 0, 0, &[]), json!(0)),
            (
                numeric(5, 0, 0, &[1, 2345, 6789, 123, 4567, 8901]),
                json!("123456789012345678901"),
            ),
            (
                numeric(0, 0, 20, &[1, 2345, 6789, 123, 4567, 8901]),
                json!("1.23456789012345678901"),
            ),
            (numeric(0, 0xC000, 0, &[]), json!("NaN")),
        ];
        for (bytes, expected) in cases {
            assert_eq!(numeric_to_json(&bytes).unwrap(), expected);
        }
        assert!(numeric_to_json(&[0, 1]).unwrap_err().contains("cut short"));
    }

    #[test]
    fn only_postgres_connections_are_accepted() {
        let connection = Connection {
            conn_id: "warehouse".into(),
            conn_type: "mysql".into(),
            ..Connection::default()
        };
        let error = connect_options(&connection).unwrap_err();
        assert!(error.contains("needs a `postgres` one"), "{error}");
    }
}
