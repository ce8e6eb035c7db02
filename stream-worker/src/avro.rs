//! Avro records in the Confluent wire format: the writer's schema comes from the schema
//! registry by the id in the record's header (cached for the worker's life: an id never changes
//! meaning), so a producer that registers a new version — a new optional field — is read
//! without a restart. The datum's fields map to columns by name, as a JSON record's do: a flat
//! record's straight from the datum (`flat.rs`), any other through `apache_avro`'s value tree.

mod flat;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use schema_registry::{Backoff, Registry, RegistryError};
use scylla::value::{CqlTimestamp, CqlValue, MaybeUnset};
use serde_json::{Map, Number, Value as Json};

use crate::decode::{Bound, RecordError, convert_value, present, transformed_row};
use crate::definition::{Column, CqlType, Stream};

pub use flat::FlatRecord;

/// An outage is retried from 100 ms up to every 10 s, for as long as it lasts.
const OUTAGE_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(100),
    max: Duration::from_secs(10),
    tries: None,
};

/// The writer schemas of one registry, by id.
pub struct AvroSchemas {
    registry: Registry,
    known: RwLock<HashMap<u32, Arc<Schema>>>,
    /// One fetch at a time: a burst of records with a new id asks the registry once.
    fetching: tokio::sync::Mutex<()>,
}

impl AvroSchemas {
    /// `max_record_bytes` also bounds what one datum may ask to allocate: a corrupt length
    /// prefix cannot claim more memory than a whole record may hold (the limit is
    /// process-wide, set by the first Avro stream).
    pub fn new(max_record_bytes: usize, registry: Registry) -> Self {
        apache_avro::util::max_allocation_bytes(max_record_bytes);
        Self {
            registry,
            known: RwLock::default(),
            fetching: tokio::sync::Mutex::default(),
        }
    }

    /// The schema of `id` if the registry gives it at once (one try, no waiting): for showing
    /// records, where a registry that is away means showing them undecoded.
    pub async fn now(&self, id: u32) -> Option<Arc<Schema>> {
        if let Some(schema) = self.cached(id) {
            return Some(schema);
        }
        let registered = self.registry.schema(id).await.ok()?;
        let schema = Arc::new(Schema::parse_str(&registered.schema).ok()?);
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, schema.clone());
        Some(schema)
    }

    fn cached(&self, id: u32) -> Option<Arc<Schema>> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known.get(&id).cloned()
    }

    /// The schema registered under `id`. Only an answer that the id is unknown (or names no
    /// Avro schema) fails the record; anything else — unreachable, timeouts, server errors,
    /// refused credentials — is retried with backoff until the registry answers.
    pub async fn get(&self, id: u32) -> Result<Arc<Schema>, RecordError> {
        if let Some(schema) = self.cached(id) {
            return Ok(schema);
        }
        let _one_fetch = self.fetching.lock().await;
        if let Some(schema) = self.cached(id) {
            return Ok(schema);
        }
        let unknown = |message: String| RecordError::UnknownSchema { id, message };
        let what = format!("fetch schema id {id} from {}", self.registry.url());
        let registered = OUTAGE_BACKOFF
            .run(
                &what,
                |error| !matches!(error, RegistryError::UnknownSchema { .. }),
                || self.registry.schema(id),
            )
            .await
            .map_err(|error| unknown(error.to_string()))?;
        if registered.schema_type != "AVRO" {
            return Err(unknown(format!(
                "schema id {id} is a {} schema, not Avro",
                registered.schema_type
            )));
        }
        let schema = Schema::parse_str(&registered.schema)
            .map_err(|e| unknown(format!("schema id {id} does not parse as Avro: {e}")))?;
        let schema = Arc::new(schema);
        tracing::info!(id, registry = %self.registry.url(), "read a new Avro schema");
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, schema.clone());
        Ok(schema)
    }
}

/// A stream's Avro records: the writer schemas, and how the stream reads each one's datums.
pub struct AvroRecords {
    schemas: AvroSchemas,
    readers: RwLock<HashMap<u32, Arc<DatumReader>>>,
}

