//! `variable` rows: Airflow's Variables (templates read them with `var('name')`). A value is
//! stored as a Fernet token when a key is set ([`Cipher`]), in plain text otherwise (as Airflow
//! without a `fernet_key`); `is_encrypted` says which.

use std::collections::BTreeMap;

use sqlx::PgPool;
use updraft_secrets::Cipher;
use updraft_secrets::mask::is_sensitive;

use super::Page;
use super::connections::{LARGEST_VARIABLE, LONGEST_KEY, SecretStoreError};

/// A variable, its value decrypted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Variable {
    pub key: String,
    pub value: String,
    pub description: Option<String>,
}

struct VariableRow {
    key: String,
    val: String,
    description: Option<String>,
    is_encrypted: bool,
}

impl VariableRow {
    fn open(self, cipher: &Cipher) -> Result<Variable, SecretStoreError> {
        let value = if self.is_encrypted {
            cipher
                .decrypt(&self.val)
                .map_err(SecretStoreError::cipher(format!("variable `{}`", self.key)))?
        } else {
            self.val
        };
        Ok(Variable {
            key: self.key,
            value,
            description: self.description,
        })
    }
}

async fn all_rows(pool: &PgPool) -> Result<Vec<VariableRow>, sqlx::Error> {
    sqlx::query_as!(
        VariableRow,
        "SELECT key, val, description, is_encrypted FROM variable ORDER BY key"
    )
    .fetch_all(pool)
    .await
}

/// Every variable's value, by key; one no key opens is an error.
pub async fn all(
    pool: &PgPool,
    cipher: &Cipher,
) -> Result<BTreeMap<String, String>, SecretStoreError> {
    all_rows(pool)
        .await?
        .into_iter()
        .map(|row| row.open(cipher).map(|v| (v.key, v.value)))
        .collect()
}

/// Every variable's value by key for a try's templates: one no key opens is kept as the
/// reason, so only the tasks that read it fail.
pub async fn for_templates(
    pool: &PgPool,
    cipher: &Cipher,
) -> Result<BTreeMap<String, Result<String, String>>, sqlx::Error> {
    Ok(all_rows(pool)
        .await?
        .into_iter()
        .map(|row| {
            let key = row.key.clone();
            (
                key,
                row.open(cipher).map(|v| v.value).map_err(|e| e.to_string()),
            )
        })
        .collect())
}

/// Variables by key, a page of them.
pub async fn page(
    pool: &PgPool,
    cipher: &Cipher,
    limit: i64,
    offset: i64,
) -> Result<Page<Variable>, SecretStoreError> {
    let rows = sqlx::query_as!(
        VariableRow,
        "SELECT key, val, description, is_encrypted FROM variable ORDER BY key LIMIT $1 OFFSET $2",
        limit,
        offset
    )
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar!(r#"SELECT count(*) AS "total!" FROM variable"#)
        .fetch_one(pool)
        .await?;
    let rows = rows
        .into_iter()
        .map(|row| row.open(cipher))
        .collect::<Result<_, _>>()?;
    Ok(Page { rows, total })
}

pub async fn get(
    pool: &PgPool,
    cipher: &Cipher,
    key: &str,
) -> Result<Option<Variable>, SecretStoreError> {
    let row = sqlx::query_as!(
        VariableRow,
        "SELECT key, val, description, is_encrypted FROM variable WHERE key = $1",
        key
    )
    .fetch_optional(pool)
    .await?;
    row.map(|row| row.open(cipher)).transpose()
}

/// Creates or replaces a variable (Airflow's `Variable.set`), encrypted when there is a key.
pub async fn set(
    pool: &PgPool,
    cipher: &Cipher,
    variable: &Variable,
) -> Result<(), SecretStoreError> {
    let key = &variable.key;
    if key.trim().is_empty() || key.chars().count() > LONGEST_KEY {
        return Err(SecretStoreError::InvalidKey(key.clone()));
    }
    if variable.value.len() > LARGEST_VARIABLE {
        return Err(SecretStoreError::TooLarge {
            what: format!("variable `{key}`"),
            size: variable.value.len(),
            limit: LARGEST_VARIABLE,
        });
    }
    let (value, is_encrypted) = if cipher.has_key() {
        let token = cipher
            .encrypt(&variable.value)
            .map_err(SecretStoreError::cipher(format!(
                "variable `{}`",
                variable.key
            )))?;
        (token, true)
    } else {
        (variable.value.clone(), false)
    };
    sqlx::query!(
        "INSERT INTO variable (key, val, description, is_encrypted) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO UPDATE SET val = EXCLUDED.val, description = EXCLUDED.description,
                                         is_encrypted = EXCLUDED.is_encrypted",
        variable.key,
        value,
        variable.description,
        is_encrypted,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The variables whose keys are sensitive, by key and value; one no key opens is skipped with
/// a warning.
pub(super) async fn sensitive(
    pool: &PgPool,
    cipher: &Cipher,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    Ok(all_rows(pool)
        .await?
        .into_iter()
        .filter(|row| is_sensitive(&row.key))
        .filter_map(|row| match row.open(cipher) {
            Ok(variable) => Some((variable.key, variable.value)),
            Err(error) => {
                tracing::warn!(%error, "cannot read a variable to mask it");
                None
            }
        })
        .collect())
}

/// Whether the variable existed.
pub async fn delete(pool: &PgPool, key: &str) -> Result<bool, SecretStoreError> {
    let deleted = sqlx::query!("DELETE FROM variable WHERE key = $1", key)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}
