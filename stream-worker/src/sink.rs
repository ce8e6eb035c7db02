//! Writes rows to Cassandra: one prepared `INSERT ... USING TIMESTAMP ?` per table of a stream,
//! each retried with exponential backoff until it succeeds. A good record is never given up on;
//! it is done when every table has its row.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scylla::client::PoolSize;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, NewSessionError, RequestAttemptError};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, MaybeUnset};

use crate::connections::CassandraLogin;
use crate::decode::{Bound, RecordError};
use crate::definition::{Stream, Table};
use crate::metrics::StreamMetrics;

/// First wait after a failed write; doubled on each further failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot connect to Cassandra at {contact_points}: {source}")]
    Connect {
        contact_points: String,
        #[source]
        source: Box<NewSessionError>,
    },
    #[error("cannot prepare the insert for stream `{stream}`: {message}")]
    Prepare { stream: String, message: String },
}

/// Opens a session. A short client-side timeout turns a hung node into a retried error quickly.
pub async fn connect(
    contact_points: &[String],
    login: Option<&CassandraLogin>,
    connections_per_host: usize,
) -> Result<Session, SinkError> {
    let profile = ExecutionProfile::builder()
        .request_timeout(Some(Duration::from_secs(5)))
        .build();
    let per_host = std::num::NonZeroUsize::new(connections_per_host.max(1))
        .unwrap_or(std::num::NonZeroUsize::MIN);
    let mut builder = SessionBuilder::new();
    if let Some(login) = login {
        builder = builder.user(&login.username, &login.password);
    }
    builder
        .known_nodes(contact_points)
        .pool_size(PoolSize::PerHost(per_host))
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await
        .map_err(|source| SinkError::Connect {
            contact_points: contact_points.join(","),
            source: Box::new(source),
        })
}

/// The insert statement of one table of a stream.
pub fn insert_cql(stream: &Stream, table: &Table) -> String {
    let names: Vec<&str> = table
        .columns
        .iter()
        .map(|&c| stream.columns[c].name.as_str())
        .collect();
    let marks = vec!["?"; names.len()].join(", ");
    let ttl = table
        .ttl
        .map(|seconds| format!(" AND TTL {seconds}"))
        .unwrap_or_default();
    format!(
        "INSERT INTO {}.{} ({}) VALUES ({marks}) USING TIMESTAMP ?{ttl}",
        stream.keyspace,
        table.name,
        names.join(", ")
    )
}

/// One table's prepared insert.
struct TableInsert {
    name: String,
    statement: PreparedStatement,
    /// Positions of its values in a decoded row; `None`: the whole row, as it is.
    columns: Option<Vec<usize>>,
}

pub struct Sink {
    session: Arc<Session>,
    inserts: Vec<TableInsert>,
    metrics: Arc<StreamMetrics>,
    stream: Stream,
    /// When a table was last found missing and created again: one writer does it, the others
    /// wait for it, and not more than once per [`MAX_BACKOFF`].
    recreated: tokio::sync::Mutex<Option<Instant>>,
}

impl Sink {
    pub async fn prepare(
        session: Arc<Session>,
        stream: &Stream,
        metrics: Arc<StreamMetrics>,
    ) -> Result<Self, SinkError> {
        let mut inserts = Vec::with_capacity(stream.tables.len());
        for table in &stream.tables {
            let mut statement = session
                .prepare(insert_cql(stream, table))
                .await
                .map_err(|e| SinkError::Prepare {
                    stream: stream.name.clone(),
                    message: format!("table {}: {e}", table.name),
                })?;
            // An upsert with an explicit timestamp: replaying it changes nothing.
            statement.set_is_idempotent(true);
            statement.set_consistency(stream.consistency);
            let whole_row = table.columns.iter().copied().eq(0..stream.columns.len());
            inserts.push(TableInsert {
                name: table.name.clone(),
                statement,
                columns: (!whole_row).then(|| table.columns.clone()),
            });
        }
        Ok(Self {
            session,
            inserts,
            metrics,
            stream: stream.clone(),
            recreated: tokio::sync::Mutex::new(None),
        })
    }

    /// Writes the record's row to every table with the given write time, retrying each until
    /// it is written. Returns an error only when Cassandra rejects a row itself (naming the
    /// table); the record then goes to the dead letters.
    pub async fn write(
        &self,
        mut row: Vec<Bound>,
        timestamp_micros: i64,
    ) -> Result<(), RecordError> {
        let timestamp = MaybeUnset::Set(Some(CqlValue::BigInt(timestamp_micros)));
        // One table of every column (most streams): the row itself, not a copy.
        if let [insert] = self.inserts.as_slice()
            && insert.columns.is_none()
        {
            row.push(timestamp);
            return self.write_table(insert, row).await;
        }
        let writes = self
            .inserts
            .iter()
            .map(|insert| self.write_table(insert, values(insert, &row, &timestamp)));
        futures::future::join_all(writes)
            .await
            .into_iter()
            .collect()
    }

