//! Users: argon2 password hashes in PostgreSQL, and three roles.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sqlx::PgPool;
use updraft_orchestrator::store::users as store;

/// What a user may do (the `users.role` column). `Admin` ⊇ `Op` ⊇ `Viewer`.
pub use updraft_orchestrator::store::users::Role;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid username `{0}`: use 1-64 letters, digits, '.', '_', '-' or '@'")]
    InvalidUsername(String),
    #[error("the password must be at least 8 characters long")]
    WeakPassword,
    #[error("user `{0}` already exists")]
    Duplicate(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

fn check_username(username: &str) -> Result<(), UserError> {
    let valid = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(())
    } else {
        Err(UserError::InvalidUsername(username.to_string()))
    }
}

/// Hashes on a blocking thread: argon2 takes tens of milliseconds on purpose.
pub async fn hash_password(password: &str) -> Result<String, UserError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let salt_bytes: [u8; 16] = rand::random();
        let salt =
            SaltString::encode_b64(&salt_bytes).map_err(|e| UserError::Hash(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| UserError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| UserError::Hash(e.to_string()))?
}

async fn verify_password(password: &str, stored: &str) -> bool {
    let password = password.to_string();
    let stored = stored.to_string();
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Creates a user; fails with `Duplicate` when the name is taken.
pub async fn create_user(
    pool: &PgPool,
    username: &str,
    role: Role,
    password: &str,
) -> Result<(), UserError> {
    check_username(username)?;
    if password.chars().count() < 8 {
        return Err(UserError::WeakPassword);
    }
    let hash = hash_password(password).await?;
    if !store::insert(pool, username, &hash, role).await? {
        return Err(UserError::Duplicate(username.to_string()));
    }
    Ok(())
}

/// On first start (no users at all) creates `admin` with `UPDRAFT_ADMIN_PASSWORD`, or with a
/// generated password that is returned so the caller prints it once.
pub async fn ensure_admin(pool: &PgPool) -> Result<Option<String>, UserError> {
    if store::any(pool).await? {
        return Ok(None);
    }
    let from_env = std::env::var("UPDRAFT_ADMIN_PASSWORD")
        .ok()
        .filter(|value| !value.is_empty());
    let (password, generated) = match from_env {
        Some(password) => (password, false),
        None => (generate_password(), true),
    };
    match create_user(pool, "admin", Role::Admin, &password).await {
        Ok(()) => Ok(generated.then_some(password)),
        // Another process created it between our check and insert.
        Err(UserError::Duplicate(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..20)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The active user with this name and password, if any.
pub async fn authenticate(
    pool: &PgPool,
    username: &str,
    password: &str,
) -> Result<Option<User>, UserError> {
    if check_username(username).is_err() {
        return Ok(None);
    }
    let Some(stored) = store::active_credentials(pool, username).await? else {
        // Spend the same time as a real check so names cannot be probed by timing.
        let _ = verify_password(password, DUMMY_HASH).await;
        return Ok(None);
    };
    if !verify_password(password, &stored.password_hash).await {
        return Ok(None);
    }
    Ok(Some(User {
        id: stored.id,
        username: username.to_string(),
        role: stored.role,
    }))
}

const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Jm3Ae3oQbBsbwqoDs7TJB3PFDPRbIm2ZMP1r0p3ydrE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked() {
        assert!(check_username("alice.b-1@x").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("a b").is_err());
        assert!(check_username("x'; DROP TABLE users;--").is_err());
    }

    #[tokio::test]
    async fn hashes_verify() {
        let hash = hash_password("correct horse").await.unwrap();
        assert!(verify_password("correct horse", &hash).await);
        assert!(!verify_password("wrong horse", &hash).await);
        assert!(generate_password().len() == 20);
    }
}
