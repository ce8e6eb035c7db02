//! A flat record read straight into columns: when the writer's schema is a record of scalar
//! fields (null, boolean, int, long, float, double, string, and unions of these), as the seed's
//! is, its datum is read field by field without `apache_avro`'s value tree. Strings are borrowed
//! from the datum until a column copies them, and fields no column reads are skipped, so a
//! record costs what the row needs (the tree allocated each field's name and value, then the
//! row copied the values again).

use std::ops::ControlFlow;

use apache_avro::Schema;
use apache_avro::schema::RecordSchema;
use scylla::value::{CqlValue, MaybeUnset};
use serde_json::{Number, Value as Json};

use crate::decode::{Bound, RecordError, convert_value, present};
use crate::definition::{Column, CqlType, Stream};

/// The scalar types a flat record's fields may have.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
}

impl Scalar {
    fn of(schema: &Schema) -> Option<Scalar> {
        Some(match schema {
            Schema::Null => Scalar::Null,
            Schema::Boolean => Scalar::Boolean,
            Schema::Int => Scalar::Int,
            Schema::Long => Scalar::Long,
            Schema::Float => Scalar::Float,
            Schema::Double => Scalar::Double,
            Schema::String => Scalar::String,
            _ => return None,
        })
    }
}

/// A field's type: one scalar, or a union's branches (the datum names the branch by index).
#[derive(Debug)]
enum FieldType {
    Plain(Scalar),
    Union(Vec<Scalar>),
}

#[derive(Debug)]
struct Field {
    name: String,
    kind: FieldType,
}

/// A value read from the datum.
#[derive(Debug, Clone, Copy)]
enum Read<'d> {
    Null,
    Boolean(bool),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    String(&'d str),
}

impl Read<'_> {
    /// The JSON form the tree reader gives the same value (`avro::to_json`).
    fn to_json(self) -> Json {
        match self {
            Read::Null => Json::Null,
            Read::Boolean(b) => Json::Bool(b),
            Read::Int(n) => Json::from(n),
            Read::Long(n) => Json::from(n),
            Read::Float(n) => Number::from_f64(f64::from(n)).map_or(Json::Null, Json::Number),
            Read::Double(n) => Number::from_f64(n).map_or(Json::Null, Json::Number),
            Read::String(text) => Json::String(text.to_owned()),
        }
    }
}

/// A flat writer schema and, for each of a stream's columns, the field that fills it.
#[derive(Debug)]
pub struct FlatRecord {
    fields: Vec<Field>,
    /// By column: the index of its field, `None` when the schema has no field of that name.
    columns: Vec<Option<usize>>,
}

impl FlatRecord {
    /// `None` when `schema` is not a flat record (nested records, arrays, maps, enums, bytes,
    /// logical types): those are read through the value tree.
    pub fn new(stream: &Stream, schema: &Schema) -> Option<FlatRecord> {
        let Schema::Record(RecordSchema { fields, .. }) = schema else {
            return None;
        };
        let fields = fields
            .iter()
            .map(|field| {
                let kind = match &field.schema {
                    Schema::Union(union) => FieldType::Union(
                        union
                            .variants()
                            .iter()
                            .map(Scalar::of)
                            .collect::<Option<_>>()?,
                    ),
                    other => FieldType::Plain(Scalar::of(other)?),
                };
                Some(Field {
                    name: field.name.clone(),
                    kind,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        // A column's field is a field of that exact name: a dotted path needs nested records.
        let columns = stream
            .columns
            .iter()
            .map(|column| fields.iter().position(|field| field.name == column.field))
            .collect();
        Some(FlatRecord { fields, columns })
    }

    /// Reads `datum` into one bound value per column, with the tree reader's conversions. A
    /// datum that ends early is refused (the tree reader took a string or boolean cut short as
    /// null).
    pub fn decode(&self, stream: &Stream, datum: &[u8]) -> Result<Vec<Bound>, RecordError> {
        let mut cursor = Cursor { datum, at: 0 };
        let mut values = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let value = cursor
                .field(&field.kind)
                .map_err(|problem| RecordError::NotAvro {
                    message: format!("field `{}` at byte {}: {problem}", field.name, cursor.at),
                })?;
            values.push(value);
        }
        let mut row = Vec::with_capacity(stream.columns.len() + 1);
        for (column, field) in stream.columns.iter().zip(&self.columns) {
            row.push(bind(stream, column, field.map(|index| values[index]))?);
        }
        Ok(row)
    }
}

/// As `avro::bind` does a tree value.
fn bind(stream: &Stream, column: &Column, value: Option<Read<'_>>) -> Result<Bound, RecordError> {
    let value = match present(column, value, |v| matches!(v, Read::Null))? {
        ControlFlow::Continue(value) => value,
        ControlFlow::Break(bound) => return Ok(bound),
    };
    let converted = match (&column.cql_type, value) {
        (CqlType::Text, Read::String(text)) => CqlValue::Text(text.to_owned()),
        (CqlType::Int, Read::Int(n)) => CqlValue::Int(n),
        (CqlType::Bigint, Read::Long(n)) => CqlValue::BigInt(n),
        (CqlType::Double, Read::Double(n)) => CqlValue::Double(n),
        (CqlType::Boolean, Read::Boolean(b)) => CqlValue::Boolean(b),
        (cql_type, other) => convert_value(stream, cql_type, &column.field, &other.to_json())?,
    };
    Ok(MaybeUnset::Set(Some(converted)))
}

/// The datum and how far it has been read.
struct Cursor<'d> {
    datum: &'d [u8],
    at: usize,
}

impl<'d> Cursor<'d> {
    fn field(&mut self, kind: &FieldType) -> Result<Read<'d>, String> {
        match kind {
            FieldType::Plain(scalar) => self.scalar(*scalar),
            FieldType::Union(branches) => {
                let index = self.long()?;
                let branch = usize::try_from(index)
                    .ok()
                    .and_then(|index| branches.get(index))
                    .ok_or_else(|| {
                        format!("union branch {index} of {} does not exist", branches.len())
                    })?;
                self.scalar(*branch)
            }
        }
    }

    fn scalar(&mut self, scalar: Scalar) -> Result<Read<'d>, String> {
        Ok(match scalar {
            Scalar::Null => Read::Null,
            Scalar::Boolean => match self.take(1)? {
                [0] => Read::Boolean(false),
                [1] => Read::Boolean(true),
                other => return Err(format!("boolean byte {:#04x} is neither 0 nor 1", other[0])),
            },
            Scalar::Int => {
                let long = self.long()?;
                Read::Int(i32::try_from(long).map_err(|_| format!("int {long} is out of range"))?)
            }
            Scalar::Long => Read::Long(self.long()?),
            Scalar::Float => Read::Float(f32::from_le_bytes(self.array()?)),
            Scalar::Double => Read::Double(f64::from_le_bytes(self.array()?)),
            Scalar::String => {
                let length = self.long()?;
                let length = usize::try_from(length)
                    .map_err(|_| format!("string length {length} is negative"))?;
                let bytes = self.take(length)?;
                Read::String(
                    std::str::from_utf8(bytes).map_err(|error| format!("string: {error}"))?,
                )
            }
        })
    }

