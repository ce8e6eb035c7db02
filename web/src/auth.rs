//! Authentication: HTTP Basic for the API, a session cookie for the UI, CSRF tokens for forms,
//! and the middleware that lets nothing but public routes through without a user.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use updraft_orchestrator::store::event_log::Source;
use updraft_orchestrator::store::sessions::{self, NewSession};

use crate::AppState;
use crate::error::AppError;
use crate::users::{self, Role, User};

pub const SESSION_COOKIE: &str = "updraft_session";
pub const SESSION_HOURS: i64 = 12;
/// How long a verified Basic credential is remembered, so API clients do not pay argon2 per call.
const BASIC_CACHE_TTL: Duration = Duration::from_secs(30);

/// The user behind a request, the CSRF token of their session when they came by cookie, and
/// where the request came from (for the audit log).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub csrf: Option<String>,
    pub origin: Origin,
}

/// Where a request came from: the UI or the API, and the client's address (the first
/// `X-Forwarded-For` entry behind a proxy, else the peer's).
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: Source,
    pub remote_addr: Option<String>,
}

impl Origin {
    fn of(request: &Request, api: bool) -> Origin {
        let forwarded = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(|first| first.trim().to_string())
            .filter(|first| !first.is_empty());
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip().to_string());
        Origin {
            source: if api { Source::Api } else { Source::Ui },
            remote_addr: forwarded.or(peer),
        }
    }
}

impl CurrentUser {
    /// 403 unless the user's role allows `needed`.
    pub fn require(&self, needed: Role) -> Result<(), AppError> {
        if self.user.role.allows(needed) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "user `{}` has role {}; this needs role {} or higher",
                self.user.username, self.user.role, needed
            )))
        }
    }

    /// Checks a form's CSRF token against the session's (constant time).
    pub fn check_csrf(&self, submitted: &str) -> Result<(), AppError> {
        let Some(expected) = &self.csrf else {
            return Err(AppError::Forbidden("forms need a browser session".into()));
        };
        let same = expected.len() == submitted.len()
            && expected
                .bytes()
                .zip(submitted.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "invalid or missing CSRF token; reload the page".into(),
            ))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(|| AppError::Unauthenticated("authentication required".into()))
    }
}

/// Remembered Basic credentials: SHA-256 of the header value → user and when it was checked.
#[derive(Default, Clone)]
pub struct BasicCache(Arc<Mutex<HashMap<String, (User, Instant)>>>);

impl BasicCache {
    fn get(&self, key: &str) -> Option<User> {
        let map = self.0.lock().ok()?;
        map.get(key)
            .filter(|(_, at)| at.elapsed() < BASIC_CACHE_TTL)
            .map(|(user, _)| user.clone())
    }

    fn put(&self, key: String, user: User) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() > 10_000 {
                map.retain(|_, (_, at)| at.elapsed() < BASIC_CACHE_TTL);
            }
            map.insert(key, (user, Instant::now()));
        }
    }
}

/// Failed logins (form or Basic) per username: after [`FREE_FAILURES`] in a row the name is
/// locked for 30 s, doubling with each further failure up to 15 min; a success clears it.
/// A locked name is refused without checking the password (no argon2 work for a guesser).
/// Kept per process: behind several web servers each throttles on its own.
#[derive(Default, Clone)]
pub struct LoginThrottle(Arc<Mutex<HashMap<String, Failures>>>);

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

const FREE_FAILURES: u32 = 5;
const FIRST_LOCK: Duration = Duration::from_secs(30);
const LONGEST_LOCK: Duration = Duration::from_secs(15 * 60);

impl LoginThrottle {
    /// How long `username` stays locked, if it is.
    pub fn locked_for(&self, username: &str) -> Option<Duration> {
        let map = self.0.lock().ok()?;
        let until = map.get(username)?.locked_until?;
        until.checked_duration_since(Instant::now())
    }

    pub fn failed(&self, username: &str) {
        let Ok(mut map) = self.0.lock() else {
            return;
        };
        if map.len() > 10_000 {
            let now = Instant::now();
            map.retain(|_, failures| failures.locked_until.is_some_and(|until| until > now));
        }
        let failures = map.entry(username.to_string()).or_insert(Failures {
            count: 0,
            locked_until: None,
        });
        failures.count += 1;
        if failures.count >= FREE_FAILURES {
            let doublings = (failures.count - FREE_FAILURES).min(10);
            let lock = FIRST_LOCK.saturating_mul(1 << doublings).min(LONGEST_LOCK);
            failures.locked_until = Some(Instant::now() + lock);
        }
    }

    pub fn succeeded(&self, username: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(username);
        }
    }
}

pub fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Routes answered without a user: login, health and static assets.
pub fn is_public(method: &Method, path: &str) -> bool {
    match path {
        "/login" => method == Method::GET || method == Method::POST,
        "/health" | "/api/v1/health" => method == Method::GET,
        _ => path.starts_with("/static/") && method == Method::GET,
    }
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics"
}

