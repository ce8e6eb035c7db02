//! The web UI (server-rendered, askama) and the Airflow 2 compatible REST API.
//!
//! `app(state)` builds the whole router (tests drive it with `oneshot`); `serve` binds it.

pub mod api;
pub mod audit;
pub mod auth;
pub mod error;
pub mod extract;
pub mod live;
pub mod metrics;
pub mod stream_workers;
pub mod ui;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use updraft_orchestrator::store::connections;
use updraft_secrets::{Cipher, Masker};

pub use error::AppError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub dags_folder: PathBuf,
    pub basic_cache: auth::BasicCache,
    pub login_throttle: auth::LoginThrottle,
    /// `UPDRAFT_SECRET_KEY`, read once: encrypts connections' secrets and variables.
    pub cipher: Cipher,
    /// Server-sent state changes for the pages.
    pub live: live::Live,
    /// The stream workers' API, for the Streams and Topics pages.
    pub stream_workers: stream_workers::StreamWorkers,
    openapi: Arc<String>,
}

impl AppState {
    /// The state with the cipher of `UPDRAFT_SECRET_KEY`; an invalid key is logged and leaves
    /// no key (the `updraft` binary refuses to start with one before it gets here).
    pub fn new(pool: PgPool, dags_folder: PathBuf) -> AppState {
        let cipher = Cipher::from_env().unwrap_or_else(|error| {
            tracing::error!(%error, "ignoring an invalid secret key: secrets cannot be read or written");
            Cipher::none()
        });
        let (_, openapi) = api::router();
        let openapi = Arc::new(openapi.to_pretty_json().unwrap_or_else(|_| "{}".into()));
        AppState {
            live: live::Live::new(pool.clone()),
            pool,
            dags_folder,
            basic_cache: auth::BasicCache::default(),
            login_throttle: auth::LoginThrottle::default(),
            cipher,
            openapi,
            stream_workers: stream_workers::StreamWorkers::from_env(),
        }
    }

    /// The same state reading other stream workers (tests, embedding).
    pub fn with_stream_workers(mut self, urls: Vec<String>) -> AppState {
        self.stream_workers = stream_workers::StreamWorkers::new(urls);
        self
    }

    /// The same state with another cipher (tests, embedding).
    pub fn with_cipher(mut self, cipher: Cipher) -> AppState {
        self.cipher = cipher;
        self
    }

    /// What to mask in task output (XCom) and import errors before showing them: every secret
    /// stored and every one in this process's environment.
    pub async fn secrets_masker(&self) -> Result<Masker, error::AppError> {
        let masker = connections::known_secrets(&self.pool, &self.cipher).await?;
        masker.add_environment();
        Ok(masker)
    }
}

/// The OpenAPI document of `/api/v1`, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::router().1
}

async fn openapi_json(
    State(state): State<AppState>,
    _user: auth::CurrentUser,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    Json(api::misc::health_of(&state).await)
}

/// On every response: no framing by other sites (clickjacking), no content-type sniffing, no
/// plugins, forms and `<base>` only to this origin, and no full URLs in referrers.
async fn security_headers(request: axum::extract::Request, next: middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        (
            "content-security-policy",
            "frame-ancestors 'none'; base-uri 'self'; object-src 'none'; form-action 'self'",
        ),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

async fn api_not_found() -> AppError {
    AppError::NotFound("no such API endpoint".into())
}

pub fn app(state: AppState) -> Router {
    let (api_router, _) = api::router();
    let api_router = api_router
        .route("/openapi.json", get(openapi_json))
        .fallback(api_not_found);
    Router::new()
        .nest("/api/v1", api_router)
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .merge(ui::router())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_user,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("web server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves the UI and API on `bind` until `cancel` fires.
pub async fn serve(
    pool: PgPool,
    bind: SocketAddr,
    dags_folder: PathBuf,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|error| ServeError::Bind(bind, error))?;
    let local = listener.local_addr().unwrap_or(bind);
    tracing::info!(address = %local, "web server listening");
    let app = app(AppState::new(pool, dags_folder));
    // The peer's address reaches handlers: the audit log says where a change came from.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(cancel.cancelled_owned())
    .await
    .map_err(ServeError::Serve)
}
