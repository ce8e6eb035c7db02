//! Record decoding never panics and always says what is wrong and where, whatever the bytes:
//! arbitrary bytes, the seed's good record with random edits, and generated good records (which
//! must decode to exactly their values). The definition parser never panics either.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use scylla::value::{CqlValue, MaybeUnset};
use stream_worker::avro::DatumReader;
use stream_worker::decode::{RecordError, decode};
use stream_worker::{Stream, definition};

const SEED_DEFINITION: &str = include_str!("../../../streams/users_created.yaml");
const GOOD_RECORD: &str = r#"{"id": "6f1c2a44-9f1e-4a7e-9a53-5b8e2e4f0c11", "first_name": "Zoë", "last_name": "Ünal", "gender": "female", "address": "4021 Rue de l'Église, Besançon", "post_code": "25000", "email": "zoe@example.com", "username": "zoe_u", "dob": "1990-01-01T00:00:00.000Z", "registered_date": "2015-05-05T00:00:00.000Z", "phone": "01-23-45", "picture": "https://example.com/z.jpg"}"#;

/// Characters that change JSON structure.
const SIGNIFICANT: &[&str] = &[
    "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "null", "1e999", "-", " ", "\u{0}", "ü",
];

fn seed_stream() -> Stream {
    definition::parse(Path::new("users_created.yaml"), SEED_DEFINITION).expect("seed definition")
}

/// The error names where the record is wrong: a position for bad JSON, a field otherwise.
fn says_where(error: &RecordError) -> bool {
    match error {
        RecordError::NotJson { message } => {
            message.contains(" at line ") && message.contains(" column ")
        }
        RecordError::MissingField { field }
        | RecordError::InvalidUuid { field, .. }
        | RecordError::WrongType { field, .. } => !field.is_empty(),
        RecordError::Transform { message } => {
            message.starts_with("transform: ") || message.starts_with("where: ")
        }
        RecordError::NotAvro { message } | RecordError::UnknownSchema { message, .. } => {
            !message.is_empty()
        }
        RecordError::NotObject | RecordError::TooLarge { .. } | RecordError::Rejected { .. } => {
            true
        }
    }
}

const AVRO_SCHEMA: &str = include_str!("../../../streams/examples/users_created.avsc");

/// The seed stream reading Avro, and the seed schema.
fn avro_seed() -> (Stream, apache_avro::Schema) {
    let text = SEED_DEFINITION.replace("  start_offset:", "  format: avro\n  start_offset:");
    let stream = definition::parse(Path::new("users_avro.yaml"), &text).expect("definition");
    let schema = apache_avro::Schema::parse_str(AVRO_SCHEMA).expect("schema");
    (stream, schema)
}

/// The good record's Avro datum (no wire header).
fn avro_datum(schema: &apache_avro::Schema) -> Vec<u8> {
    let record: serde_json::Value = serde_json::from_str(GOOD_RECORD).expect("JSON");
    let value = apache_avro::types::Value::from(record)
        .resolve(schema)
        .expect("fits the schema");
    apache_avro::to_avro_datum(schema, value).expect("encode")
}

#[test]
fn the_good_avro_datum_decodes_to_the_json_records_row() {
    let (stream, schema) = avro_seed();
    let from_avro = stream_worker::avro::decode(&stream, &schema, &avro_datum(&schema))
        .expect("decodes")
        .expect("kept");
    let from_json = decode(&seed_stream(), Some(GOOD_RECORD.as_bytes()))
        .expect("decodes")
        .expect("kept");
    assert_eq!(format!("{from_avro:?}"), format!("{from_json:?}"));
    let reader = DatumReader::new(&stream, Arc::new(schema.clone()));
    assert!(
        matches!(reader, DatumReader::Flat(_)),
        "the seed schema is flat"
    );
    let from_flat = reader
        .decode(&stream, &avro_datum(&schema))
        .expect("decodes");
    assert_eq!(format!("{from_flat:?}"), format!("{:?}", Some(from_json)));
}

/// A stream of every scalar Avro type into columns that take it directly, through its JSON
/// form (an int into text, a long of epoch milliseconds into a timestamp) or not at all.
const SCALARS_DEFINITION: &str = "name: scalars
source: {topic: scalars, group: scalars, format: avro}
columns:
  - {name: name, cql_type: text, required: true}
  - {name: nick, cql_type: text}
  - {name: age, cql_type: int}
  - {name: visits, cql_type: bigint}
  - {name: score, cql_type: double}
  - {name: ratio, cql_type: float}
  - {name: active, cql_type: boolean}
  - {name: seen, cql_type: timestamp}
  - {name: code, cql_type: text}
  - {name: small, cql_type: int}
  - {name: absent, cql_type: text}
target: {keyspace: k, table: scalars, primary_key: [name]}
";

const SCALARS_SCHEMA: &str = r#"{"type": "record", "name": "Scalars", "fields": [
  {"name": "name", "type": "string"},
  {"name": "nick", "type": ["null", "string"]},
  {"name": "age", "type": "int"},
  {"name": "visits", "type": "long"},
  {"name": "score", "type": "double"},
  {"name": "ratio", "type": "float"},
  {"name": "active", "type": "boolean"},
  {"name": "seen", "type": "long"},
  {"name": "code", "type": "int"},
  {"name": "small", "type": "long"},
  {"name": "unread", "type": ["string", "null", "long"]}
]}"#;

fn scalars() -> (Stream, Arc<apache_avro::Schema>) {
    let stream =
        definition::parse(Path::new("scalars.yaml"), SCALARS_DEFINITION).expect("definition");
    let schema = apache_avro::Schema::parse_str(SCALARS_SCHEMA).expect("schema");
    (stream, Arc::new(schema))
}

