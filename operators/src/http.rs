//! `http`: one HTTP request; the output is the response's status, headers and body (parsed
//! when it is JSON), so downstream templates can read `xcom('fetch').body.results`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::error::Error as _;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::fields::{DurationValue, Templated, Text, excerpt};
use crate::{Operator, OperatorError, TaskContext};
use updraft_secrets::Connection;

/// How much of a response body an error message quotes.
const BODY_EXCERPT_CHARS: usize = 500;

#[derive(Debug, Default)]
pub struct HttpOperator {
    // One client per process so connections are pooled across tries.
    client: OnceLock<Client>,
}

/// `http`'s fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS (any case). Default GET.
    #[serde(default = "default_method")]
    #[schemars(default = "default_method_name")]
    pub method: Templated<HttpMethod>,
    /// An absolute http(s) URL; or, with `conn_id`, a path joined to the connection's base URL
    /// (Airflow's `endpoint`). Default: the base URL itself.
    #[serde(default)]
    pub url: String,
    /// A connection giving the base URL (its host, port and scheme), basic auth (login,
    /// password) or a bearer token (`extra.token`), and default headers (`extra.headers`).
    #[serde(default)]
    pub conn_id: Option<String>,
    /// Query parameters appended to the URL.
    #[serde(default)]
    pub query: BTreeMap<String, Text>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// A JSON request body (sets `Content-Type: application/json`). Not with `body`.
    #[serde(default)]
    pub json: Option<Value>,
    /// A text request body. Not with `json`.
    #[serde(default)]
    pub body: Option<String>,
    /// Whole-request timeout (connect, send, read the body). Default 30s.
    #[serde(default = "default_timeout")]
    #[schemars(default = "default_timeout_text")]
    pub timeout: Templated<DurationValue>,
    /// Status codes that count as success. Default: any 2xx.
    #[serde(default)]
    pub expected_status: Option<Vec<Templated<u16>>>,
}

fn default_method() -> Templated<HttpMethod> {
    Templated::Value(HttpMethod(Method::GET))
}

fn default_method_name() -> &'static str {
    "GET"
}

fn default_timeout() -> Templated<DurationValue> {
    Templated::Value(DurationValue(Duration::from_secs(30)))
}

fn default_timeout_text() -> &'static str {
    "30s"
}

/// An HTTP method from a fixed list, so a typo is caught at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpMethod(pub Method);

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl FromStr for HttpMethod {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let upper = text.trim().to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return Err(format!(
                "unknown HTTP method, expected one of {}",
                METHODS.join(", ")
            ));
        }
        Method::from_str(&upper)
            .map(HttpMethod)
            .map_err(|error| error.to_string())
    }
}

impl<'de> Deserialize<'de> for HttpMethod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

impl JsonSchema for HttpMethod {
    fn schema_name() -> Cow<'static, str> {
        "HttpMethod".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(?i)(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$"
        })
    }
}

#[async_trait]
impl Operator for HttpOperator {
    const NAME: &'static str = "http";
    type Config = HttpConfig;

    fn check(config: &HttpConfig) -> Result<(), String> {
        if config.conn_id.is_none() && config.url.trim().is_empty() {
            return Err("give `url` (an absolute http(s) URL), or a `conn_id` whose base URL it is joined to".into());
        }
        if config.json.is_some() && config.body.is_some() {
            return Err("give either `json` or `body`, not both".into());
        }
        for status in config.expected_status.iter().flatten() {
            if let Templated::Value(code) = status
                && !(100..=599).contains(code)
            {
                return Err(format!(
                    "expected_status: {code} is not an HTTP status code"
                ));
            }
        }
        Ok(())
    }

    async fn execute(&self, config: HttpConfig, ctx: &TaskContext) -> Result<Value, OperatorError> {
        let connection = match &config.conn_id {
            Some(conn_id) => Some(ctx.connection(conn_id).map_err(OperatorError::Config)?),
            None => None,
        };
        let request = Request::new(config, connection.as_ref())?;
        let target = format!("{} {}", request.method, request.url);
        let client = match self.client.get() {
            Some(client) => client,
            None => {
                let client = Client::builder()
                    .user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|error| {
                        OperatorError::Failed(format!("cannot build an HTTP client: {error}"))
                    })?;
                self.client.get_or_init(|| client)
            }
        };
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                ctx.log(format!("{target}: cancelled"));
                Err(OperatorError::Cancelled)
            }
            result = request.send(client, ctx) => result,
        }
    }
}