    fn take(&mut self, length: usize) -> Result<&'d [u8], String> {
        let left = self.datum.len() - self.at;
        if length > left {
            return Err(format!(
                "the datum ends after {left} more bytes, {length} needed"
            ));
        }
        let bytes = &self.datum[self.at..self.at + length];
        self.at += length;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// A zigzag varint of at most 10 bytes, as the tree reader reads one.
    fn long(&mut self) -> Result<i64, String> {
        let mut zigzag = 0u64;
        for shift in 0..10 {
            let byte = self.take(1)?[0];
            zigzag |= u64::from(byte & 0x7f) << (shift * 7);
            if byte & 0x80 == 0 {
                let magnitude = (zigzag >> 1) as i64;
                return Ok(if zigzag & 1 == 0 {
                    magnitude
                } else {
                    !magnitude
                });
            }
        }
        Err("a variable-length integer is longer than 10 bytes".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_of(bytes: &[u8]) -> Result<i64, String> {
        Cursor {
            datum: bytes,
            at: 0,
        }
        .long()
    }

    #[test]
    fn a_datum_cut_short_is_refused_naming_the_field_and_the_byte() {
        let definition = include_str!("../../../streams/users_created.yaml")
            .replace("  start_offset:", "  format: avro\n  start_offset:");
        let stream = crate::definition::parse(std::path::Path::new("users.yaml"), &definition)
            .expect("definition");
        let schema =
            Schema::parse_str(include_str!("../../../streams/examples/users_created.avsc"))
                .expect("schema");
        let flat = FlatRecord::new(&stream, &schema).expect("the seed schema is flat");
        // The seed's fields, in the schema's order: short strings, and an email of 15 bytes.
        let fields = stream
            .columns
            .iter()
            .map(|column| {
                let text = if column.field == "email" {
                    "zoe@example.com"
                } else {
                    "x"
                };
                (
                    column.field.clone(),
                    apache_avro::types::Value::String(text.into()),
                )
            })
            .collect();
        let datum = apache_avro::to_avro_datum(&schema, apache_avro::types::Value::Record(fields))
            .expect("encode");
        let error = flat.decode(&stream, &datum[..15]).expect_err("cut short");
        assert_eq!(
            error.to_string(),
            "record is not Avro: field `email` at byte 13: the datum ends after 2 more bytes, \
             15 needed"
        );
    }

    #[test]
    fn longs_are_zigzag_varints() {
        assert_eq!(long_of(&[0x00]), Ok(0));
        assert_eq!(long_of(&[0x01]), Ok(-1));
        assert_eq!(long_of(&[0x02]), Ok(1));
        assert_eq!(long_of(&[0xac, 0x02]), Ok(150));
        let mut max = Vec::new();
        apache_avro::to_avro_datum(&Schema::Long, apache_avro::types::Value::Long(i64::MIN))
            .map(|datum| max = datum)
            .expect("encode");
        assert_eq!(long_of(&max), Ok(i64::MIN));
        assert!(long_of(&[0x80; 11]).is_err());
        assert!(long_of(&[0x80]).is_err());
    }
}