    async fn write_table(
        &self,
        insert: &TableInsert,
        values: Vec<Bound>,
    ) -> Result<(), RecordError> {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u64;
        let started = Instant::now();
        loop {
            match self
                .session
                .execute_unpaged(&insert.statement, &values)
                .await
            {
                Ok(_) => {
                    self.metrics.write_succeeded();
                    if failures > 0 {
                        tracing::info!(stream = %self.stream.name, table = %insert.name, failures,
                            "write succeeded after retries");
                    }
                    return Ok(());
                }
                Err(error) if is_permanent(&error) => {
                    return Err(RecordError::Rejected {
                        message: format!("table {}.{}: {error}", self.stream.keyspace, insert.name),
                    });
                }
                Err(error) => {
                    failures += 1;
                    self.metrics.retried();
                    self.metrics.write_failed(&error.to_string());
                    if is_target_missing(&error) {
                        self.create_target_again().await;
                    }
                    // Log the first failure and then every 10th, so an outage does not flood logs.
                    if failures % 10 == 1 {
                        tracing::warn!(
                            stream = %self.stream.name, table = %insert.name, failures, %error,
                            waited_ms = started.elapsed().as_millis() as u64,
                            "write failed; retrying with backoff"
                        );
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The values of `insert`'s statement: its columns of the row, then the write time.
fn values(insert: &TableInsert, row: &[Bound], timestamp: &Bound) -> Vec<Bound> {
    let mut values: Vec<Bound> = match &insert.columns {
        Some(columns) => columns.iter().map(|&c| row[c].clone()).collect(),
        None => row.to_vec(),
    };
    values.push(timestamp.clone());
    values
}

impl Sink {
    /// The keyspace or table is gone (dropped, or lost in a restart): create it again as at
    /// start-up. Failing that, the writes keep being retried: the records wait, none is lost.
    async fn create_target_again(&self) {
        let mut recreated = self.recreated.lock().await;
        if recreated.is_some_and(|at| at.elapsed() < MAX_BACKOFF) {
            return;
        }
        *recreated = Some(Instant::now());
        match crate::schema::ensure(&self.session, &self.stream).await {
            Ok(()) => tracing::warn!(stream = %self.stream.name,
                keyspace = %self.stream.keyspace,
                "a target table was missing and has been created again"),
            Err(error) => tracing::error!(stream = %self.stream.name, %error,
                "the target table is missing and cannot be created; retrying"),
        }
    }
}

/// Errors about the row itself; everything else (timeouts, unavailable, lost connections,
/// overload, a missing keyspace or table) is the cluster's state and worth retrying.
pub(crate) fn is_permanent(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::SerializationError(_)) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, message)) => {
            matches!(db, DbError::Invalid | DbError::SyntaxError) && !names_missing_schema(message)
        }
        _ => false,
    }
}

/// Whether the target keyspace or table (or one of its columns) does not exist: Cassandra says
/// so with the same `Invalid` code as for a bad row, so the message tells them apart.
fn is_target_missing(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(_, message)) => {
            names_missing_schema(message)
        }
        other => names_missing_schema(&other.to_string()),
    }
}

fn names_missing_schema(message: &str) -> bool {
    let message = message.to_lowercase();
    [
        "unconfigured table",
        "does not exist",
        "undefined column name",
        "unknown identifier",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_table_or_keyspace_is_an_outage_and_a_bad_row_is_not() {
        let db = |message: &str| {
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                DbError::Invalid,
                message.to_string(),
            ))
        };
        for missing in [
            "unconfigured table created_users",
            "Keyspace spark_streaming does not exist",
            "Undefined column name phone in table spark_streaming.created_users",
        ] {
            assert!(!is_permanent(&db(missing)), "{missing}");
            assert!(is_target_missing(&db(missing)), "{missing}");
        }
        let bad_row = db("Invalid null value in condition for column id");
        assert!(is_permanent(&bad_row));
        assert!(!is_target_missing(&bad_row));
    }

    #[test]
    fn insert_uses_the_record_timestamp() {
        let text = "source: {topic: t, group: g}\ncolumns: [{name: id, cql_type: uuid}, {name: a, cql_type: text}]\n\
                    target: {keyspace: ks, table: t, primary_key: [id]}\n";
        let stream = crate::definition::parse(std::path::Path::new("t.yaml"), text).expect("valid");
        assert_eq!(
            insert_cql(&stream, &stream.tables[0]),
            "INSERT INTO ks.t (id, a) VALUES (?, ?) USING TIMESTAMP ?"
        );
        let text = text.replace(
            "primary_key: [id]}",
            "primary_key: [id], ttl: 60, tables: [{table: by_a, primary_key: [a], columns: [a, id]}]}",
        );
        let stream =
            crate::definition::parse(std::path::Path::new("t.yaml"), &text).expect("valid");
        assert_eq!(
            insert_cql(&stream, &stream.tables[0]),
            "INSERT INTO ks.t (id, a) VALUES (?, ?) USING TIMESTAMP ? AND TTL 60"
        );
        assert_eq!(
            insert_cql(&stream, &stream.tables[1]),
            "INSERT INTO ks.by_a (a, id) VALUES (?, ?) USING TIMESTAMP ?"
        );
    }
}