/// A config with every field resolved and checked.
struct Request {
    method: Method,
    url: Url,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Body,
    timeout: Duration,
    expected_status: Option<Vec<u16>>,
}

enum Body {
    None,
    Json(Value),
    Text(String),
}

/// The URL to call: `url` when absolute, else joined to the connection's base URL.
fn target_url(url: &str, connection: Option<&Connection>) -> Result<Url, String> {
    let url = url.trim();
    let absolute = url.contains("://");
    let full = match connection {
        Some(connection) if !absolute => {
            let base = connection.http_base_url()?;
            match url {
                "" => base,
                path => format!("{base}/{}", path.trim_start_matches('/')),
            }
        }
        None if !absolute => {
            return Err(format!(
                "url `{url}` is not an absolute http(s) URL (give one, or a conn_id whose base URL it is joined to)"
            ));
        }
        _ => url.to_string(),
    };
    let parsed = Url::parse(&full).map_err(|error| format!("url `{full}`: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("url `{parsed}`: only http and https are supported"));
    }
    Ok(parsed)
}

/// A connection's default headers (`extra.headers`) and auth: basic from login and password,
/// else a bearer token from `extra.token`.
fn connection_headers(connection: &Connection) -> Result<HeaderMap, String> {
    let conn_id = &connection.conn_id;
    let extra = connection.extra_dejson().map_err(|error| error.to_string())?;
    let mut headers = HeaderMap::new();
    if let Some(defaults) = extra.get("headers") {
        let Value::Object(defaults) = defaults else {
            return Err(format!(
                "connection `{conn_id}`: extra.headers must be an object of header names and values"
            ));
        };
        for (name, value) in defaults {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|error| {
                format!("connection `{conn_id}`: extra.headers name `{name}`: {error}")
            })?;
            let header_value = HeaderValue::from_str(&text).map_err(|error| {
                format!("connection `{conn_id}`: extra.headers `{name}` value: {error}")
            })?;
            headers.insert(header_name, header_value);
        }
    }
    let auth = match (&connection.login, extra.get("token")) {
        (Some(login), _) => {
            let password = connection.password.as_deref().unwrap_or("");
            Some(format!(
                "Basic {}",
                BASE64.encode(format!("{login}:{password}"))
            ))
        }
        (None, Some(Value::String(token))) => Some(format!("Bearer {token}")),
        _ => None,
    };
    if let Some(auth) = auth {
        let mut value = HeaderValue::from_str(&auth)
            .map_err(|_| format!("connection `{conn_id}`: its credentials cannot be sent in a header"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Ok(headers)
}

impl Request {
    fn new(config: HttpConfig, connection: Option<&Connection>) -> Result<Self, OperatorError> {
        let invalid = |message: String| OperatorError::Config(message);
        let url = target_url(&config.url, connection).map_err(invalid)?;
        // The connection's headers first: the task's own replace them.
        let mut headers = match connection {
            Some(connection) => connection_headers(connection).map_err(invalid)?,
            None => HeaderMap::new(),
        };
        let mut own = HeaderMap::new();
        for (name, Text(value)) in config.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|error| invalid(format!("header name `{name}`: {error}")))?;
            let header_value = HeaderValue::from_str(&value)
                .map_err(|error| invalid(format!("header `{name}` value: {error}")))?;
            own.append(header_name, header_value);
        }
        for name in own.keys() {
            headers.remove(name);
        }
        headers.extend(own);
        let body = match (config.json, config.body) {
            (Some(json), _) => Body::Json(json),
            (None, Some(text)) => Body::Text(text),
            (None, None) => Body::None,
        };
        let expected_status = match config.expected_status {
            None => None,
            Some(codes) => Some(
                codes
                    .into_iter()
                    .map(|code| code.resolve("expected_status"))
                    .collect::<Result<Vec<u16>, _>>()?,
            ),
        };
        Ok(Request {
            method: config.method.resolve("method")?.0,
            url,
            query: config
                .query
                .into_iter()
                .map(|(name, Text(value))| (name, value))
                .collect(),
            headers,
            body,
            timeout: config.timeout.resolve("timeout")?.0,
            expected_status,
        })
    }
}

impl Request {
    async fn send(self, client: &Client, ctx: &TaskContext) -> Result<Value, OperatorError> {
        let Request {
            method,
            url,
            query,
            headers,
            body,
            timeout,
            expected_status,
        } = self;
        let mut builder = client
            .request(method.clone(), url.clone())
            .headers(headers)
            .timeout(timeout);
        if !query.is_empty() {
            builder = builder.query(&query);
        }
        builder = match body {
            Body::None => builder,
            Body::Json(json) => builder.json(&json),
            Body::Text(text) => builder.body(text),
        };
        let started = Instant::now();
        let transport_error = |error: reqwest::Error| {
            let elapsed = started.elapsed();
            let reason = if error.is_timeout() {
                format!("timed out after {timeout:?}")
            } else {
                // The URL is already at the front of the message.
                error_chain(&error.without_url())
            };
            ctx.log(format!(
                "{method} {url} -> failed after {} ms: {reason}",
                elapsed.as_millis()
            ));
            OperatorError::Failed(format!("{method} {url} failed: {reason}"))
        };

        let response = builder.send().await.map_err(transport_error)?;
        let status = response.status();
        let response_headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(transport_error)?;
        ctx.log(format!(
            "{method} {url} -> {status} in {} ms ({} bytes)",
            started.elapsed().as_millis(),
            bytes.len()
        ));

        let text = String::from_utf8_lossy(&bytes);
        let accepted = match &expected_status {
            Some(codes) => codes.contains(&status.as_u16()),
            None => status.is_success(),
        };
        if !accepted {
            let expected = match &expected_status {
                Some(codes) => codes
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                None => "2xx".to_string(),
            };
            return Err(OperatorError::Failed(format!(
                "{method} {url} returned status {status} (expected {expected}); body: {}",
                excerpt(text.trim(), BODY_EXCERPT_CHARS)
            )));
        }

        let body = if is_json(&response_headers) {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|error| {
                    OperatorError::Failed(format!(
                        "{method} {url} returned status {status} with a JSON content type but invalid JSON ({error}); body: {}",
                        excerpt(text.trim(), BODY_EXCERPT_CHARS)
                    ))
                })?
            }
        } else {
            Value::String(text.into_owned())
        };
        Ok(json!({
            "status": status.as_u16(),
            "headers": headers_to_json(&response_headers),
            "body": body,
        }))
    }
}

