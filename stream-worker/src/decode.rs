//! A record (JSON, or Avro in the Confluent wire format through [`Decoder`]) → row values,
//! following the stream's columns.

use std::borrow::Cow;
use std::fmt;
use std::ops::ControlFlow;

use scylla::value::{CqlDate, CqlDecimal, CqlTimestamp, CqlTimeuuid, CqlValue, MaybeUnset};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use schema_registry::{Registry, RegistryError};

use crate::avro::{AvroRecords, AvroSchemas};
use crate::definition::{Column, CqlType, Format, Stream};
use crate::transform::{self, Outcome};
use crate::worker::WorkerConfig;

/// One value bound to the prepared INSERT: unset (the field was absent: no tombstone, nothing
/// overwritten), null (explicit JSON `null`), or a value.
pub type Bound = MaybeUnset<Option<CqlValue>>;

/// Why a record cannot be written. Each kind is a dead-letter `error` header value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("record is not JSON: {message}")]
    NotJson { message: String },
    #[error("record is not a JSON object")]
    NotObject,
    #[error("required field `{field}` is missing or null")]
    MissingField { field: String },
    #[error("field `{field}` is not a valid UUID: {value:?}")]
    InvalidUuid { field: String, value: String },
    #[error("field `{field}` should be {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    /// The `where:` filter or the `transform:` failed at run time (the message names which).
    #[error("{message}")]
    Transform { message: String },
    #[error("record is {bytes} bytes, over the limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    /// Not an Avro record in the Confluent wire format, or a datum its schema cannot read.
    #[error("record is not Avro: {message}")]
    NotAvro { message: String },
    /// The registry does not know the record's schema id (an outage is retried, not this).
    #[error("{message}")]
    UnknownSchema { id: u32, message: String },
    /// Cassandra refused the row itself (e.g. a value it considers invalid): retrying cannot help.
    #[error("Cassandra rejected the row: {message}")]
    Rejected { message: String },
}

impl RecordError {
    /// The short name used in the `error` header and the metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordError::NotJson { .. } => "not_json",
            RecordError::NotObject => "not_object",
            RecordError::MissingField { .. } => "missing_field",
            RecordError::InvalidUuid { .. } => "invalid_uuid",
            RecordError::WrongType { .. } => "wrong_type",
            RecordError::Transform { .. } => "transform",
            RecordError::TooLarge { .. } => "too_large",
            RecordError::NotAvro { .. } => "not_avro",
            RecordError::UnknownSchema { .. } => "unknown_schema",
            RecordError::Rejected { .. } => "rejected",
        }
    }

    /// The JSON field concerned, if any (the `error.field` header).
    pub fn field(&self) -> Option<&str> {
        match self {
            RecordError::MissingField { field }
            | RecordError::InvalidUuid { field, .. }
            | RecordError::WrongType { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// One top-level field of a record. Strings borrow from the payload where they have no escapes,
/// so a seed-shaped record is decoded without building a `Value` tree (one less allocation per
/// field); nested objects and arrays, rare here, are kept as `Value` for dotted paths.
#[derive(Debug)]
enum Field<'a> {
    Str(Cow<'a, str>),
    Other(Value),
}

/// A record's top-level fields in payload order, or the fact that it is not an object.
enum Record<'a> {
    Object(Vec<(Cow<'a, str>, Field<'a>)>),
    NotObject,
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Key)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Field::Other)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some((Key(key), value)) = map.next_entry::<Key<'de>, Field<'de>>()? {
            fields.push((key, value));
        }
        Ok(Record::Object(fields))
    }
    // Anything else is valid JSON but not an object: consume it, then say so.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Record::NotObject)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Record::NotObject)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Record::NotObject)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Record::NotObject)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Record::NotObject)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Record::NotObject)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Record::NotObject)
    }
}

impl<'de> Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RecordVisitor)
    }
}

/// How a stream's records are read: JSON objects as they come, or Avro whose schemas the
/// registry gives.
pub enum Decoder {
    Json,
    Avro(Box<AvroRecords>),
}

