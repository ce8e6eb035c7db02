//! `connection` rows: Airflow's Connections. The password and the extra are stored as Fernet
//! tokens ([`Cipher`]); they are encrypted and decrypted here, at the table's edge, so no
//! caller can write one in plain text. Without a key a connection can still be stored, but not
//! its password or extra.

use std::collections::BTreeMap;

use sqlx::PgPool;
use updraft_secrets::{Cipher, CipherError, Connection, Masker};

use super::Page;

/// The largest connection field (an extra, a password) and variable value stored: secrets and
/// settings, not documents. Larger ones are refused, naming the field.
pub const LARGEST_FIELD: usize = 64 * 1024;
pub const LARGEST_VARIABLE: usize = 1024 * 1024;
/// Longest variable key (as Airflow's column).
pub const LONGEST_KEY: usize = 250;

#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    #[error("connection `{0}` already exists")]
    DuplicateConnection(String),
    #[error("{what} is {size} bytes: at most {limit} are stored")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    #[error("variable key `{0}`: 1 to 250 characters, not blank")]
    InvalidKey(String),
    #[error("{what}: {source}")]
    Cipher {
        what: String,
        #[source]
        source: CipherError,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl SecretStoreError {
    pub(crate) fn cipher(what: impl Into<String>) -> impl FnOnce(CipherError) -> Self {
        let what = what.into();
        move |source| SecretStoreError::Cipher { what, source }
    }
}

struct ConnectionRow {
    conn_id: String,
    conn_type: String,
    description: Option<String>,
    host: Option<String>,
    port: Option<i32>,
    login: Option<String>,
    password: Option<String>,
    schema: Option<String>,
    extra: Option<String>,
}

impl ConnectionRow {
    fn open(self, cipher: &Cipher) -> Result<Connection, SecretStoreError> {
        let reveal = |token: Option<String>, field: &str| {
            token
                .map(|token| cipher.decrypt(&token))
                .transpose()
                .map_err(SecretStoreError::cipher(format!(
                    "connection `{}` {field}",
                    self.conn_id
                )))
        };
        let password = reveal(self.password.clone(), "password")?;
        let extra = reveal(self.extra.clone(), "extra")?;
        Ok(Connection {
            conn_id: self.conn_id,
            conn_type: self.conn_type,
            description: self.description,
            host: self.host,
            port: self.port.and_then(|port| u16::try_from(port).ok()),
            login: self.login,
            password,
            schema: self.schema,
            extra,
        })
    }
}

/// A connection's password and extra as the tokens to store (each field within
/// [`LARGEST_FIELD`]).
fn sealed(
    cipher: &Cipher,
    connection: &Connection,
) -> Result<(Option<String>, Option<String>), SecretStoreError> {
    let fields = [
        ("description", &connection.description),
        ("host", &connection.host),
        ("login", &connection.login),
        ("password", &connection.password),
        ("schema", &connection.schema),
        ("extra", &connection.extra),
    ];
    for (field, value) in fields {
        let size = value.as_deref().map_or(0, str::len);
        if size > LARGEST_FIELD {
            return Err(SecretStoreError::TooLarge {
                what: format!("connection `{}` {field}", connection.conn_id),
                size,
                limit: LARGEST_FIELD,
            });
        }
    }
    let seal = |value: &Option<String>, field: &str| {
        value
            .as_deref()
            .filter(|value| !value.is_empty())
            .map(|value| cipher.encrypt(value))
            .transpose()
            .map_err(SecretStoreError::cipher(format!(
                "connection `{}` {field}",
                connection.conn_id
            )))
    };
    Ok((
        seal(&connection.password, "password")?,
        seal(&connection.extra, "extra")?,
    ))
}

/// Stores a new connection; [`SecretStoreError::DuplicateConnection`] when the id is taken.
pub async fn insert(
    pool: &PgPool,
    cipher: &Cipher,
    connection: &Connection,
) -> Result<(), SecretStoreError> {
    let (password, extra) = sealed(cipher, connection)?;
    let result = sqlx::query!(
        "INSERT INTO connection (conn_id, conn_type, description, host, port, login, password,
                                 schema, extra)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        connection.conn_id,
        connection.conn_type,
        connection.description,
        connection.host,
        connection.port.map(i32::from),
        connection.login,
        password,
        connection.schema,
        extra,
    )
    .execute(pool)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Err(
            SecretStoreError::DuplicateConnection(connection.conn_id.clone()),
        ),
        Err(error) => Err(error.into()),
    }
}

/// Replaces every field of an existing connection; whether it existed.
pub async fn update(
    pool: &PgPool,
    cipher: &Cipher,
    connection: &Connection,
) -> Result<bool, SecretStoreError> {
    let (password, extra) = sealed(cipher, connection)?;
    let updated = sqlx::query!(
        "UPDATE connection SET conn_type = $2, description = $3, host = $4, port = $5, login = $6,
                password = $7, schema = $8, extra = $9, updated_at = now()
          WHERE conn_id = $1",
        connection.conn_id,
        connection.conn_type,
        connection.description,
        connection.host,
        connection.port.map(i32::from),
        connection.login,
        password,
        connection.schema,
        extra,
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() > 0)
}

/// One connection, its secrets decrypted.
pub async fn get(
    pool: &PgPool,
    cipher: &Cipher,
    conn_id: &str,
) -> Result<Option<Connection>, SecretStoreError> {
    let row = sqlx::query_as!(
        ConnectionRow,
        "SELECT conn_id, conn_type, description, host, port, login, password, schema, extra
           FROM connection WHERE conn_id = $1",
        conn_id
    )
    .fetch_optional(pool)
    .await?;
    row.map(|row| row.open(cipher)).transpose()
}

