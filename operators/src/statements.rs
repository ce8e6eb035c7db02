//! What the `sql` and `cql` operators share: one statement or a list, positional parameters
//! bound by the driver (never spliced into the text), and a bounded set of result rows.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Rows a result keeps by default; the rest are counted, not kept (XCom lives in a database).
pub const DEFAULT_MAX_ROWS: usize = 1_000;

/// One statement or several, run in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Statements {
    One(String),
    Many(Vec<String>),
}

impl Statements {
    /// The statements, each trimmed of a trailing `;`; an empty one is an error.
    pub fn list(&self) -> Result<Vec<&str>, String> {
        let texts: Vec<&str> = match self {
            Statements::One(text) => vec![text],
            Statements::Many(texts) => texts.iter().map(String::as_str).collect(),
        };
        if texts.is_empty() {
            return Err("give at least one statement".into());
        }
        texts
            .into_iter()
            .enumerate()
            .map(|(index, text)| {
                let text = text.trim().trim_end_matches(';').trim_end();
                if text.is_empty() {
                    Err(format!("statement {} is empty", index + 1))
                } else {
                    Ok(text)
                }
            })
            .collect()
    }
}

impl JsonSchema for Statements {
    fn schema_name() -> Cow<'static, str> {
        "Statements".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" }, "minItems": 1 }
            ]
        })
    }
}

/// The rows of the last statement, kept up to a bound and counted beyond it.
pub struct BoundedRows {
    max_rows: usize,
    rows: Vec<Value>,
    row_count: u64,
}

impl BoundedRows {
    pub fn new(max_rows: usize) -> Self {
        BoundedRows {
            max_rows,
            rows: Vec::new(),
            row_count: 0,
        }
    }

    /// Counts a row; builds and keeps it only while under the bound.
    pub fn push(
        &mut self,
        row: impl FnOnce() -> Result<Map<String, Value>, String>,
    ) -> Result<(), String> {
        self.row_count += 1;
        if self.rows.len() < self.max_rows {
            self.rows.push(Value::Object(row()?));
        }
        Ok(())
    }

    /// Forgets the rows of an earlier statement: the output is the last one's.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.row_count = 0;
    }

    /// Rows seen, kept or not.
    pub fn row_count(&self) -> u64 {
        self.row_count
    }

    pub fn truncated(&self) -> bool {
        self.row_count > self.rows.len() as u64
    }

    /// `{rows, row_count, truncated, rows_affected}`; `rows_affected` only where the driver
    /// reports one.
    pub fn into_output(self, rows_affected: Option<u64>) -> Value {
        let truncated = self.truncated();
        let mut output = json!({
            "rows": self.rows,
            "row_count": self.row_count,
            "truncated": truncated,
        });
        if let Some(affected) = rows_affected {
            output["rows_affected"] = json!(affected);
        }
        output
    }
}

/// A parameter as text: a string as it is, any other value as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A parameter parsed from its text, or `expected {what}`.
pub fn parsed<T: std::str::FromStr>(value: &Value, what: &str) -> Result<T, String> {
    text(value)
        .trim()
        .parse()
        .map_err(|_| format!("expected {what}"))
}

/// What a JSON parameter is called in messages: its 1-based position and its JSON type.
pub fn describe_parameter(position: usize, value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    format!("parameter {position} ({kind} {value})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_trimmed_and_empty_ones_refused() {
        let many = Statements::Many(vec!["SELECT 1;".into(), "  SELECT 2 ; ".into()]);
        assert_eq!(many.list().unwrap(), ["SELECT 1", "SELECT 2"]);
        let error = Statements::Many(vec!["SELECT 1".into(), " ; ".into()])
            .list()
            .unwrap_err();
        assert_eq!(error, "statement 2 is empty");
        assert!(Statements::Many(vec![]).list().is_err());
    }

    #[test]
    fn rows_beyond_the_bound_are_counted_not_kept() {
        let mut rows = BoundedRows::new(2);
        for n in 0..5 {
            rows.push(|| Ok(Map::from_iter([("n".to_string(), json!(n))])))
                .unwrap();
        }
        assert!(rows.truncated());
        let output = rows.into_output(None);
        assert_eq!(output["rows"], json!([{"n": 0}, {"n": 1}]));
        assert_eq!(output["row_count"], 5);
        assert_eq!(output["truncated"], true);
    }
}