impl Decoder {
    /// The decoder `stream`'s `source.format` asks for; an Avro stream without
    /// `source.registry` uses the worker's registry (and login).
    pub fn for_stream(stream: &Stream, config: &WorkerConfig) -> Result<Self, RegistryError> {
        if stream.format == Format::Json {
            return Ok(Decoder::Json);
        }
        let registry = match &stream.registry_url {
            Some(url) => Registry::new(url)?,
            None => config.schema_registry()?,
        };
        Ok(Decoder::Avro(Box::new(AvroRecords::new(AvroSchemas::new(
            stream.max_record_bytes,
            registry,
        )))))
    }

    /// [`decode`] for the stream's format. An Avro record whose schema is not cached waits for
    /// the registry, however long it is unreachable: an outage delays records, never loses them.
    pub async fn decode(
        &self,
        stream: &Stream,
        payload: Option<&[u8]>,
    ) -> Result<Option<Vec<Bound>>, RecordError> {
        match self {
            Decoder::Json => decode(stream, payload),
            Decoder::Avro(records) => {
                let payload = within_limit(stream, payload)?;
                let (id, datum) =
                    schema_registry::unframe(payload).map_err(|e| RecordError::NotAvro {
                        message: e.to_string(),
                    })?;
                records.decode(stream, id, datum).await
            }
        }
    }
}

fn within_limit<'p>(stream: &Stream, payload: Option<&'p [u8]>) -> Result<&'p [u8], RecordError> {
    let payload = payload.unwrap_or_default();
    if payload.len() > stream.max_record_bytes {
        return Err(RecordError::TooLarge {
            bytes: payload.len(),
            limit: stream.max_record_bytes,
        });
    }
    Ok(payload)
}

/// Decodes a JSON `payload` into one bound value per column of `stream`, in column order;
/// `None` when the stream's `where:` or `transform:` dropped the record.
pub fn decode(stream: &Stream, payload: Option<&[u8]>) -> Result<Option<Vec<Bound>>, RecordError> {
    let payload = within_limit(stream, payload)?;
    if stream.filter.is_some() || stream.transform.is_some() {
        let record: vrl::value::Value = serde_json::from_slice(payload).map_err(not_json)?;
        return transformed_row(stream, record);
    }
    let record: Record<'_> = serde_json::from_slice(payload).map_err(not_json)?;
    let Record::Object(fields) = record else {
        return Err(RecordError::NotObject);
    };
    row(stream, &fields).map(Some)
}

fn not_json(error: serde_json::Error) -> RecordError {
    RecordError::NotJson {
        message: error.to_string(),
    }
}

fn row(stream: &Stream, fields: &[(Cow<'_, str>, Field<'_>)]) -> Result<Vec<Bound>, RecordError> {
    let mut row = Vec::with_capacity(stream.columns.len() + 1);
    for column in &stream.columns {
        row.push(bind(stream, column, lookup(fields, &column.field))?);
    }
    Ok(row)
}

/// The VRL path: the record (as a VRL value) goes through the programs, and the event's
/// top-level fields map to columns by name as in a plain stream.
pub(crate) fn transformed_row(
    stream: &Stream,
    record: vrl::value::Value,
) -> Result<Option<Vec<Bound>>, RecordError> {
    if !record.is_object() {
        return Err(RecordError::NotObject);
    }
    let outcome = transform::apply(stream.filter.as_ref(), stream.transform.as_ref(), record)
        .map_err(|message| RecordError::Transform { message })?;
    let event = match outcome {
        Outcome::Drop => return Ok(None),
        Outcome::Keep(vrl::value::Value::Object(event)) => event,
        Outcome::Keep(other) => {
            return Err(RecordError::Transform {
                message: format!(
                    "transform: the event became {}, not an object",
                    other.kind_str()
                ),
            });
        }
    };
    let mut row = Vec::with_capacity(stream.columns.len() + 1);
    for column in &stream.columns {
        row.push(bind_event_field(
            stream,
            column,
            lookup_event(&event, &column.field),
        )?);
    }
    Ok(Some(row))
}

/// Finds `field` in a transformed event, as [`lookup`] does in a record.
fn lookup_event<'e>(
    event: &'e vrl::value::ObjectMap,
    field: &str,
) -> Option<&'e vrl::value::Value> {
    if let Some(found) = event.get(field) {
        return Some(found);
    }
    let mut parts = field.split('.');
    let first = event.get(parts.next()?)?;
    parts.try_fold(first, |node, part| match node {
        vrl::value::Value::Object(map) => map.get(part),
        _ => None,
    })
}