impl AvroRecords {
    pub fn new(schemas: AvroSchemas) -> Self {
        Self {
            schemas,
            readers: RwLock::default(),
        }
    }

    /// Decodes the `datum` of schema `id` into a row of `stream` (always the same stream: the
    /// readers are made for its columns). An unknown id waits for the registry as
    /// [`AvroSchemas::get`] does.
    pub async fn decode(
        &self,
        stream: &Stream,
        id: u32,
        datum: &[u8],
    ) -> Result<Option<Vec<Bound>>, RecordError> {
        if let Some(decoded) = self.decode_known(stream, id, datum) {
            return decoded;
        }
        let reader = Arc::new(DatumReader::new(stream, self.schemas.get(id).await?));
        self.readers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, reader.clone());
        reader.decode(stream, datum)
    }

    fn decode_known(
        &self,
        stream: &Stream,
        id: u32,
        datum: &[u8],
    ) -> Option<Result<Option<Vec<Bound>>, RecordError>> {
        let readers = self.readers.read().unwrap_or_else(|e| e.into_inner());
        readers.get(&id).map(|reader| reader.decode(stream, datum))
    }
}

/// How a stream reads the datums of one writer schema.
pub enum DatumReader {
    /// A record of scalar fields, read straight into the columns.
    Flat(FlatRecord),
    /// Any other schema, or a stream with `where:` or `transform:` (its event is the record's
    /// JSON form): through the value tree.
    Tree(Arc<Schema>),
}

impl DatumReader {
    pub fn new(stream: &Stream, schema: Arc<Schema>) -> DatumReader {
        let programs = stream.filter.is_some() || stream.transform.is_some();
        match FlatRecord::new(stream, &schema).filter(|_| !programs) {
            Some(flat) => DatumReader::Flat(flat),
            None => DatumReader::Tree(schema),
        }
    }

    pub fn decode(&self, stream: &Stream, datum: &[u8]) -> Result<Option<Vec<Bound>>, RecordError> {
        match self {
            DatumReader::Flat(flat) => flat.decode(stream, datum).map(Some),
            DatumReader::Tree(schema) => decode(stream, schema, datum),
        }
    }
}

/// Decodes an Avro `datum` written with `schema` into a row of `stream` through the value tree,
/// as [`crate::decode::decode`] does a JSON record.
pub fn decode(
    stream: &Stream,
    schema: &Schema,
    mut datum: &[u8],
) -> Result<Option<Vec<Bound>>, RecordError> {
    let record = apache_avro::from_avro_datum(schema, &mut datum, None).map_err(|e| {
        RecordError::NotAvro {
            message: e.to_string(),
        }
    })?;
    let Avro::Record(fields) = record else {
        return Err(RecordError::NotObject);
    };
    if stream.filter.is_some() || stream.transform.is_some() {
        let object = fields
            .into_iter()
            .map(|(name, value)| (name, to_json(value)))
            .collect::<Map<_, _>>();
        return transformed_row(stream, vrl::value::Value::from(Json::Object(object)));
    }
    let mut row = Vec::with_capacity(stream.columns.len() + 1);
    for column in &stream.columns {
        row.push(bind(stream, column, lookup(&fields, &column.field))?);
    }
    Ok(Some(row))
}

/// A framed Avro `payload` as JSON, and its schema id; `None` when it is not one that `schemas`
/// can read now.
pub async fn as_json(schemas: &AvroSchemas, payload: &[u8]) -> Option<(u32, Json)> {
    let (id, mut datum) = schema_registry::unframe(payload).ok()?;
    let schema = schemas.now(id).await?;
    let value = apache_avro::from_avro_datum(&schema, &mut datum, None).ok()?;
    Some((id, to_json(value)))
}

/// Finds `field`: a field of the record, else a dotted path through nested records and maps.
fn lookup<'r>(fields: &'r [(String, Avro)], field: &str) -> Option<&'r Avro> {
    let top = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if let Some(found) = top(field) {
        return Some(found);
    }
    let mut parts = field.split('.');
    let first = top(parts.next()?)?;
    parts.try_fold(first, |node, part| match unwrap_union(node) {
        Avro::Record(fields) => fields.iter().find(|(n, _)| n == part).map(|(_, v)| v),
        Avro::Map(entries) => entries.get(part),
        _ => None,
    })
}

