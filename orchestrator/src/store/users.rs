//! `users` rows: the web's accounts. Only argon2 hashes are stored; hashing and checking
//! passwords is the web crate's (`updraft_web::users`), the statements are here.

use std::fmt;
use std::str::FromStr;

use sqlx::PgPool;

/// What a user may do. `Admin` ⊇ `Op` ⊇ `Viewer` (stored as TEXT with a CHECK constraint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read only.
    Viewer,
    /// Pause/unpause, trigger, clear, mark runs.
    Op,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Op => "op",
            Role::Viewer => "viewer",
        }
    }

    /// Whether a user with this role may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`: expected admin, op or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(text: &str) -> Result<Role, UnknownRole> {
        match text {
            "admin" => Ok(Role::Admin),
            "op" => Ok(Role::Op),
            "viewer" => Ok(Role::Viewer),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

/// An active user's id, role and stored password hash, to check a password against.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: i64,
    pub password_hash: String,
    pub role: Role,
}

/// Inserts a user; `false` when the name is taken.
pub async fn insert(
    pool: &PgPool,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO NOTHING",
        username,
        password_hash,
        role as _,
    )
    .execute(pool)
    .await?;
    Ok(inserted.rows_affected() > 0)
}

/// Whether any user exists (active or not).
pub async fn any(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM users) AS "any!""#)
        .fetch_one(pool)
        .await
}

/// How many users exist (active or not).
pub async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM users"#)
        .fetch_one(pool)
        .await
}

/// The credentials of the active user with this name.
pub async fn active_credentials(
    pool: &PgPool,
    username: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as!(
        Credentials,
        r#"SELECT id, password_hash, role AS "role: Role" FROM users
            WHERE username = $1 AND active"#,
        username
    )
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_read_back() {
        assert!(Role::Admin.allows(Role::Op));
        assert!(Role::Op.allows(Role::Op));
        assert!(!Role::Viewer.allows(Role::Op));
        assert!(!Role::Op.allows(Role::Admin));
        for role in [Role::Admin, Role::Op, Role::Viewer] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