/// Binds an event's value: text and timestamps directly (the common cases, without a JSON
/// round trip), anything else through its JSON form and the same conversions as a record's.
fn bind_event_field(
    stream: &Stream,
    column: &Column,
    value: Option<&vrl::value::Value>,
) -> Result<Bound, RecordError> {
    use vrl::value::Value as Event;
    let value = match present(column, value, |v| matches!(v, Event::Null))? {
        ControlFlow::Continue(value) => value,
        ControlFlow::Break(bound) => return Ok(bound),
    };
    let converted = match (&column.cql_type, value) {
        (CqlType::Text, Event::Bytes(bytes)) => {
            CqlValue::Text(String::from_utf8_lossy(bytes).into_owned())
        }
        (CqlType::Timestamp, Event::Timestamp(time)) => {
            CqlValue::Timestamp(CqlTimestamp(time.timestamp_millis()))
        }
        (cql_type, other) => {
            let json: Value = other
                .clone()
                .try_into()
                .map_err(|_| RecordError::Transform {
                    message: format!("transform: field `{}` has no JSON form", column.field),
                })?;
            convert_value(stream, cql_type, &column.field, &json)?
        }
    };
    Ok(MaybeUnset::Set(Some(converted)))
}

/// A value found in a record: a top-level field, or a node inside a nested object.
#[derive(Clone, Copy)]
enum Found<'r> {
    Str(&'r str),
    Value(&'r Value),
}

/// Finds `field` in the record: a literal key first, else a dotted path through objects. The
/// last of duplicate keys wins, as with `serde_json::Value`.
fn lookup<'r>(fields: &'r [(Cow<'_, str>, Field<'_>)], field: &str) -> Option<Found<'r>> {
    let top = |key: &str| fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    if let Some(found) = top(field) {
        return Some(match found {
            Field::Str(s) => Found::Str(s),
            Field::Other(v) => Found::Value(v),
        });
    }
    let mut parts = field.split('.');
    let Some(Field::Other(first)) = top(parts.next()?) else {
        return None;
    };
    parts
        .try_fold(first, |node, part| node.get(part))
        .map(Found::Value)
}

/// A column's value as found in a record (`None`: no such field): absent or null binds at once
/// (unset, null, or a required field's error); `Continue` hands the value on to convert.
pub(crate) fn present<T>(
    column: &Column,
    found: Option<T>,
    is_null: impl FnOnce(&T) -> bool,
) -> Result<ControlFlow<Bound, T>, RecordError> {
    match found {
        Some(value) if !is_null(&value) => Ok(ControlFlow::Continue(value)),
        _ if column.required => Err(RecordError::MissingField {
            field: column.field.clone(),
        }),
        None => Ok(ControlFlow::Break(MaybeUnset::Unset)),
        Some(_) => Ok(ControlFlow::Break(MaybeUnset::Set(None))),
    }
}

fn bind(stream: &Stream, column: &Column, value: Option<Found<'_>>) -> Result<Bound, RecordError> {
    let value = match present(column, value, |v| matches!(v, Found::Value(Value::Null)))? {
        ControlFlow::Continue(value) => value,
        ControlFlow::Break(bound) => return Ok(bound),
    };
    convert(stream, column, value).map(|v| MaybeUnset::Set(Some(v)))
}

fn convert(stream: &Stream, column: &Column, found: Found<'_>) -> Result<CqlValue, RecordError> {
    // The common case: a string into a text column, copied once from the payload.
    if let (CqlType::Text, Found::Str(text)) = (&column.cql_type, found) {
        return Ok(CqlValue::Text(text.to_owned()));
    }
    let owned;
    let value = match found {
        Found::Str(text) => {
            owned = Value::String(text.to_owned());
            &owned
        }
        Found::Value(value) => value,
    };
    convert_value(stream, &column.cql_type, &column.field, value)
}

