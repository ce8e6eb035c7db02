//! Creates the target keyspace and table when missing, and refuses a table whose columns do not
//! match the stream definition (the seed's table lacked `dob`, which its job then wrote).

use std::collections::HashMap;

use scylla::client::session::Session;

use crate::definition::{Stream, Table, UserType};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot create {what} for stream `{stream}`: {source}")]
    Create {
        stream: String,
        what: String,
        #[source]
        source: Box<scylla::errors::ExecutionError>,
    },
    #[error("cannot read the columns of {keyspace}.{table}: {message}")]
    Read {
        keyspace: String,
        table: String,
        message: String,
    },
    #[error(
        "table {keyspace}.{table} does not match stream `{stream}`; fix the table or the definition:\n  {}",
        problems.join("\n  ")
    )]
    Mismatch {
        stream: String,
        keyspace: String,
        table: String,
        problems: Vec<String>,
    },
    #[error(
        "type {keyspace}.{name} does not match stream `{stream}`; fix the type or the definition:\n  {}",
        problems.join("\n  ")
    )]
    TypeMismatch {
        stream: String,
        keyspace: String,
        name: String,
        problems: Vec<String>,
    },
}

/// `CREATE KEYSPACE IF NOT EXISTS ...` for the stream's target.
pub fn create_keyspace_cql(stream: &Stream) -> String {
    let options: Vec<String> = stream
        .replication
        .iter()
        .map(|(key, value)| format!("'{key}': '{value}'"))
        .collect();
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {{{}}}",
        stream.keyspace,
        options.join(", ")
    )
}

/// `CREATE TYPE IF NOT EXISTS ...` with the type's fields.
pub fn create_type_cql(stream: &Stream, user_type: &UserType) -> String {
    let fields: Vec<String> = user_type
        .fields
        .iter()
        .map(|(name, cql_type)| format!("{name} {cql_type}"))
        .collect();
    format!(
        "CREATE TYPE IF NOT EXISTS {}.{} ({})",
        stream.keyspace,
        user_type.name,
        fields.join(", ")
    )
}

/// Refuses a type that exists with other fields: rows would not round-trip.
async fn check_type(
    session: &Session,
    stream: &Stream,
    user_type: &UserType,
) -> Result<(), SchemaError> {
    let read_error = |message: String| SchemaError::Read {
        keyspace: stream.keyspace.clone(),
        table: format!("type {}", user_type.name),
        message,
    };
    let (names, types): (Vec<String>, Vec<String>) = session
        .query_unpaged(
            "SELECT field_names, field_types FROM system_schema.types \
             WHERE keyspace_name = ? AND type_name = ?",
            (&stream.keyspace, &user_type.name),
        )
        .await
        .map_err(|e| read_error(e.to_string()))?
        .into_rows_result()
        .map_err(|e| read_error(e.to_string()))?
        .single_row()
        .map_err(|e| read_error(e.to_string()))?;
    let existing: HashMap<&str, &str> = names
        .iter()
        .map(String::as_str)
        .zip(types.iter().map(String::as_str))
        .collect();
    let mut problems = Vec::new();
    for (name, cql_type) in &user_type.fields {
        let expected = cql_type.to_string();
        match existing.get(name.as_str()) {
            None => problems.push(format!("field `{name}` is missing (expected {expected})")),
            Some(found) if *found != expected => problems.push(format!(
                "field `{name}` has type {found}, the definition says {expected}"
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::TypeMismatch {
            stream: stream.name.clone(),
            keyspace: stream.keyspace.clone(),
            name: user_type.name.clone(),
            problems,
        })
    }
}

/// `CREATE TABLE IF NOT EXISTS ...` with the table's columns and key.
pub fn create_table_cql(stream: &Stream, table: &Table) -> String {
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .map(|&c| {
            let column = &stream.columns[c];
            format!("{} {}", column.name, column.cql_type)
        })
        .collect();
    let mut key = format!("({})", table.primary_key.join(", "));
    for clustering in &table.clustering_key {
        key.push_str(", ");
        key.push_str(clustering);
    }
    parts.push(format!("PRIMARY KEY ({key})"));
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} ({})",
        stream.keyspace,
        table.name,
        parts.join(", ")
    )
}

