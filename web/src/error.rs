//! One error type for every handler; API errors are Airflow's problem JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

const PROBLEM_BASE: &str = "https://airflow.apache.org/docs/apache-airflow/2.10.5/stable-rest-api-ref.html#section/Errors/";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// A service the page reads (a stream worker) did not answer.
    #[error("{0}")]
    Unavailable(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
    /// A 500 whose message is safe to show (a stored secret no key opens, say).
    #[error("{0}")]
    ServerError(String),
}

/// Airflow's problem document (RFC 7807).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: Option<String>,
}

impl AppError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Database(_) | AppError::Internal(_) | AppError::ServerError(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The name of the error in Airflow's API reference (the anchor of `type`).
    fn airflow_name(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "BadRequest",
            AppError::Unauthenticated(_) => "Unauthenticated",
            AppError::Forbidden(_) => "PermissionDenied",
            AppError::NotFound(_) => "NotFound",
            AppError::Conflict(_) => "AlreadyExists",
            AppError::PayloadTooLarge(_) => "RequestEntityTooLarge",
            AppError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            AppError::TooManyRequests(_) => "TooManyRequests",
            AppError::Unavailable(_) => "ServiceUnavailable",
            AppError::Database(_) | AppError::Internal(_) | AppError::ServerError(_) => "Unknown",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let detail = match self {
            // Database details stay in the log: they can leak schema or data.
            AppError::Database(error) => {
                tracing::error!(%error, "database error while serving a request");
                "Internal error; see the server log".to_string()
            }
            AppError::Internal(message) => {
                tracing::error!(%message, "internal error while serving a request");
                "Internal error; see the server log".to_string()
            }
            AppError::ServerError(message) => {
                tracing::error!(%message, "server error while serving a request");
                message.clone()
            }
            other => other.to_string(),
        };
        Problem {
            kind: format!("{PROBLEM_BASE}{}", self.airflow_name()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: Some(detail),
        }
    }

    pub fn not_found(what: impl Into<String>) -> AppError {
        AppError::NotFound(what.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status_code(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, AppError::Unauthenticated(_)) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Updraft\""),
            );
        }
        response
    }
}

/// A UI page error: the same statuses, shown as a small HTML page.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(error: E) -> Self {
        PageError(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let problem = self.0.problem();
        let detail = crate::ui::escape_html(problem.detail.as_deref().unwrap_or(""));
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{status} {title}</title>\
             <link rel=\"stylesheet\" href=\"/static/app.css\"></head><body><main class=\"page\">\
             <h1>{status} {title}</h1><p class=\"error\">{detail}</p><p><a href=\"/dags\">Back to DAGs</a></p>\
             </main></body></html>",
            status = problem.status,
            title = problem.title,
        );
        let mut response = (self.0.status_code(), axum::response::Html(body)).into_response();
        if matches!(self.0, AppError::Unauthenticated(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Updraft\""),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, AppError>;