/// `application/json`, `application/problem+json`, `text/json`...
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime.ends_with("/json") || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

/// Lower-case names; repeated headers joined with `, ` as HTTP allows.
fn headers_to_json(headers: &HeaderMap) -> Value {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        joined
            .entry(name.as_str().to_string())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    json!(joined)
}

/// reqwest's top-level message hides the cause ("error sending request"); add the sources.
fn error_chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OperatorKind;

    fn validate(config: Value) -> Result<(), String> {
        OperatorKind::validate(&HttpOperator::default(), &config)
    }

    #[test]
    fn templated_fields_pass_parse_time_validation() {
        validate(json!({
            "url": "{{ var('randomuser_url', 'https://randomuser.me/api/') }}",
            "method": "{{ params.method }}",
            "timeout": "{{ params.timeout }}",
            "expected_status": ["{{ params.code }}", "201", 204],
            "query": {"results": 10, "nat": "fr"},
        }))
        .unwrap();
    }

    #[test]
    fn bad_fields_are_rejected_at_parse_time() {
        let cases = [
            (
                json!({"url": "u", "method": "FETCH"}),
                "unknown HTTP method",
            ),
            (
                json!({"url": "u", "timeout": "30 seconds"}),
                "invalid duration",
            ),
            (
                json!({"url": "u", "expected_status": [99]}),
                "not an HTTP status code",
            ),
            (json!({"url": "u", "json": {}, "body": "x"}), "not both"),
            (json!({"url": "u", "methd": "GET"}), "unknown field `methd`"),
            (json!({"method": "GET"}), "give `url`"),
        ];
        for (config, message) in cases {
            let error = validate(config.clone()).unwrap_err();
            assert!(error.contains(message), "{config}: {error}");
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        for (content_type, expected) in [
            ("application/json; charset=utf-8", true),
            ("application/problem+json", true),
            ("text/plain", false),
            ("text/html", false),
        ] {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            assert_eq!(is_json(&headers), expected, "{content_type}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
