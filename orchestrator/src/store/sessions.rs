//! `web_session` rows: the UI's sign-ins. The cookie carries a random token; only its hash is
//! stored (the web crate hashes it), with the session's CSRF token.

use sqlx::PgPool;

use super::users::Role;

/// The user behind a live session, with the session's CSRF token.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
}

/// A session to start.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub user_id: i64,
    pub csrf_token: &'a str,
    pub hours: i32,
}

/// Starts a session valid for `hours` from now, forgetting expired ones on the way.
pub async fn start(pool: &PgPool, session: &NewSession<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM web_session WHERE expires_at < now()")
        .execute(pool)
        .await?;
    sqlx::query!(
        "INSERT INTO web_session (token_hash, user_id, csrf_token, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4::int))",
        session.token_hash,
        session.user_id,
        session.csrf_token,
        session.hours,
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// The active user of the unexpired session with this token hash.
pub async fn user_of(pool: &PgPool, token_hash: &str) -> Result<Option<SessionUser>, sqlx::Error> {
    sqlx::query_as!(
        SessionUser,
        r#"SELECT u.id AS user_id, u.username, u.role AS "role: Role", s.csrf_token
             FROM web_session s JOIN users u ON u.id = s.user_id
            WHERE s.token_hash = $1 AND s.expires_at > now() AND u.active"#,
        token_hash
    )
    .fetch_optional(pool)
    .await
}

/// How many sessions are stored (expired ones included until the next sign-in forgets them).
pub async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM web_session"#)
        .fetch_one(pool)
        .await
}

/// Ends the session with this token hash (nothing when there is none).
pub async fn end(pool: &PgPool, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM web_session WHERE token_hash = $1", token_hash)
        .execute(pool)
        .await
        .map(|_| ())
}
