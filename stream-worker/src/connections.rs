//! Connections named by stream definitions (`source.conn_id` for Kafka, `target.conn_id` for
//! Cassandra, `source.registry_conn_id` for the schema registry), read the way the orchestrator
//! reads them: `UPDRAFT_CONN_<ID>` first (an Airflow URI or JSON), then the `connection` table of
//! `DATABASE_URL`, decrypted with `UPDRAFT_SECRET_KEY`. Credentials live in one place for the
//! DAGs and the streams.
//!
//! One worker serves one Kafka cluster, one Cassandra cluster and one registry: when its
//! definitions name a connection, every stream of the worker uses it, and two different names
//! are refused.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tokio_util::sync::CancellationToken;
use updraft_secrets::{Cipher, CipherError, Connection, ConnectionError};

use crate::definition::Stream;
use crate::worker::WorkerConfig;

/// librdkafka settings from a connection's extra and credentials; `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSettings(pub Vec<(String, String)>);

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// A Cassandra login; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct CassandraLogin {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for CassandraLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CassandraLogin({}, ***)", self.username)
    }
}

/// A schema registry's basic-auth login; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistryLogin({}, ***)", self.username)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionLookupError {
    #[error(
        "the stream definitions name {count} {system} connections ({names}): a worker serves one {system} cluster, so run one worker per cluster"
    )]
    Several {
        system: &'static str,
        count: usize,
        names: String,
    },
    #[error(
        "connection `{conn_id}` is not defined: set env {env}, or store it (`updraft connections add {conn_id} ...`) and give the worker DATABASE_URL"
    )]
    Missing { conn_id: String, env: String },
    #[error("{env}: {source}")]
    Env {
        env: String,
        #[source]
        source: ConnectionError,
    },
    #[error("connection `{conn_id}`: {message}")]
    Unusable { conn_id: String, message: String },
    #[error("connection `{conn_id}` {field}: {source}")]
    Cipher {
        conn_id: String,
        field: &'static str,
        #[source]
        source: CipherError,
    },
    #[error("cannot read connection `{conn_id}` from the database: {source}")]
    Database {
        conn_id: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Where connections are looked up besides the environment.
#[derive(Clone)]
pub struct Lookup {
    pub database_url: Option<String>,
    pub cipher: Cipher,
}

impl Lookup {
    /// `DATABASE_URL` and `UPDRAFT_SECRET_KEY` from the environment.
    pub fn from_env() -> Result<Lookup, CipherError> {
        Ok(Lookup {
            database_url: std::env::var("DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            cipher: Cipher::from_env()?,
        })
    }

    /// The connection `conn_id`: the environment's, else the database's.
    pub async fn connection(&self, conn_id: &str) -> Result<Connection, ConnectionLookupError> {
        let env = Connection::env_var_name(conn_id);
        if let Ok(text) = std::env::var(&env) {
            return Connection::parse(conn_id, &text)
                .map_err(|source| ConnectionLookupError::Env { env, source });
        }
        let Some(url) = &self.database_url else {
            return Err(ConnectionLookupError::Missing {
                conn_id: conn_id.to_string(),
                env,
            });
        };
        let database = |source| ConnectionLookupError::Database {
            conn_id: conn_id.to_string(),
            source,
        };
        let mut db = PgConnection::connect(url).await.map_err(database)?;
        let row: Option<StoredConnection> = sqlx::query_as(
            "SELECT conn_type, description, host, port, login, password, schema, extra
               FROM connection WHERE conn_id = $1",
        )
        .bind(conn_id)
        .fetch_optional(&mut db)
        .await
        .map_err(database)?;
        let _ = db.close().await;
        let row = row.ok_or(ConnectionLookupError::Missing {
            conn_id: conn_id.to_string(),
            env,
        })?;
        row.open(conn_id, &self.cipher)
    }
}

/// A `connection` row: the password and the extra are Fernet tokens.
#[derive(sqlx::FromRow)]
struct StoredConnection {
    conn_type: String,
    description: Option<String>,
    host: Option<String>,
    port: Option<i32>,
    login: Option<String>,
    password: Option<String>,
    schema: Option<String>,
    extra: Option<String>,
}

impl StoredConnection {
    fn open(self, conn_id: &str, cipher: &Cipher) -> Result<Connection, ConnectionLookupError> {
        let reveal = |token: Option<String>, field| {
            token
                .map(|token| cipher.decrypt(&token))
                .transpose()
                .map_err(|source| ConnectionLookupError::Cipher {
                    conn_id: conn_id.to_string(),
                    field,
                    source,
                })
        };
        Ok(Connection {
            conn_id: conn_id.to_string(),
            conn_type: self.conn_type,
            description: self.description,
            host: self.host,
            port: self.port.and_then(|port| u16::try_from(port).ok()),
            login: self.login,
            password: reveal(self.password, "password")?,
            schema: self.schema,
            extra: reveal(self.extra, "extra")?,
        })
    }
}

/// The one connection id the streams name through `pick`, if any.
fn one_named(
    streams: &[Stream],
    system: &'static str,
    pick: impl Fn(&Stream) -> Option<&String>,
) -> Result<Option<String>, ConnectionLookupError> {
    let names: BTreeSet<&String> = streams.iter().filter_map(pick).collect();
    match names.len() {
        0 | 1 => Ok(names.into_iter().next().cloned()),
        count => Err(ConnectionLookupError::Several {
            system,
            count,
            names: names
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Points `config` at the clusters the streams' connections name, once each is found.
pub async fn apply(
    config: &mut WorkerConfig,
    streams: &[Stream],
    lookup: &Lookup,
) -> Result<(), ConnectionLookupError> {
    let kafka_id = one_named(streams, "Kafka", |s| s.kafka_conn_id.as_ref())?;
    let cassandra_id = one_named(streams, "Cassandra", |s| s.cassandra_conn_id.as_ref())?;
    let registry_id = one_named(streams, "schema registry", |s| s.registry_conn_id.as_ref())?;
    let unusable = |conn_id: &str| {
        let conn_id = conn_id.to_string();
        move |message| ConnectionLookupError::Unusable { conn_id, message }
    };
    if let Some(conn_id) = kafka_id {
        let client = lookup
            .connection(&conn_id)
            .await?
            .kafka_client()
            .map_err(unusable(&conn_id))?;
        config.kafka_bootstrap_servers = client.brokers.ok_or_else(|| {
            unusable(&conn_id)("no host and no `bootstrap.servers` in its extra".into())
        })?;
        config.kafka_settings = KafkaSettings(client.settings);
        tracing::info!(%conn_id, brokers = %config.kafka_bootstrap_servers, "Kafka from a connection");
    }
    if let Some(conn_id) = cassandra_id {
        let connection = lookup.connection(&conn_id).await?;
        config.cassandra_contact_points = connection
            .cassandra_contact_points()
            .map_err(unusable(&conn_id))?;
        config.cassandra_login = connection.login.clone().map(|username| CassandraLogin {
            username,
            password: connection.password.clone().unwrap_or_default(),
        });
        tracing::info!(%conn_id, contact_points = %config.cassandra_contact_points.join(","), "Cassandra from a connection");
    }
    if let Some(conn_id) = registry_id {
        let connection = lookup.connection(&conn_id).await?;
        config.schema_registry_url = connection.http_base_url().map_err(unusable(&conn_id))?;
        config.schema_registry_login = connection.login.clone().map(|username| RegistryLogin {
            username,
            password: connection.password.clone().unwrap_or_default(),
        });
        tracing::info!(%conn_id, url = %config.schema_registry_url, "schema registry from a connection");
    }
    Ok(())
}

/// [`apply`], retried with backoff while the database is away (a restarting database is no
/// reason to exit); `false` when stopped first.
pub async fn apply_when_reachable(
    config: &mut WorkerConfig,
    streams: &[Stream],
    lookup: &Lookup,
    shutdown: &CancellationToken,
) -> Result<bool, ConnectionLookupError> {
    let mut delay = Duration::from_millis(250);
    loop {
        match apply(config, streams, lookup).await {
            Ok(()) => return Ok(true),
            Err(error @ ConnectionLookupError::Database { .. }) => {
                tracing::warn!(%error, retry_in = ?delay, "cannot read the streams' connections yet");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(false),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    }
}