/// `value` as `cql_type`; `field` names it in errors (`tags[2]`, `home.city`).
pub(crate) fn convert_value(
    stream: &Stream,
    cql_type: &CqlType,
    field: &str,
    value: &Value,
) -> Result<CqlValue, RecordError> {
    let wrong = |expected: &'static str| RecordError::WrongType {
        field: field.to_string(),
        expected,
        found: json_kind(value),
    };
    Ok(match cql_type {
        // Numbers and booleans become their JSON text: a numeric post_code is "12345".
        CqlType::Text => CqlValue::Text(scalar_text(value).ok_or_else(|| wrong("a string"))?),
        CqlType::Ascii => match scalar_text(value) {
            Some(text) if text.is_ascii() => CqlValue::Ascii(text),
            _ => return Err(wrong("an ASCII string")),
        },
        CqlType::Uuid | CqlType::Timeuuid => {
            let Value::String(text) = value else {
                return Err(wrong("a UUID string"));
            };
            let invalid = || RecordError::InvalidUuid {
                field: field.to_string(),
                value: text.clone(),
            };
            let uuid = uuid::Uuid::parse_str(text.trim()).map_err(|_| invalid())?;
            if *cql_type == CqlType::Uuid {
                CqlValue::Uuid(uuid)
            } else if uuid.get_version_num() == 1 {
                CqlValue::Timeuuid(CqlTimeuuid::from(uuid))
            } else {
                return Err(invalid());
            }
        }
        CqlType::Int => {
            let n = integer(value).ok_or_else(|| wrong("a 32-bit integer"))?;
            CqlValue::Int(i32::try_from(n).map_err(|_| wrong("a 32-bit integer"))?)
        }
        CqlType::Bigint => CqlValue::BigInt(integer(value).ok_or_else(|| wrong("an integer"))?),
        CqlType::Boolean => match value {
            Value::Bool(b) => CqlValue::Boolean(*b),
            Value::String(s) if s == "true" || s == "false" => CqlValue::Boolean(s == "true"),
            _ => return Err(wrong("a boolean")),
        },
        CqlType::Double => CqlValue::Double(float(value).ok_or_else(|| wrong("a number"))?),
        // Narrowing to f32 is what the column type asks for.
        CqlType::Float => CqlValue::Float(float(value).ok_or_else(|| wrong("a number"))? as f32),
        CqlType::Timestamp => {
            let millis = match value {
                Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
                    .map(|t| t.timestamp_millis())
                    .ok(),
                Value::Number(n) => n.as_i64(),
                _ => None,
            };
            let millis = millis.ok_or_else(|| wrong("an RFC 3339 time or epoch milliseconds"))?;
            CqlValue::Timestamp(CqlTimestamp(millis))
        }
        CqlType::Date => {
            let Value::String(text) = value else {
                return Err(wrong("a date (YYYY-MM-DD or an RFC 3339 time)"));
            };
            CqlValue::Date(
                date(text.trim())
                    .ok_or_else(|| wrong("a date (YYYY-MM-DD or an RFC 3339 time)"))?,
            )
        }
        CqlType::Decimal => {
            let text = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_string(),
                _ => return Err(wrong("a decimal number or numeric string")),
            };
            CqlValue::Decimal(
                decimal(&text).ok_or_else(|| wrong("a decimal of at most 38 digits"))?,
            )
        }
        CqlType::List(element) | CqlType::Set(element) => {
            let Value::Array(items) = value else {
                return Err(wrong("an array"));
            };
            let items = items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    element_value(stream, element, &format!("{field}[{index}]"), item)
                })
                .collect::<Result<Vec<_>, _>>()?;
            if matches!(cql_type, CqlType::List(_)) {
                CqlValue::List(items)
            } else {
                CqlValue::Set(items)
            }
        }
        CqlType::Map(key_type, value_type) => {
            let Value::Object(entries) = value else {
                return Err(wrong("an object"));
            };
            let entries = entries
                .iter()
                .map(|(key, item)| {
                    let path = format!("{field}.{key}");
                    // JSON keys are strings: a number-keyed map reads them as numbers.
                    let key = match key_type.as_ref() {
                        CqlType::Int
                        | CqlType::Bigint
                        | CqlType::Double
                        | CqlType::Float
                        | CqlType::Decimal => serde_json::from_str::<Value>(key)
                            .unwrap_or_else(|_| Value::String(key.clone())),
                        _ => Value::String(key.clone()),
                    };
                    Ok((
                        convert_value(stream, key_type, &path, &key)?,
                        element_value(stream, value_type, &path, item)?,
                    ))
                })
                .collect::<Result<Vec<_>, RecordError>>()?;
            CqlValue::Map(entries)
        }
        CqlType::Udt(name) => {
            let Value::Object(entries) = value else {
                return Err(wrong("an object"));
            };
            let declared = stream.types.iter().find(|t| &t.name == name);
            let fields = declared
                .map(|declared| declared.fields.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|(field_name, field_type)| {
                    let path = format!("{field}.{field_name}");
                    let value = match entries.get(field_name) {
                        None | Some(Value::Null) => None,
                        Some(item) => Some(convert_value(stream, field_type, &path, item)?),
                    };
                    Ok((field_name.clone(), value))
                })
                .collect::<Result<Vec<_>, RecordError>>()?;
            CqlValue::UserDefinedType {
                keyspace: stream.keyspace.clone(),
                name: name.clone(),
                fields,
            }
        }
    })
}

