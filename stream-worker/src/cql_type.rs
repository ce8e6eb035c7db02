//! The CQL types a stream can write, as written in a definition (`list<text>`,
//! `map<text, int>`, `frozen<address>`) and as Cassandra names them in `system_schema`.

use std::fmt;

/// A column's (or a user-defined type's field's) type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CqlType {
    Text,
    Ascii,
    Uuid,
    Timeuuid,
    Int,
    Bigint,
    Boolean,
    Double,
    Float,
    Timestamp,
    Date,
    Decimal,
    List(Box<CqlType>),
    Set(Box<CqlType>),
    Map(Box<CqlType>, Box<CqlType>),
    /// A user-defined type of the definition's `types:`, always frozen (written whole).
    Udt(String),
}

/// The scalar names accepted, for error messages.
pub const SCALARS: &str = "text, varchar, ascii, uuid, timeuuid, int, bigint, boolean, double, \
                           float, timestamp, date, decimal";

impl CqlType {
    /// Parses a type as written in a definition. `is_udt` says whether a name is one of the
    /// definition's user-defined types.
    pub fn parse(text: &str, is_udt: &dyn Fn(&str) -> bool) -> Result<CqlType, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        let scalar = match lower.as_str() {
            "text" | "varchar" => Some(CqlType::Text),
            "ascii" => Some(CqlType::Ascii),
            "uuid" => Some(CqlType::Uuid),
            "timeuuid" => Some(CqlType::Timeuuid),
            "int" => Some(CqlType::Int),
            "bigint" => Some(CqlType::Bigint),
            "boolean" => Some(CqlType::Boolean),
            "double" => Some(CqlType::Double),
            "float" => Some(CqlType::Float),
            "timestamp" => Some(CqlType::Timestamp),
            "date" => Some(CqlType::Date),
            "decimal" => Some(CqlType::Decimal),
            _ => None,
        };
        if let Some(scalar) = scalar {
            return Ok(scalar);
        }
        let Some((outer, inner)) = lower
            .strip_suffix('>')
            .and_then(|rest| rest.split_once('<'))
        else {
            return Err(if is_udt(&lower) {
                format!("user-defined type `{lower}` must be written frozen<{lower}>")
            } else {
                format!(
                    "unknown cql_type `{text}` (expected one of: {SCALARS}, list<…>, set<…>, map<…, …>, frozen<type>)"
                )
            });
        };
        let element = |text: &str| -> Result<CqlType, String> {
            let element = CqlType::parse(text, is_udt)?;
            if element.is_collection() {
                return Err(format!(
                    "`{text}` inside a collection is not supported (only scalars and frozen<type>)"
                ));
            }
            Ok(element)
        };
        match outer.trim() {
            "list" => Ok(CqlType::List(Box::new(element(inner)?))),
            "set" => Ok(CqlType::Set(Box::new(element(inner)?))),
            "map" => {
                let (key, value) = split_top_level(inner)
                    .ok_or_else(|| format!("`{text}`: a map needs map<key type, value type>"))?;
                let key = element(key)?;
                if matches!(key, CqlType::Udt(_)) {
                    return Err(format!("`{text}`: a map's key must be a scalar"));
                }
                Ok(CqlType::Map(Box::new(key), Box::new(element(value)?)))
            }
            "frozen" => {
                let name = inner.trim();
                if is_udt(name) {
                    Ok(CqlType::Udt(name.to_string()))
                } else {
                    Err(format!(
                        "frozen<{name}>: `{name}` is not one of the definition's types"
                    ))
                }
            }
            _ => Err(format!(
                "unknown cql_type `{text}` (expected one of: {SCALARS}, list<…>, set<…>, map<…, …>, frozen<type>)"
            )),
        }
    }

    pub fn is_collection(&self) -> bool {
        matches!(self, CqlType::List(_) | CqlType::Set(_) | CqlType::Map(..))
    }
}

/// `a, b` split at the comma outside any `<…>`.
fn split_top_level(text: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    for (index, character) in text.char_indices() {
        match character {
            '<' => depth += 1,
            '>' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => return Some((&text[..index], &text[index + 1..])),
            _ => {}
        }
    }
    None
}

/// The name used in CQL and in `system_schema.columns.type` (`map<text, int>`).
impl fmt::Display for CqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CqlType::Text => f.write_str("text"),
            CqlType::Ascii => f.write_str("ascii"),
            CqlType::Uuid => f.write_str("uuid"),
            CqlType::Timeuuid => f.write_str("timeuuid"),
            CqlType::Int => f.write_str("int"),
            CqlType::Bigint => f.write_str("bigint"),
            CqlType::Boolean => f.write_str("boolean"),
            CqlType::Double => f.write_str("double"),
            CqlType::Float => f.write_str("float"),
            CqlType::Timestamp => f.write_str("timestamp"),
            CqlType::Date => f.write_str("date"),
            CqlType::Decimal => f.write_str("decimal"),
            CqlType::List(element) => write!(f, "list<{element}>"),
            CqlType::Set(element) => write!(f, "set<{element}>"),
            CqlType::Map(key, value) => write!(f, "map<{key}, {value}>"),
            CqlType::Udt(name) => write!(f, "frozen<{name}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CqlType, String> {
        CqlType::parse(text, &|name| name == "address")
    }

    #[test]
    fn types_parse_and_render_as_cassandra_names_them() {
        for (written, named) in [
            ("VARCHAR", "text"),
            ("date", "date"),
            ("decimal", "decimal"),
            ("list<text>", "list<text>"),
            ("set< int >", "set<int>"),
            ("map<text,bigint>", "map<text, bigint>"),
            ("frozen<address>", "frozen<address>"),
            ("list<frozen<address>>", "list<frozen<address>>"),
            ("map<text, frozen<address>>", "map<text, frozen<address>>"),
        ] {
            assert_eq!(parse(written).map(|t| t.to_string()), Ok(named.to_string()));
        }
    }

    #[test]
    fn mistakes_say_what_to_write() {
        for (written, says) in [
            ("integer", "unknown cql_type `integer`"),
            ("address", "must be written frozen<address>"),
            (
                "frozen<nope>",
                "`nope` is not one of the definition's types",
            ),
            ("list<list<int>>", "inside a collection is not supported"),
            ("map<text>", "a map needs map<key type, value type>"),
            ("map<frozen<address>, int>", "a map's key must be a scalar"),
        ] {
            let error = parse(written).expect_err(written);
            assert!(error.contains(says), "{written}: {error}");
        }
    }
}