/// Connections by id, a page of them, their secrets decrypted.
pub async fn page(
    pool: &PgPool,
    cipher: &Cipher,
    limit: i64,
    offset: i64,
) -> Result<Page<Connection>, SecretStoreError> {
    let rows = sqlx::query_as!(
        ConnectionRow,
        "SELECT conn_id, conn_type, description, host, port, login, password, schema, extra
           FROM connection ORDER BY conn_id LIMIT $1 OFFSET $2",
        limit,
        offset
    )
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar!(r#"SELECT count(*) AS "total!" FROM connection"#)
        .fetch_one(pool)
        .await?;
    let rows = rows
        .into_iter()
        .map(|row| row.open(cipher))
        .collect::<Result<_, _>>()?;
    Ok(Page { rows, total })
}

async fn all_rows(pool: &PgPool) -> Result<Vec<ConnectionRow>, sqlx::Error> {
    sqlx::query_as!(
        ConnectionRow,
        "SELECT conn_id, conn_type, description, host, port, login, password, schema, extra
           FROM connection ORDER BY conn_id"
    )
    .fetch_all(pool)
    .await
}

/// Every connection (an export), secrets decrypted; one no key opens is an error.
pub async fn all(pool: &PgPool, cipher: &Cipher) -> Result<Vec<Connection>, SecretStoreError> {
    all_rows(pool)
        .await?
        .into_iter()
        .map(|row| row.open(cipher))
        .collect()
}

/// Every connection by id for a try's templates: one no key opens is kept as the reason, so
/// only the tasks that read it fail.
pub async fn for_templates(
    pool: &PgPool,
    cipher: &Cipher,
) -> Result<BTreeMap<String, Result<Connection, String>>, sqlx::Error> {
    Ok(all_rows(pool)
        .await?
        .into_iter()
        .map(|row| {
            (
                row.conn_id.clone(),
                row.open(cipher).map_err(|e| e.to_string()),
            )
        })
        .collect())
}

/// Every secret the store holds (connection passwords, sensitive extra values, sensitive
/// variables' values), to mask what is shown of tasks' output and DAG files. A row no key opens
/// is skipped with a warning: nobody can be shown its plaintext either.
pub async fn known_secrets(pool: &PgPool, cipher: &Cipher) -> Result<Masker, sqlx::Error> {
    let masker = Masker::new();
    let rows = sqlx::query_as!(
        ConnectionRow,
        "SELECT conn_id, conn_type, description, host, port, login, password, schema, extra
           FROM connection WHERE password IS NOT NULL OR extra IS NOT NULL"
    )
    .fetch_all(pool)
    .await?;
    for row in rows {
        match row.open(cipher) {
            Ok(connection) => masker.add_connection(&connection),
            Err(error) => tracing::warn!(%error, "cannot read a connection's secrets to mask them"),
        }
    }
    for (key, value) in super::variables::sensitive(pool, cipher).await? {
        masker.add_variable(&key, &value);
    }
    Ok(masker)
}

/// Whether the connection existed.
pub async fn delete(pool: &PgPool, conn_id: &str) -> Result<bool, SecretStoreError> {
    let deleted = sqlx::query!("DELETE FROM connection WHERE conn_id = $1", conn_id)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// What a rotation re-encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotated {
    pub connections: u64,
    pub variables: u64,
}

/// Re-encrypts every stored secret with the cipher's first key (Airflow's `rotate-fernet-key`),
/// in one transaction: connections' passwords and extras, and every variable (values stored in
/// plain text before a key was set are encrypted too). A token no key opens stops the rotation,
/// naming it, and nothing changes.
pub async fn rotate(pool: &PgPool, cipher: &Cipher) -> Result<Rotated, SecretStoreError> {
    if !cipher.has_key() {
        return Err(SecretStoreError::cipher("rotation")(CipherError::NoKey));
    }
    let mut tx = pool.begin().await?;
    let mut rotated = Rotated::default();
    let connections =
        sqlx::query!("SELECT conn_id, password, extra FROM connection ORDER BY conn_id FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
    for row in connections {
        let again = |token: Option<String>, field: &str| {
            token
                .map(|token| cipher.rotate(&token))
                .transpose()
                .map_err(SecretStoreError::cipher(format!(
                    "connection `{}` {field}",
                    row.conn_id
                )))
        };
        let password = again(row.password.clone(), "password")?;
        let extra = again(row.extra.clone(), "extra")?;
        sqlx::query!(
            "UPDATE connection SET password = $2, extra = $3 WHERE conn_id = $1",
            row.conn_id,
            password,
            extra
        )
        .execute(&mut *tx)
        .await?;
        rotated.connections += 1;
    }
    let variables =
        sqlx::query!("SELECT key, val, is_encrypted FROM variable ORDER BY key FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
    for row in variables {
        let what = format!("variable `{}`", row.key);
        let value = if row.is_encrypted {
            cipher.rotate(&row.val)
        } else {
            cipher.encrypt(&row.val)
        }
        .map_err(SecretStoreError::cipher(what))?;
        sqlx::query!(
            "UPDATE variable SET val = $2, is_encrypted = true WHERE key = $1",
            row.key,
            value
        )
        .execute(&mut *tx)
        .await?;
        rotated.variables += 1;
    }
    tx.commit().await?;
    Ok(rotated)
}