/// A collection's element: Cassandra holds no null inside a collection.
fn element_value(
    stream: &Stream,
    cql_type: &CqlType,
    field: &str,
    value: &Value,
) -> Result<CqlValue, RecordError> {
    if value.is_null() {
        return Err(RecordError::WrongType {
            field: field.to_string(),
            expected: "a value (a collection holds no null)",
            found: "null",
        });
    }
    convert_value(stream, cql_type, field, value)
}

/// `YYYY-MM-DD`, or the UTC date of an RFC 3339 time, as Cassandra's date (days from
/// 1970-01-01, offset by 2^31).
fn date(text: &str) -> Option<CqlDate> {
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|time| time.with_timezone(&chrono::Utc).date_naive())
        })?;
    let days = day
        .signed_duration_since(chrono::NaiveDate::default())
        .num_days();
    u32::try_from(days + (1i64 << 31)).ok().map(CqlDate)
}

/// A decimal's unscaled value and scale, when the unscaled value fits 128 bits (as every
/// decimal this worker writes does).
pub fn decimal_parts(decimal: &CqlDecimal) -> Option<(i128, i32)> {
    let (bytes, scale) = decimal.as_signed_be_bytes_slice_and_exponent();
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let mut wide = if bytes[0] & 0x80 != 0 {
        [0xff; 16]
    } else {
        [0; 16]
    };
    wide[16 - bytes.len()..].copy_from_slice(bytes);
    Some((i128::from_be_bytes(wide), scale))
}

