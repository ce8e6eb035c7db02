//! The registry's REST API: a schema by id, the latest schema of a subject, registering one.

use std::future::Future;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid schema registry URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("schema registry {url}: schema id {id} is not registered")]
    UnknownSchema { url: String, id: u32 },
    #[error("schema registry {url}: subject `{subject}` has no schema")]
    UnknownSubject { url: String, subject: String },
    #[error(
        "schema registry {url} refused the schema for subject `{subject}` (HTTP {status}): {message}"
    )]
    Refused {
        url: String,
        subject: String,
        status: u16,
        message: String,
    },
    /// Unreachable, timed out, or a server error: worth retrying.
    #[error("schema registry {url} is unavailable: {message}")]
    Unavailable { url: String, message: String },
    #[error("schema registry {url} answered HTTP {status}: {message}")]
    Failed {
        url: String,
        status: u16,
        message: String,
    },
}

impl RegistryError {
    /// Whether the same request may succeed later (an outage, not an answer).
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }
}

/// Exponential backoff between tries of a registry call.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// Give up after this many tries; `None`: never (the caller stops by dropping the future).
    pub tries: Option<u32>,
}

impl Backoff {
    /// Runs `call` until it succeeds, fails with an error `retry` refuses, or the tries run out;
    /// each failure to be retried is logged with what was being done.
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        retry: impl Fn(&RegistryError) -> bool,
        mut call: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut delay = self.first;
        let mut tried = 0u32;
        loop {
            tried += 1;
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) if retry(&error) && self.tries.is_none_or(|tries| tried < tries) => {
                    tracing::warn!(%error, tried, retry_in_ms = delay.as_millis() as u64, "{what}: retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max);
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// A schema as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    pub id: u32,
    /// The schema's text (for Avro, its JSON).
    pub schema: String,
    /// `AVRO` (the API's default when absent), `JSON` or `PROTOBUF`.
    pub schema_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaAnswer {
    id: Option<u32>,
    schema: String,
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    message: Option<String>,
}

/// A schema registry at one base URL; credentials in the URL (`http://user:pass@host:8081`)
/// are sent as HTTP basic auth.
#[derive(Debug, Clone)]
pub struct Registry {
    base: Url,
    /// The base without credentials, for messages.
    shown: String,
    login: Option<(String, String)>,
    http: reqwest::Client,
}

impl Registry {
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let bad = |message: String| RegistryError::BadUrl {
            url: url.to_string(),
            message,
        };
        let mut base = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("not an http(s) URL".into()));
        }
        let login = (!base.username().is_empty()).then(|| {
            (
                base.username().to_string(),
                base.password().unwrap_or_default().to_string(),
            )
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let shown = base.as_str().trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            base,
            shown,
            login,
            http,
        })
    }

    /// Sends `user` and `password` as HTTP basic auth (a connection's login).
    pub fn with_login(mut self, user: String, password: String) -> Self {
        self.login = Some((user, password));
        self
    }

    /// The base URL, without credentials.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The schema registered under `id` (ids never change meaning, so callers may cache it).
    pub async fn schema(&self, id: u32) -> Result<RegisteredSchema, RegistryError> {
        let url = self.endpoint(&["schemas", "ids", &id.to_string()]);
        match self.send(self.http.get(url)).await? {
            (StatusCode::NOT_FOUND, _) => Err(RegistryError::UnknownSchema {
                url: self.shown.clone(),
                id,
            }),
            (status, body) => {
                let answer: SchemaAnswer = self.parse(status, &body)?;
                Ok(RegisteredSchema {
                    id,
                    schema: answer.schema,
                    schema_type: answer.schema_type.unwrap_or_else(|| "AVRO".into()),
                })
            }
        }
    }

    /// The latest schema of `subject`.
    pub async fn latest(&self, subject: &str) -> Result<RegisteredSchema, RegistryError> {
        let url = self.endpoint(&["subjects", subject, "versions", "latest"]);
        match self.send(self.http.get(url)).await? {
            (StatusCode::NOT_FOUND, _) => Err(RegistryError::UnknownSubject {
                url: self.shown.clone(),
                subject: subject.to_string(),
            }),
            (status, body) => {
                let answer: SchemaAnswer = self.parse(status, &body)?;
                let id = answer.id.ok_or_else(|| RegistryError::Failed {
                    url: self.shown.clone(),
                    status: status.as_u16(),
                    message: "the latest version has no `id`".into(),
                })?;
                Ok(RegisteredSchema {
                    id,
                    schema: answer.schema,
                    schema_type: answer.schema_type.unwrap_or_else(|| "AVRO".into()),
                })
            }
        }
    }

    /// Registers an Avro `schema` under `subject` (or finds it there) and returns its id. The
    /// registry refuses a schema that breaks the subject's compatibility rule.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = self.endpoint(&["subjects", subject, "versions"]);
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(json!({ "schema": schema }).to_string());
        match self.send(request).await? {
            (status @ (StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY), body) => {
                Err(RegistryError::Refused {
                    url: self.shown.clone(),
                    subject: subject.to_string(),
                    status: status.as_u16(),
                    message: error_message(&body),
                })
            }
            (status, body) => Ok(self.parse::<IdAnswer>(status, &body)?.id),
        }
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends `request`; an outage or a server error is `Unavailable`, any other answer is
    /// returned with its status for the caller to read.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, String), RegistryError> {
        let request = request.header(reqwest::header::ACCEPT, CONTENT_TYPE);
        let request = match &self.login {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        };
        let unavailable = |message: String| RegistryError::Unavailable {
            url: self.shown.clone(),
            message,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            return Err(unavailable(format!(
                "HTTP {}: {}",
                status.as_u16(),
                error_message(&body)
            )));
        }
        Ok((status, body))
    }

    fn parse<T: for<'de> Deserialize<'de>>(
        &self,
        status: StatusCode,
        body: &str,
    ) -> Result<T, RegistryError> {
        let failed = |message: String| RegistryError::Failed {
            url: self.shown.clone(),
            status: status.as_u16(),
            message,
        };
        if !status.is_success() {
            return Err(failed(error_message(body)));
        }
        serde_json::from_str(body).map_err(|e| failed(format!("unexpected answer ({e}): {body}")))
    }
}

/// The registry's `message`, else the body as it came.
fn error_message(body: &str) -> String {
    serde_json::from_str::<ErrorAnswer>(body)
        .ok()
        .and_then(|answer| answer.message)
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// reqwest's error with its causes (its own text says only "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