fn unwrap_union(value: &Avro) -> &Avro {
    match value {
        Avro::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

fn bind(stream: &Stream, column: &Column, value: Option<&Avro>) -> Result<Bound, RecordError> {
    let value = match present(column, value.map(unwrap_union), |v| matches!(v, Avro::Null))? {
        ControlFlow::Continue(value) => value,
        ControlFlow::Break(bound) => return Ok(bound),
    };
    // The seed record's types directly; anything else through its JSON form and the same
    // conversions as a JSON record's.
    let converted = match (&column.cql_type, value) {
        (CqlType::Text, Avro::String(text) | Avro::Enum(_, text)) => CqlValue::Text(text.clone()),
        (CqlType::Uuid, Avro::Uuid(uuid)) => CqlValue::Uuid(*uuid),
        (CqlType::Timestamp, Avro::TimestampMillis(millis)) => {
            CqlValue::Timestamp(CqlTimestamp(*millis))
        }
        (CqlType::Int, Avro::Int(n)) => CqlValue::Int(*n),
        (CqlType::Bigint, Avro::Long(n)) => CqlValue::BigInt(*n),
        (CqlType::Double, Avro::Double(n)) => CqlValue::Double(*n),
        (CqlType::Boolean, Avro::Boolean(b)) => CqlValue::Boolean(*b),
        (cql_type, other) => {
            convert_value(stream, cql_type, &column.field, &to_json(other.clone()))?
        }
    };
    Ok(MaybeUnset::Set(Some(converted)))
}

/// An Avro value as JSON, logical types in the forms the column conversions read: timestamps
/// as epoch milliseconds, dates as `YYYY-MM-DD`, UUIDs and big decimals as strings.
fn to_json(value: Avro) -> Json {
    match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::Bool(b),
        Avro::Int(n) | Avro::TimeMillis(n) => Json::from(n),
        Avro::Long(n) | Avro::TimeMicros(n) => Json::from(n),
        Avro::Float(n) => Number::from_f64(f64::from(n)).map_or(Json::Null, Json::Number),
        Avro::Double(n) => Number::from_f64(n).map_or(Json::Null, Json::Number),
        Avro::Bytes(bytes) | Avro::Fixed(_, bytes) => {
            Json::Array(bytes.into_iter().map(Json::from).collect())
        }
        Avro::String(text) | Avro::Enum(_, text) => Json::String(text),
        Avro::Union(_, inner) => to_json(*inner),
        Avro::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Avro::Map(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(key, value)| (key, to_json(value)))
                .collect(),
        ),
        Avro::Record(fields) => Json::Object(
            fields
                .into_iter()
                .map(|(name, value)| (name, to_json(value)))
                .collect(),
        ),
        Avro::Date(days) => chrono::NaiveDate::from_num_days_from_ce_opt(days + EPOCH_DAYS_FROM_CE)
            .map_or(Json::Null, |date| Json::String(date.to_string())),
        Avro::TimestampMillis(ms) | Avro::LocalTimestampMillis(ms) => Json::from(ms),
        Avro::TimestampMicros(us) | Avro::LocalTimestampMicros(us) => {
            Json::from(us.div_euclid(1_000))
        }
        Avro::TimestampNanos(ns) | Avro::LocalTimestampNanos(ns) => {
            Json::from(ns.div_euclid(1_000_000))
        }
        Avro::Uuid(uuid) => Json::String(uuid.to_string()),
        Avro::BigDecimal(decimal) => Json::String(decimal.to_string()),
        // The `decimal` logical type's scale lives in the schema, not the value: read as its
        // unscaled bytes, which no column conversion accepts (a clear wrong_type).
        Avro::Decimal(_) | Avro::Duration(_) => Json::Null,
    }
}

/// Days from 0001-01-01 to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;
