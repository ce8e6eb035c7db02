//! Field types shared by operator configs.
//!
//! Configs are validated twice: at parse time on the UNRENDERED YAML (where a field may still be a
//! `{{ ... }}` template) and at execution on the rendered values. [`Templated`] accepts a template
//! string at parse time and insists on a real value at execution; [`DurationValue`] reads
//! `30s`, `5m`, `1h30m` (or a number of seconds); [`Text`] accepts any scalar as a string.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::OperatorError;

/// Whether a string holds a minijinja expression or statement.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// A typed value that may still be a template before rendering.
///
/// Strings that are not templates are parsed with `T::from_str` (so `"201"` is a valid status
/// code); other JSON values deserialize as `T`.
#[derive(Debug, Clone, PartialEq)]
pub enum Templated<T> {
    Value(T),
    Template(String),
}

impl<T> Templated<T> {
    /// The value after rendering; a leftover template means the config was not rendered.
    pub fn resolve(self, field: &str) -> Result<T, OperatorError> {
        match self {
            Templated::Value(value) => Ok(value),
            Templated::Template(template) => Err(OperatorError::Config(format!(
                "`{field}` is still the unrendered template `{template}`"
            ))),
        }
    }
}

impl<T> From<T> for Templated<T> {
    fn from(value: T) -> Self {
        Templated::Value(value)
    }
}

impl<'de, T> Deserialize<'de> for Templated<T>
where
    T: DeserializeOwned + FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) if is_template(&text) => Ok(Templated::Template(text)),
            Value::String(text) => text
                .trim()
                .parse::<T>()
                .map(Templated::Value)
                .map_err(|error| D::Error::custom(format!("`{text}`: {error}"))),
            other => T::deserialize(other)
                .map(Templated::Value)
                .map_err(D::Error::custom),
        }
    }
}

impl<T: JsonSchema> JsonSchema for Templated<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Templated_{}", T::schema_name()).into()
    }

    fn schema_id() -> Cow<'static, str> {
        format!("updraft_operators::Templated<{}>", T::schema_id()).into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                generator.subschema_for::<T>(),
                { "type": "string", "pattern": "\\{\\{|\\{%", "description": "a template" }
            ]
        })
    }
}

/// A duration written `500ms`, `30s`, `5m`, `1h30m`, `2d`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{0}`: expected e.g. `30s`, `5m`, `1h30m` (units ms, s, m, h, d)")]
pub struct DurationError(String);

impl FromStr for DurationValue {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_duration(text).map(DurationValue)
    }
}

impl fmt::Display for DurationValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Parses `1h30m`-style durations: one or more `<integer><unit>` groups, no spaces.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError(text.to_string());
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let amount: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_millis: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        let millis = amount.checked_mul(unit_millis).ok_or_else(invalid)?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(invalid)?;
    }
    Ok(total)
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => text.parse().map_err(D::Error::custom),
            Value::Number(number) => number
                .as_f64()
                .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
                .map(DurationValue)
                .ok_or_else(|| D::Error::custom(format!("invalid duration {number} (seconds)"))),
            other => Err(D::Error::custom(format!(
                "invalid duration {other}: expected a string like `30s` or a number of seconds"
            ))),
        }
    }
}

impl JsonSchema for DurationValue {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: `500ms`, `30s`, `5m`, `1h30m`, `2d`, or a number of seconds",
            "type": ["string", "number"],
            "pattern": "^\\s*([0-9]+(ms|s|m|h|d))+\\s*$",
            "minimum": 0
        })
    }
}

/// A string field that also accepts numbers and booleans (`PORT: 8080` in YAML), as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(Text(text)),
            Value::Number(number) => Ok(Text(number.to_string())),
            Value::Bool(flag) => Ok(Text(flag.to_string())),
            other => Err(D::Error::custom(format!(
                "expected a string, number or boolean, found {other}"
            ))),
        }
    }
}

impl JsonSchema for Text {
    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// The first `max_chars` characters of `text`, marked when cut (for error messages).
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut chars = text.char_indices();
    match chars.nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_combination() {
        let cases = [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            ("1m30s250ms", 90_250),
            (" 10s ", 10_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_are_rejected() {
        for text in [
            "",
            "30",
            "s",
            "5x",
            "1h 30m",
            "-5s",
            "1.5s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn a_duration_may_be_a_number_of_seconds() {
        let parsed: DurationValue = serde_json::from_value(serde_json::json!(1.5)).unwrap();
        assert_eq!(parsed.0, Duration::from_millis(1500));
        assert!(serde_json::from_value::<DurationValue>(serde_json::json!(-1)).is_err());
    }

    #[test]
    fn templated_accepts_values_numeric_strings_and_templates() {
        let from_number: Templated<u16> = serde_json::from_value(serde_json::json!(201)).unwrap();
        let from_string: Templated<u16> = serde_json::from_value(serde_json::json!("201")).unwrap();
        let template: Templated<u16> =
            serde_json::from_value(serde_json::json!("{{ params.code }}")).unwrap();
        assert_eq!(from_number, Templated::Value(201));
        assert_eq!(from_string, Templated::Value(201));
        assert_eq!(template, Templated::Template("{{ params.code }}".into()));
        assert!(template.resolve("code").is_err());
        let error = serde_json::from_value::<Templated<u16>>(serde_json::json!("abc")).unwrap_err();
        assert!(error.to_string().contains("`abc`"), "{error}");
    }

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        assert_eq!(excerpt("Zoë Ünal", 3), "Zoë…");
        assert_eq!(excerpt("short", 10), "short");
    }
}