/// A decimal written `-12.340`, `1e-3` or `12` as Cassandra's (unscaled, scale), exactly: at
/// most 38 significant digits.
fn decimal(text: &str) -> Option<CqlDecimal> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
        || whole.len() + fraction.len() > 38
    {
        return None;
    }
    let mut unscaled: i128 = format!("{whole}{fraction}").parse().ok()?;
    if negative {
        unscaled = -unscaled;
    }
    let scale = i32::try_from(fraction.len()).ok()?.checked_sub(exponent)?;
    let bytes = unscaled.to_be_bytes();
    // The shortest two's-complement form: drop leading bytes that only repeat the sign.
    let sign = if unscaled < 0 { 0xff } else { 0 };
    let start = bytes
        .windows(2)
        .position(|pair| pair[0] != sign || (pair[1] & 0x80 != 0) != (sign == 0xff))
        .unwrap_or(bytes.len() - 1);
    Some(CqlDecimal::from_signed_be_bytes_slice_and_exponent(
        &bytes[start..],
        scale,
    ))
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stream() -> Stream {
        let text = "\
source: {topic: t, group: g}
columns:
  - {name: id, cql_type: uuid}
  - {name: first_name, cql_type: text, required: true}
  - {name: post_code, cql_type: text}
  - {name: city, cql_type: text, field: location.city}
  - {name: age, cql_type: int}
  - {name: active, cql_type: boolean}
target: {keyspace: ks, table: t, primary_key: [id]}
max_record_bytes: 300
";
        crate::definition::parse(Path::new("t.yaml"), text).expect("valid test definition")
    }

    const ID: &str = "6f1c2a44-9f1e-4a7e-9a53-5b8e2e4f0c11";

    fn decode_json(json: &str) -> Result<Vec<Bound>, RecordError> {
        decode(&stream(), Some(json.as_bytes())).map(|row| row.expect("kept: no where/transform"))
    }

    /// `MaybeUnset` has no `PartialEq`: compare as nested options (outer `None` = unset).
    fn plain(row: &[Bound]) -> Vec<Option<Option<CqlValue>>> {
        row.iter()
            .map(|b| match b {
                MaybeUnset::Unset => None,
                MaybeUnset::Set(v) => Some(v.clone()),
            })
            .collect()
    }

    fn set(value: CqlValue) -> Option<Option<CqlValue>> {
        Some(Some(value))
    }

    #[test]
    fn a_good_record_decodes_with_conversions() {
        let json = format!(
            r#"{{"id":"{ID}","first_name":"Zoë","post_code":12345,"location":{{"city":"Łódź"}},"age":"41","active":null}}"#
        );
        let row = plain(&decode_json(&json).expect("good record"));
        let uuid = uuid::Uuid::parse_str(ID).expect("uuid");
        assert_eq!(row[0], set(CqlValue::Uuid(uuid)));
        assert_eq!(row[1], set(CqlValue::Text("Zoë".into())));
        assert_eq!(row[2], set(CqlValue::Text("12345".into())));
        assert_eq!(row[3], set(CqlValue::Text("Łódź".into())));
        assert_eq!(row[4], set(CqlValue::Int(41)));
        assert_eq!(row[5], Some(None));
    }

    #[test]
    fn an_absent_optional_field_is_left_unset() {
        let row =
            plain(&decode_json(&format!(r#"{{"id":"{ID}","first_name":"A"}}"#)).expect("good"));
        assert_eq!(row[2], None);
    }

    #[test]
    fn each_bad_kind_is_named() {
        let cases = [
            ("{not json".to_string(), "not_json", None),
            ("[1,2]".to_string(), "not_object", None),
            (
                format!(r#"{{"id":"{ID}"}}"#),
                "missing_field",
                Some("first_name"),
            ),
            (
                r#"{"first_name":"A"}"#.to_string(),
                "missing_field",
                Some("id"),
            ),
            (
                r#"{"id":"nope","first_name":"A"}"#.to_string(),
                "invalid_uuid",
                Some("id"),
            ),
            (
                r#"{"id":7,"first_name":"A"}"#.to_string(),
                "wrong_type",
                Some("id"),
            ),
            (
                format!(r#"{{"id":"{ID}","first_name":{{"a":1}}}}"#),
                "wrong_type",
                Some("first_name"),
            ),
            (
                format!(r#"{{"id":"{ID}","first_name":"A","age":3000000000}}"#),
                "wrong_type",
                Some("age"),
            ),
            (
                format!(r#"{{"id":"{ID}","first_name":"{}"}}"#, "x".repeat(400)),
                "too_large",
                None,
            ),
        ];
        for (json, kind, field) in cases {
            let error = decode_json(&json).expect_err(&json);
            assert_eq!(
                (error.kind(), error.field()),
                (kind, field),
                "{json}: {error}"
            );
        }
        assert_eq!(
            decode(&stream(), None).expect_err("empty").kind(),
            "not_json"
        );
    }

    #[test]
    fn escapes_duplicates_and_scalars_decode_like_a_value_tree() {
        // An escaped string is unescaped; of duplicate keys the last wins (as in `Value`).
        let json = format!(
            r#"{{"id":"{ID}","first_name":"first","first_name":"Zo\u00eb \"Z\"","location":{{"city":null}}}}"#
        );
        let row = plain(&decode_json(&json).expect("good record"));
        assert_eq!(row[1], set(CqlValue::Text("Zoë \"Z\"".into())));
        assert_eq!(row[3], Some(None), "a nested null is an explicit null");
        for json in ["42", "\"text\"", "null", "true", "-1.5", "[{\"a\":[1]}]"] {
            assert_eq!(
                decode_json(json).expect_err(json).kind(),
                "not_object",
                "{json}"
            );
        }
        for json in ["", "{\"id\":", "{} {}", "{\"a\":1,}"] {
            assert_eq!(
                decode_json(json).expect_err(json).kind(),
                "not_json",
                "{json}"
            );
        }
    }

    fn typed_stream() -> Stream {
        let text = "\
source: {topic: t, group: g}
types:
  - name: address
    fields:
      - {name: street, cql_type: text}
      - {name: number, cql_type: int}
columns:
  - {name: id, cql_type: uuid}
  - {name: born, cql_type: date}
  - {name: balance, cql_type: decimal}
  - {name: tags, cql_type: list<text>}
  - {name: codes, cql_type: set<int>}
  - {name: scores, cql_type: 'map<text, double>'}
  - {name: home, cql_type: frozen<address>}
target: {keyspace: ks, table: t, primary_key: [id]}
";
        crate::definition::parse(Path::new("t.yaml"), text).expect("valid typed definition")
    }

    #[test]
    fn typed_columns_convert_from_json() {
        let json = format!(
            r#"{{"id":"{ID}","born":"1987-03-14","balance":"-12.340","tags":["a","b"],"codes":[3,1],"scores":{{"x":1.5}},"home":{{"street":"Rue","number":"7"}}}}"#
        );
        let row = plain(
            &decode(&typed_stream(), Some(json.as_bytes()))
                .expect("good record")
                .expect("kept"),
        );
        let days = chrono::NaiveDate::from_ymd_opt(1987, 3, 14)
            .expect("date")
            .signed_duration_since(chrono::NaiveDate::default())
            .num_days();
        assert_eq!(
            row[1],
            set(CqlValue::Date(CqlDate((days + (1 << 31)) as u32)))
        );
        assert_eq!(
            row[2],
            set(CqlValue::Decimal(
                CqlDecimal::from_signed_be_bytes_slice_and_exponent(
                    &(-12340i32).to_be_bytes()[2..],
                    3
                )
            ))
        );
        assert_eq!(
            row[3],
            set(CqlValue::List(vec![
                CqlValue::Text("a".into()),
                CqlValue::Text("b".into())
            ]))
        );
        assert_eq!(
            row[4],
            set(CqlValue::Set(vec![CqlValue::Int(3), CqlValue::Int(1)]))
        );
        assert_eq!(
            row[5],
            set(CqlValue::Map(vec![(
                CqlValue::Text("x".into()),
                CqlValue::Double(1.5)
            )]))
        );
        assert_eq!(
            row[6],
            set(CqlValue::UserDefinedType {
                keyspace: "ks".into(),
                name: "address".into(),
                fields: vec![
                    ("street".into(), Some(CqlValue::Text("Rue".into()))),
                    ("number".into(), Some(CqlValue::Int(7))),
                ],
            })
        );
    }

    #[test]
    fn decimals_are_exact_and_bad_typed_values_name_their_place() {
        for (text, unscaled, scale) in [
            ("0", 0i128, 0),
            ("128", 128, 0),
            ("-128", -128, 0),
            ("1e-3", 1, 3),
            (
                "12345678901234567890.123456789012345678",
                12345678901234567890123456789012345678,
                18,
            ),
        ] {
            let decimal = decimal(text).expect(text);
            assert_eq!(decimal_parts(&decimal), Some((unscaled, scale)), "{text}");
        }
        assert!(decimal("1.2.3").is_none() && decimal(&"9".repeat(39)).is_none());
        for (json, field) in [
            (format!(r#"{{"id":"{ID}","born":"14/03/1987"}}"#), "born"),
            (format!(r#"{{"id":"{ID}","tags":["a",null]}}"#), "tags[1]"),
            (format!(r#"{{"id":"{ID}","codes":[1,"x"]}}"#), "codes[1]"),
            (
                format!(r#"{{"id":"{ID}","scores":{{"x":"high"}}}}"#),
                "scores.x",
            ),
            (
                format!(r#"{{"id":"{ID}","home":{{"number":"seven"}}}}"#),
                "home.number",
            ),
        ] {
            let error = decode(&typed_stream(), Some(json.as_bytes())).expect_err(&json);
            assert_eq!(
                (error.kind(), error.field()),
                ("wrong_type", Some(field)),
                "{error}"
            );
        }
    }

    #[test]
    fn messages_name_the_field() {
        let error = decode_json(r#"{"id":"nope","first_name":"A"}"#).expect_err("bad uuid");
        assert_eq!(
            error.to_string(),
            "field `id` is not a valid UUID: \"nope\""
        );
        let error = decode_json(&format!(r#"{{"id":"{ID}","first_name":[1]}}"#)).expect_err("bad");
        assert_eq!(
            error.to_string(),
            "field `first_name` should be a string, found an array"
        );
    }
}
