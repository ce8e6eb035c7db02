//! Extractors whose rejections are problem JSON (axum's own answer in plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Airflow's `maximum_page_limit`.
pub const MAX_PAGE_LIMIT: i64 = 100;

/// A JSON body: wrong content type → 415, too large → 413, malformed/unknown fields/wrong types → 400.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;
    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(AppError::UnsupportedMediaType(format!(
                "expected Content-Type application/json, got `{essence}`"
            )));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge(BODY_LIMIT)
                } else {
                    AppError::BadRequest(format!("cannot read the request body: {rejection}"))
                }
            })?;
        // PostgreSQL cannot store NUL in TEXT or JSONB: refuse it here instead of failing later.
        if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
            return Err(AppError::BadRequest(
                "NUL characters (\\u0000) are not allowed".into(),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|error| AppError::BadRequest(format!("invalid JSON body: {error}")))
    }
}

/// Path parameters; a bad one is a 400 problem.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        if parts.uri.path().contains("%00") {
            return Err(AppError::BadRequest(
                "NUL characters are not allowed in paths".into(),
            ));
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| {
                AppError::BadRequest(format!("invalid path parameter: {rejection}"))
            })
    }
}

/// Query parameters as pairs, so repeated keys (`tags=a&tags=b`, as Airflow takes them) work.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let query = parts.uri.query().unwrap_or("");
        if query.contains("%00") {
            return Err(AppError::BadRequest(
                "NUL characters are not allowed in queries".into(),
            ));
        }
        Ok(Params(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated key; a comma-separated value counts as several.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn int(&self, name: &str, default: i64, min: i64) -> Result<i64, AppError> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(text) => match text.parse::<i64>() {
                Ok(value) if value >= min => Ok(value),
                _ => Err(AppError::BadRequest(format!(
                    "query parameter `{name}` must be an integer >= {min}, got `{text}`"
                ))),
            },
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, AppError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(text) => match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(AppError::BadRequest(format!(
                    "query parameter `{name}` must be true or false, got `{text}`"
                ))),
            },
        }
    }

    pub fn date(&self, name: &str) -> Result<Option<DateTime<Utc>>, AppError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|date| Some(date.with_timezone(&Utc)))
                .map_err(|error| {
                    AppError::BadRequest(format!(
                        "query parameter `{name}` must be an RFC 3339 date-time, got `{text}`: {error}"
                    ))
                }),
        }
    }

    /// `limit` (default 100, capped at `MAX_PAGE_LIMIT`) and `offset`.
    pub fn page(&self) -> Result<(i64, i64), AppError> {
        let limit = self.int("limit", MAX_PAGE_LIMIT, 0)?.min(MAX_PAGE_LIMIT);
        let offset = self.int("offset", 0, 0)?;
        Ok((limit, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_take_repeats_and_check_types() {
        let params = Params(vec![
            ("tags".into(), "a".into()),
            ("tags".into(), "b,c".into()),
            ("limit".into(), "500".into()),
            ("offset".into(), "x".into()),
        ]);
        assert_eq!(params.all("tags"), vec!["a", "b", "c"]);
        assert!(params.page().is_err());
        let params = Params(vec![("limit".into(), "500".into())]);
        assert_eq!(params.page().unwrap(), (100, 0));
    }
}