/// Middleware over the whole router: default deny.
pub async fn require_user(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    if is_public(&method, &path) {
        return next.run(request).await;
    }
    let api = is_api(&path);
    let origin = Origin::of(&request, api);
    let resolved = resolve_user(&state, request.headers(), api, &method, origin).await;
    match resolved {
        Ok(Some(user)) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        Ok(None) if api => {
            AppError::Unauthenticated("authentication required (HTTP Basic)".into()).into_response()
        }
        Ok(None) => {
            let target = request
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            let encoded: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
            Redirect::to(&format!("/login?next={encoded}")).into_response()
        }
        Err(error) => error.into_response(),
    }
}

async fn resolve_user(
    state: &AppState,
    headers: &HeaderMap,
    api: bool,
    method: &Method,
    origin: Origin,
) -> Result<Option<CurrentUser>, AppError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else {
            return Ok(None);
        };
        return Ok(basic_user(state, value).await?.map(|user| CurrentUser {
            user,
            csrf: None,
            origin,
        }));
    }
    // The API takes the session cookie for reads only: writes by cookie would need CSRF tokens.
    if api && !matches!(*method, Method::GET | Method::HEAD) {
        return Ok(None);
    }
    match session_token(headers) {
        Some(token) => session_user(&state.pool, &token, origin).await,
        None => Ok(None),
    }
}

async fn basic_user(state: &AppState, header_value: &str) -> Result<Option<User>, AppError> {
    let Some(encoded) = header_value
        .strip_prefix("Basic ")
        .or_else(|| header_value.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let key = sha256_hex(encoded.trim());
    if let Some(user) = state.basic_cache.get(&key) {
        return Ok(Some(user));
    }
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return Ok(None);
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return Ok(None);
    };
    let Some((username, password)) = text.split_once(':') else {
        return Ok(None);
    };
    if let Some(wait) = state.login_throttle.locked_for(username) {
        return Err(too_many_failures(username, wait));
    }
    let user = users::authenticate(&state.pool, username, password)
        .await
        .map_err(|error| match error {
            users::UserError::Database(db) => AppError::Database(db),
            other => AppError::Internal(other.to_string()),
        })?;
    match &user {
        Some(user) => {
            state.login_throttle.succeeded(username);
            state.basic_cache.put(key, user.clone());
        }
        None => state.login_throttle.failed(username),
    }
    Ok(user)
}

/// 429 for a username locked by [`LoginThrottle`].
pub fn too_many_failures(username: &str, wait: Duration) -> AppError {
    AppError::TooManyRequests(format!(
        "too many failed logins for `{username}`; try again in {} s",
        wait.as_secs().max(1)
    ))
}

pub fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The login form's CSRF token travels twice: in this cookie and in a hidden field. Another
/// site can make a browser post the form but can neither read nor set the cookie.
pub const LOGIN_CSRF_COOKIE: &str = "updraft_login_csrf";

pub fn login_csrf_cookie(token: &str) -> String {
    format!("{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600")
}

/// The login CSRF token of this browser, when it has a well-formed one.
pub fn login_csrf_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, LOGIN_CSRF_COOKIE).filter(|token| {
        token.len() == 43
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_string())
}

async fn session_user(
    pool: &PgPool,
    token: &str,
    origin: Origin,
) -> Result<Option<CurrentUser>, AppError> {
    let session = sessions::user_of(pool, &sha256_hex(token)).await?;
    Ok(session.map(|session| CurrentUser {
        user: User {
            id: session.user_id,
            username: session.username,
            role: session.role,
        },
        csrf: Some(session.csrf_token),
        origin,
    }))
}

/// Whether the browser reached us over HTTPS (through a TLS-terminating proxy that says so):
/// the session cookie is then `Secure`, never sent over plain HTTP.
pub fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// Starts a session: returns the `Set-Cookie` value. Only the token's SHA-256 is stored.
pub async fn start_session(pool: &PgPool, user: &User, secure: bool) -> Result<String, AppError> {
    let token = random_token();
    let session = NewSession {
        token_hash: &sha256_hex(&token),
        user_id: user.id,
        csrf_token: &random_token(),
        hours: SESSION_HOURS as i32,
    };
    sessions::start(pool, &session).await?;
    Ok(format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        SESSION_HOURS * 3600,
        if secure { "; Secure" } else { "" }
    ))
}

pub async fn end_session(pool: &PgPool, headers: &HeaderMap) -> Result<String, AppError> {
    if let Some(token) = session_token(headers) {
        sessions::end(pool, &sha256_hex(&token)).await?;
    }
    Ok(format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_login_health_and_static_are_public() {
        assert!(is_public(&Method::GET, "/login"));
        assert!(is_public(&Method::GET, "/api/v1/health"));
        assert!(is_public(&Method::GET, "/static/app.css"));
        assert!(!is_public(&Method::POST, "/static/app.css"));
        assert!(!is_public(&Method::GET, "/api/v1/dags"));
        assert!(!is_public(&Method::GET, "/"));
        assert!(!is_public(&Method::GET, "/metrics"));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; updraft_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc"));
    }
}