/// Creates what is missing, then checks each table's columns against the definition.
pub async fn ensure(session: &Session, stream: &Stream) -> Result<(), SchemaError> {
    let create = |what: String, cql: String| async move {
        session
            .query_unpaged(cql, ())
            .await
            .map(|_| ())
            .map_err(|source| SchemaError::Create {
                stream: stream.name.clone(),
                what,
                source: Box::new(source),
            })
    };
    create(
        format!("keyspace {}", stream.keyspace),
        create_keyspace_cql(stream),
    )
    .await?;
    for user_type in &stream.types {
        create(
            format!("type {}.{}", stream.keyspace, user_type.name),
            create_type_cql(stream, user_type),
        )
        .await?;
        check_type(session, stream, user_type).await?;
    }
    for table in &stream.tables {
        create(
            format!("table {}.{}", stream.keyspace, table.name),
            create_table_cql(stream, table),
        )
        .await?;
        check(session, stream, table).await?;
    }
    Ok(())
}

async fn check(session: &Session, stream: &Stream, table: &Table) -> Result<(), SchemaError> {
    let read_error = |message: String| SchemaError::Read {
        keyspace: stream.keyspace.clone(),
        table: table.name.clone(),
        message,
    };
    let rows = session
        .query_unpaged(
            "SELECT column_name, type, kind FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ?",
            (&stream.keyspace, &table.name),
        )
        .await
        .map_err(|e| read_error(e.to_string()))?
        .into_rows_result()
        .map_err(|e| read_error(e.to_string()))?;
    let mut existing = HashMap::new();
    for row in rows
        .rows::<(String, String, String)>()
        .map_err(|e| read_error(e.to_string()))?
    {
        let (name, cql_type, kind) = row.map_err(|e| read_error(e.to_string()))?;
        existing.insert(name, (cql_type, kind));
    }
    let problems = compare(stream, table, &existing);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::Mismatch {
            stream: stream.name.clone(),
            keyspace: stream.keyspace.clone(),
            table: table.name.clone(),
            problems,
        })
    }
}

/// Differences between the definition and the table's `(type, kind)` by column name. Extra
/// table columns are fine: the worker leaves them alone.
pub fn compare(
    stream: &Stream,
    table: &Table,
    existing: &HashMap<String, (String, String)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let columns: Vec<&crate::definition::Column> =
        table.columns.iter().map(|&c| &stream.columns[c]).collect();
    for column in &columns {
        let expected_kind = if table.primary_key.contains(&column.name) {
            "partition_key"
        } else if table.clustering_key.contains(&column.name) {
            "clustering"
        } else {
            "regular"
        };
        let expected_type = column.cql_type.to_string();
        match existing.get(&column.name) {
            None => problems.push(format!(
                "column `{}` is missing (expected {expected_type})",
                column.name
            )),
            Some((cql_type, kind)) => {
                if *cql_type != expected_type {
                    problems.push(format!(
                        "column `{}` has type {cql_type}, the definition says {expected_type}",
                        column.name
                    ));
                }
                if kind != expected_kind {
                    problems.push(format!(
                        "column `{}` is a {kind} column, the definition makes it {expected_kind}",
                        column.name
                    ));
                }
            }
        }
    }
    for (name, (_, kind)) in existing {
        let declared = columns.iter().any(|c| &c.name == name);
        if !declared && kind != "regular" {
            problems.push(format!(
                "key column `{name}` ({kind}) is not in the definition"
            ));
        }
    }
    problems.sort();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Stream {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../streams/users_created.yaml");
        let text = std::fs::read_to_string(&path).expect("shipped definition");
        crate::definition::parse(&path, &text).expect("valid")
    }

    #[test]
    fn renders_the_seed_schema() {
        let stream = stream();
        assert_eq!(
            create_keyspace_cql(&stream),
            "CREATE KEYSPACE IF NOT EXISTS spark_streaming WITH replication = \
             {'class': 'SimpleStrategy', 'replication_factor': '1'}"
        );
        let table = create_table_cql(&stream, &stream.tables[0]);
        assert!(table.starts_with(
            "CREATE TABLE IF NOT EXISTS spark_streaming.created_users (id uuid, first_name text,"
        ));
        assert!(
            table.ends_with("picture text, PRIMARY KEY ((id)))"),
            "{table}"
        );
    }

    #[test]
    fn names_every_mismatch() {
        let stream = stream();
        let mut existing: HashMap<String, (String, String)> = stream
            .columns
            .iter()
            .map(|c| (c.name.clone(), ("text".to_string(), "regular".to_string())))
            .collect();
        existing.insert("id".into(), ("uuid".into(), "partition_key".into()));
        let table = &stream.tables[0];
        assert!(compare(&stream, table, &existing).is_empty());
        existing.remove("dob");
        existing.insert("post_code".into(), ("int".into(), "regular".into()));
        existing.insert("extra".into(), ("text".into(), "regular".into()));
        assert_eq!(
            compare(&stream, table, &existing),
            [
                "column `dob` is missing (expected text)",
                "column `post_code` has type int, the definition says text",
            ]
        );
    }
}
