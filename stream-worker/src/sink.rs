//! Writes rows to Cassandra: one prepared `INSERT ... USING TIMESTAMP ?` per stream, retried
//! with exponential backoff until it succeeds. A good record is never given up on.

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
use crate::definition::Stream;
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

/// The insert statement of one stream.
pub fn insert_cql(stream: &Stream) -> String {
    let names: Vec<&str> = stream.columns.iter().map(|c| c.name.as_str()).collect();
    let marks = vec!["?"; names.len()].join(", ");
    format!(
        "INSERT INTO {}.{} ({}) VALUES ({marks}) USING TIMESTAMP ?",
        stream.keyspace,
        stream.table,
        names.join(", ")
    )
}

pub struct Sink {
    session: Arc<Session>,
    insert: PreparedStatement,
    metrics: Arc<StreamMetrics>,
    stream: Stream,
    /// When the target was last found missing and created again: one writer does it, the
    /// others wait for it, and not more than once per [`MAX_BACKOFF`].
    recreated: tokio::sync::Mutex<Option<Instant>>,
}

impl Sink {
    pub async fn prepare(
        session: Arc<Session>,
        stream: &Stream,
        metrics: Arc<StreamMetrics>,
    ) -> Result<Self, SinkError> {
        let mut insert =
            session
                .prepare(insert_cql(stream))
                .await
                .map_err(|e| SinkError::Prepare {
                    stream: stream.name.clone(),
                    message: e.to_string(),
                })?;
        // An upsert with an explicit timestamp: replaying it changes nothing.
        insert.set_is_idempotent(true);
        insert.set_consistency(stream.consistency);
        Ok(Self {
            session,
            insert,
            metrics,
            stream: stream.clone(),
            recreated: tokio::sync::Mutex::new(None),
        })
    }

    /// Writes one row with the given write time, retrying until it is written. Returns an error
    /// only when Cassandra rejects the row itself; that record then goes to the dead letters.
    pub async fn write(
        &self,
        mut row: Vec<Bound>,
        timestamp_micros: i64,
    ) -> Result<(), RecordError> {
        row.push(MaybeUnset::Set(Some(CqlValue::BigInt(timestamp_micros))));
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u64;
        let started = Instant::now();
        loop {
            match self.session.execute_unpaged(&self.insert, &row).await {
                Ok(_) => {
                    self.metrics.write_succeeded();
                    if failures > 0 {
                        tracing::info!(stream = %self.stream.name, failures, "write succeeded after retries");
                    }
                    return Ok(());
                }
                Err(error) if is_permanent(&error) => {
                    return Err(RecordError::Rejected {
                        message: error.to_string(),
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
                            stream = %self.stream.name, failures, %error,
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
                keyspace = %self.stream.keyspace, table = %self.stream.table,
                "the target table was missing and has been created again"),
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
            insert_cql(&stream),
            "INSERT INTO ks.t (id, a) VALUES (?, ?) USING TIMESTAMP ?"
        );
    }
}