fn edited(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            any::<bool>(),
            prop::sample::select(SIGNIFICANT),
        ),
        1..6,
    );
    edits.prop_map(move |edits| {
        let mut bytes = base.as_bytes().to_vec();
        for (at, insert, text) in edits {
            let index = at.index(bytes.len() + 1);
            if insert {
                bytes.splice(index..index, text.bytes());
            } else {
                let end = (index + 2).min(bytes.len());
                bytes.drain(index..end);
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(error) = decode(&seed_stream(), Some(&bytes)) {
            prop_assert!(says_where(&error), "{error}");
        }
    }

    #[test]
    fn an_edited_good_record_never_panics(bytes in edited(GOOD_RECORD)) {
        if let Err(error) = decode(&seed_stream(), Some(&bytes)) {
            prop_assert!(says_where(&error), "{error}");
        }
    }

    #[test]
    fn a_generated_good_record_decodes_to_its_values(
        id in any::<u128>(),
        texts in prop::collection::vec(any::<String>(), 11),
    ) {
        let id = uuid::Uuid::from_u128(id);
        let stream = seed_stream();
        let mut record = serde_json::Map::new();
        record.insert("id".into(), id.to_string().into());
        for (column, text) in stream.columns.iter().skip(1).zip(&texts) {
            record.insert(column.field.clone(), text.clone().into());
        }
        let bytes = serde_json::to_vec(&record).expect("json");
        let row = decode(&stream, Some(&bytes))
            .map_err(|error| TestCaseError::fail(error.to_string()))?
            .ok_or_else(|| TestCaseError::fail("dropped without a where: or transform:"))?;
        prop_assert!(matches!(&row[0], MaybeUnset::Set(Some(CqlValue::Uuid(found))) if *found == id));
        for (bound, text) in row.iter().skip(1).zip(&texts) {
            prop_assert!(
                matches!(bound, MaybeUnset::Set(Some(CqlValue::Text(found))) if found == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn an_avro_datum_with_random_edits_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let (stream, schema) = avro_seed();
        let mut datum = avro_datum(&schema);
        for (at, byte) in edits {
            let index = at.index(datum.len());
            datum[index] = byte;
        }
        if let Err(error) = stream_worker::avro::decode(&stream, &schema, &datum) {
            prop_assert!(says_where(&error), "{error}");
        }
    }

    #[test]
    fn a_flat_datum_cut_short_or_edited_reads_as_the_value_tree_or_is_refused_saying_where(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        keep in any::<prop::sample::Index>(),
    ) {
        let (stream, schema) = avro_seed();
        let mut datum = avro_datum(&schema);
        for (at, byte) in edits {
            let index = at.index(datum.len());
            datum[index] = byte;
        }
        datum.truncate(keep.index(datum.len() + 1));
        let flat = DatumReader::new(&stream, Arc::new(schema.clone()));
        match flat.decode(&stream, &datum) {
            // The value tree read a string or boolean cut short as null.
            Err(RecordError::NotAvro { message }) => {
                prop_assert!(message.starts_with("field `") && message.contains(" at byte "), "{message}");
            }
            decoded => {
                let tree = stream_worker::avro::decode(&stream, &schema, &datum);
                prop_assert_eq!(format!("{decoded:?}"), format!("{tree:?}"));
            }
        }
    }

    #[test]
    fn every_scalar_type_reads_as_the_value_tree_reads_it(
        name in any::<String>(),
        nick in any::<Option<String>>(),
        numbers in (any::<i32>(), any::<i64>(), any::<f64>(), any::<f32>()),
        active in any::<bool>(),
        // `small` (an int column) mostly in range: out of it, the row is refused.
        more in (any::<i64>(), any::<i32>(), prop_oneof![9 => -70_000i64..70_000, 1 => any::<i64>()]),
        unread in any::<Option<i64>>(),
    ) {
        use apache_avro::types::Value as Avro;
        let (stream, schema) = scalars();
        let (age, visits, score, ratio) = numbers;
        let (seen, code, small) = more;
        let union = |index: u32, value: Avro| Avro::Union(index, Box::new(value));
        let record = Avro::Record(vec![
            ("name".into(), Avro::String(name)),
            ("nick".into(), nick.map_or(union(0, Avro::Null), |n| union(1, Avro::String(n)))),
            ("age".into(), Avro::Int(age)),
            ("visits".into(), Avro::Long(visits)),
            ("score".into(), Avro::Double(score)),
            ("ratio".into(), Avro::Float(ratio)),
            ("active".into(), Avro::Boolean(active)),
            ("seen".into(), Avro::Long(seen)),
            ("code".into(), Avro::Int(code)),
            ("small".into(), Avro::Long(small)),
            ("unread".into(), unread.map_or(union(1, Avro::Null), |n| union(2, Avro::Long(n)))),
        ]);
        let datum = apache_avro::to_avro_datum(&schema, record).expect("encode");
        let reader = DatumReader::new(&stream, schema.clone());
        prop_assert!(matches!(reader, DatumReader::Flat(_)));
        let flat = reader.decode(&stream, &datum);
        let tree = stream_worker::avro::decode(&stream, &schema, &datum);
        prop_assert_eq!(format!("{flat:?}"), format!("{tree:?}"));
    }

    #[test]
    fn an_edited_definition_never_panics(bytes in edited(SEED_DEFINITION)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = definition::parse(Path::new("edited.yaml"), &text);
    }
}
