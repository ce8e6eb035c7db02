//! Airflow's Connection: the model and its two text forms, the URI
//! (`conn-type://login:password@host:port/schema?param=value`) and the JSON object, as Airflow
//! 2.x reads them from `AIRFLOW_CONN_*` and writes them with `get_uri`. Pure: nothing here reads
//! the environment or touches a database.
//!
//! Where Airflow's parser has a quirk that would lose or garble data, this one keeps the data:
//! the host keeps its case (Python's `urlsplit` lowercases it), an empty login, host or schema
//! reads as absent (Airflow gives `""`), and a `://` later in the URI (in a query value, say) is
//! not taken for a host protocol.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::mask::{MASK, Masker, is_sensitive};

/// Environment variables starting with this define connections (`UPDRAFT_CONN_<ID>`).
pub const CONN_ENV_PREFIX: &str = "UPDRAFT_CONN_";

/// The connection types Updraft knows; `check_conn_type` accepts these and no other.
pub const CONN_TYPES: &[&str] = &[
    "http",
    "https",
    "kafka",
    "cassandra",
    "postgres",
    "generic",
    "fs",
    "email",
    "smtp",
    "aws",
    "s3",
    "sftp",
    "ssh",
    "mysql",
    "redis",
    "elasticsearch",
    "mongo",
    "snowflake",
    "google_cloud_platform",
    "slack",
    "ftp",
    "odbc",
    "jdbc",
    "hive_cli",
    "spark",
    "docker",
    "grpc",
    "imap",
    "sqlite",
];

/// Airflow's query parameter holding the whole extra as JSON text (Airflow ≥ 2.3).
const EXTRA_KEY: &str = "__extra__";

/// Longest conn_id Airflow accepts (`CONN_ID_MAX_LEN`).
const CONN_ID_MAX_LEN: usize = 250;

/// The fields of the JSON form, for the unknown-field message.
const JSON_FIELDS: &str = "conn_type, description, host, port, login, password, schema, extra";

/// What Python's `quote(s, safe="")` leaves alone: letters, digits and `-._~`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a connection, or one of its parts, is not acceptable. Messages name the part and never
/// quote the password, the extra, or any piece of a URI (a malformed URI may split a password
/// into the host or port).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error(
        "the connection is empty: expected a URI such as `postgres://login:password@host:5432/schema` or a JSON object"
    )]
    Empty,
    #[error(
        "the connection URI is missing the connection type (scheme): it must start like `postgres://`"
    )]
    MissingConnType,
    #[error(
        "the connection type (scheme) of the URI must start with a letter and hold only letters, digits, `+`, `-` and `.`"
    )]
    InvalidConnType,
    #[error(
        "the port of the connection URI must be a number from 0 to 65535 (a `/`, `?`, `#` or `@` in the login or password must be percent-encoded)"
    )]
    InvalidUriPort,
    #[error(
        "the `__extra__` query parameter must be the only one in the connection URI: it holds the whole extra"
    )]
    ExtraNotAlone,
    #[error("{part} is not valid JSON (syntax error at line {line}, column {column})")]
    InvalidJson {
        part: &'static str,
        line: usize,
        column: usize,
    },
    #[error("{part} must be a JSON object, not {found}")]
    NotAnObject {
        part: &'static str,
        found: &'static str,
    },
    #[error("unknown field `{0}` in the connection JSON (known: {JSON_FIELDS})")]
    UnknownField(String),
    #[error("`{field}` in the connection JSON must be {expected}")]
    FieldType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("the connection JSON is missing the connection type (`conn_type`)")]
    MissingConnTypeField,
    #[error("the conn_id is empty: it needs 1 to {CONN_ID_MAX_LEN} characters")]
    ConnIdEmpty,
    #[error("the conn_id is {len} characters long: at most {CONN_ID_MAX_LEN} are allowed")]
    ConnIdTooLong { len: usize },
    #[error(
        "the conn_id may only hold letters, digits, `_`, `.` and `-`: {ch:?} (character {position}) is not allowed"
    )]
    ConnIdInvalidChar { ch: char, position: usize },
    #[error("unknown conn_type `{conn_type}` (known: {known})")]
    UnknownConnType { conn_type: String, known: String },
}

/// What a Kafka connection gives a producer or consumer ([`Connection::kafka_client`]).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KafkaClient {
    /// `bootstrap.servers`, when the connection says.
    pub brokers: Option<String>,
    /// librdkafka settings, SASL credentials among them.
    pub settings: Vec<(String, String)>,
}

impl fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Settings may hold `sasl.password`: show the names only.
        let names: Vec<&str> = self
            .settings
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        f.debug_struct("KafkaClient")
            .field("brokers", &self.brokers)
            .field("settings", &names)
            .finish()
    }
}

/// An Airflow connection. `Debug` masks the password and the extra, which may hold secrets.
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    pub conn_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub schema: Option<String>,
    /// JSON object as text (Airflow's `extra`).
    pub extra: Option<String>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Logs and panics print `{:?}`: they must not carry the secrets.
        f.debug_struct("Connection")
            .field("conn_id", &self.conn_id)
            .field("conn_type", &self.conn_type)
            .field("description", &self.description)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| Masked))
            .field("schema", &self.schema)
            .field("extra", &self.extra.as_ref().map(|_| Masked))
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Masked;

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Connection {
    /// The environment variable that defines connection `conn_id` (`UPDRAFT_CONN_<ID>`, as
    /// Airflow's `AIRFLOW_CONN_<ID>`).
    pub fn env_var_name(conn_id: &str) -> String {
        format!("{CONN_ENV_PREFIX}{}", conn_id.to_uppercase())
    }

    /// Reads `AIRFLOW_CONN_*`-style text the way Airflow does: a JSON object when it starts
    /// with `{`, a URI otherwise.
    pub fn parse(conn_id: &str, text: &str) -> Result<Connection, ConnectionError> {
        let text = text.trim();
        if text.is_empty() {
            Err(ConnectionError::Empty)
        } else if text.starts_with('{') {
            Connection::from_json(conn_id, text)
        } else {
            Connection::from_uri(conn_id, text)
        }
    }

    /// Airflow's URI form (`Connection._parse_from_uri`):
    /// `conn-type://login:password@host:port/schema?param1=val1&param2=val2`.
    ///
    /// The scheme, lowercased, is the conn_type with `-` read as `_` (and `postgresql` as
    /// `postgres`); login, password, host and schema are percent-decoded; query parameters
    /// become the extra, a JSON object of strings, unless a lone `__extra__` parameter holds the
    /// whole extra as JSON text. A host may carry its own protocol, either percent-encoded
    /// (`http://https%3A%2F%2Fapi.example.com`) or as Airflow writes it
    /// (`http://https://api.example.com`). The conn_type is not checked against `CONN_TYPES`.
    pub fn from_uri(conn_id: &str, uri: &str) -> Result<Connection, ConnectionError> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(ConnectionError::Empty);
        }
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or(ConnectionError::MissingConnType)?;
        if scheme.is_empty() {
            return Err(ConnectionError::MissingConnType);
        }
        if !is_scheme(scheme) {
            return Err(ConnectionError::InvalidConnType);
        }
        let conn_type = normalize_conn_type(&scheme.to_ascii_lowercase());

        // Airflow's host with a protocol: `conn-type://protocol://login:password@host...`.
        let (protocol, rest) = match rest.split_once("://") {
            Some((protocol, after)) if is_scheme(protocol) => (Some(protocol), after),
            _ => (None, rest),
        };
        // As `urlsplit`: the fragment is dropped, the query follows the first `?`, the
        // authority ends at the first `/`.
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (rest, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));

        // The last `@` ends the userinfo, so an unencoded `@` in a password still reads.
        let (userinfo, hostinfo) = match authority.rsplit_once('@') {
            Some((userinfo, hostinfo)) => (Some(userinfo), hostinfo),
            None => (None, authority),
        };
        let (login, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => match userinfo.split_once(':') {
                Some((login, password)) => (non_empty(decode(login)), Some(decode(password))),
                None => (non_empty(decode(userinfo)), None),
            },
        };
        let (host, port) = split_host_port(hostinfo);
        let port = parse_uri_port(port)?;
        let host = decode(host);
        let host = match protocol {
            Some(protocol) => Some(format!("{protocol}://{host}")),
            None => non_empty(host),
        };
        let schema = non_empty(decode(path.strip_prefix('/').unwrap_or(path)));
        let extra = match query {
            Some(query) => extra_from_query(query)?,
            None => None,
        };

        Ok(Connection {
            conn_id: conn_id.to_owned(),
            conn_type,
            description: None,
            host,
            port,
            login,
            password,
            schema,
            extra,
        })
    }

    /// Airflow's JSON form (`Connection.from_json`): an object with `conn_type` (required) and
    /// any of `description`, `host`, `port`, `login`, `password`, `schema`, `extra`. `extra` is
    /// an object or a string holding one; `port` an integer (or, as Airflow's `int(port)`
    /// allows, a string of digits). Unknown fields are refused so a typo does not drop a value.
    pub fn from_json(conn_id: &str, json: &str) -> Result<Connection, ConnectionError> {
        if json.trim().is_empty() {
            return Err(ConnectionError::Empty);
        }
        let fields = parse_object("the connection JSON", json)?;
        let mut connection = Connection {
            conn_id: conn_id.to_owned(),
            ..Connection::default()
        };
        let mut conn_type = None;
        for (key, value) in fields {
            match key.as_str() {
                "conn_type" => conn_type = string_field("conn_type", value)?,
                "description" => connection.description = string_field("description", value)?,
                "host" => connection.host = string_field("host", value)?,
                "login" => connection.login = string_field("login", value)?,
                "password" => connection.password = string_field("password", value)?,
                "schema" => connection.schema = string_field("schema", value)?,
                "port" => connection.port = json_port(value)?,
                "extra" => connection.extra = json_extra(value)?,
                _ => return Err(ConnectionError::UnknownField(key)),
            }
        }
        connection.conn_type = conn_type
            .filter(|conn_type| !conn_type.is_empty())
            .map(|conn_type| normalize_conn_type(&conn_type))
            .ok_or(ConnectionError::MissingConnTypeField)?;
        Ok(connection)
    }

    /// Airflow's `get_uri`: the URI `from_uri` reads back to this same connection.
    ///
    /// The round trip holds for a connection with no `description` (the URI has no place for
    /// it), a conn_type already in `from_uri`'s form (lowercase, `_` not `-`, not
    /// `postgresql`), no empty login, host or schema (they read back as absent), and an extra
    /// that is absent or a JSON object. The extra goes as query parameters when that gives its
    /// text back exactly (a non-empty object of strings in the form `from_uri` writes), else
    /// whole as `__extra__=<json>`.
    pub fn to_uri(&self) -> String {
        let mut uri = self.conn_type.to_ascii_lowercase().replace('_', "-");
        uri.push_str("://");

        // A host's protocol is written before the authority, as Airflow does.
        let (protocol, host) = match self.host.as_deref() {
            Some(host) => match host.split_once("://") {
                Some((protocol, after)) if is_scheme(protocol) => (Some(protocol), after),
                _ => (None, host),
            },
            None => (None, ""),
        };
        if let Some(protocol) = protocol {
            uri.push_str(protocol);
            uri.push_str("://");
        }

        let login = self.login.as_deref().filter(|login| !login.is_empty());
        let authority = login.is_some() || self.password.is_some();
        if let Some(login) = login {
            uri.push_str(&encode(login));
        }
        if let Some(password) = &self.password {
            uri.push(':');
            uri.push_str(&encode(password));
        }
        if authority {
            uri.push('@');
        }
        uri.push_str(&encode(host));
        if let Some(port) = self.port {
            // Airflow's form for a port alone: `conn-type://@:5432`.
            if host.is_empty() && !authority {
                uri.push('@');
            }
            uri.push(':');
            uri.push_str(&port.to_string());
        }

        let schema = self.schema.as_deref().filter(|schema| !schema.is_empty());
        if let Some(schema) = schema {
            uri.push('/');
            uri.push_str(&encode(schema));
        }
        if let Some(extra) = self.extra.as_deref().filter(|extra| !extra.is_empty()) {
            uri.push_str(if schema.is_some() { "?" } else { "/?" });
            uri.push_str(&extra_to_query(extra));
        }
        uri
    }

    /// Where an HTTP connection points: `host` when it holds a scheme
    /// (`https://api.example.com`), else `scheme://host[:port]`, the scheme being the `schema`
    /// when that is `http` or `https` (Airflow's HttpHook) and else the connection type's
    /// (`https` for an `https` connection, `http` otherwise), with any other `schema` as the
    /// base path (`https://randomuser.me/api`).
    pub fn http_base_url(&self) -> Result<String, String> {
        let host = self
            .host
            .as_deref()
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .ok_or_else(|| format!("connection `{}` has no host", self.conn_id))?;
        if host.contains("://") {
            return Ok(host.trim_end_matches('/').to_string());
        }
        let schema = self.schema.as_deref().unwrap_or("").trim_matches('/');
        let (scheme, path) = match schema {
            "http" | "https" => (schema, ""),
            _ if self.conn_type == "https" => ("https", schema),
            _ => ("http", schema),
        };
        let port = self.port.map(|port| format!(":{port}")).unwrap_or_default();
        let path = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        Ok(format!("{scheme}://{host}{port}{path}"))
    }

    /// What a Kafka connection gives a client: the brokers (`extra."bootstrap.servers"`, else
    /// each of `host`'s comma-separated hosts with `port` when it has none) and librdkafka
    /// settings (every other extra entry, then `sasl.username` / `sasl.password` from login and
    /// password unless the extra sets them).
    pub fn kafka_client(&self) -> Result<KafkaClient, String> {
        let conn_id = &self.conn_id;
        let extra = self.extra_dejson().map_err(|error| error.to_string())?;
        let mut settings = Vec::new();
        let mut brokers = None;
        for (name, value) in extra {
            let text = match value {
                Value::String(text) => text,
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => {
                    return Err(format!(
                        "connection `{conn_id}`: extra `{name}` must be a string, number or boolean (a librdkafka setting)"
                    ));
                }
            };
            if name == "bootstrap.servers" {
                brokers = Some(text);
            } else {
                settings.push((name, text));
            }
        }
        let credentials = [
            ("sasl.username", self.login.as_ref()),
            ("sasl.password", self.password.as_ref()),
        ];
        for (name, value) in credentials {
            if let Some(value) = value
                && !settings.iter().any(|(set, _)| set == name)
            {
                settings.push((name.to_string(), value.clone()));
            }
        }
        let brokers = brokers
            .or_else(|| self.hosts_with_port(None))
            .filter(|brokers| !brokers.trim().is_empty());
        Ok(KafkaClient { brokers, settings })
    }

    /// A Cassandra connection's contact points: each of `host`'s comma-separated hosts, with
    /// `port` (9042 when unset) unless it has one.
    pub fn cassandra_contact_points(&self) -> Result<Vec<String>, String> {
        let points = self.hosts_with_port(Some(9042)).unwrap_or_default();
        if points.is_empty() {
            return Err(format!("connection `{}` has no host", self.conn_id));
        }
        Ok(points.split(',').map(str::to_string).collect())
    }

    /// `host`'s comma-separated hosts joined with `,`, each given `port` (else `default_port`)
    /// when it has none.
    fn hosts_with_port(&self, default_port: Option<u16>) -> Option<String> {
        let port = self.port.or(default_port);
        let hosts: Vec<String> = self
            .host
            .as_deref()?
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(|host| match port {
                Some(port) if !host.contains(':') => format!("{host}:{port}"),
                _ => host.to_string(),
            })
            .collect();
        (!hosts.is_empty()).then(|| hosts.join(","))
    }

    /// The extra as a JSON object: empty when there is none, an error naming `extra` when it is
    /// not a JSON object.
    pub fn extra_dejson(&self) -> Result<Map<String, Value>, ConnectionError> {
        match self.extra.as_deref() {
            Some(extra) if !extra.trim().is_empty() => parse_object("`extra`", extra),
            _ => Ok(Map::new()),
        }
    }

    /// The extra as shown to people (API, UI): every value under a sensitive key replaced by
    /// `***`, at any depth. An extra that is not a JSON object is hidden whole.
    pub fn masked_extra(&self) -> Option<String> {
        let extra = self.extra.as_deref()?;
        if extra.trim().is_empty() {
            return Some(extra.to_string());
        }
        Some(match self.extra_dejson() {
            Ok(object) => {
                let object = Value::Object(object);
                let masked = Masker::new().mask_json(&object);
                // Unchanged text when nothing is secret: the user's formatting stays.
                if masked == object {
                    extra.to_string()
                } else {
                    masked.to_string()
                }
            }
            Err(_) => MASK.to_string(),
        })
    }

    /// Takes `submitted` as the new extra, keeping the stored value wherever it says `***`
    /// under a sensitive key: an extra read back masked and sent again changes no secret.
    pub fn merge_masked_extra(&mut self, submitted: Option<String>) -> Result<(), ConnectionError> {
        let stored = self.extra_dejson()?;
        self.extra = submitted;
        let Ok(mut merged) = self.extra_dejson() else {
            return Ok(()); // the caller's validation names the problem
        };
        if keep_masked(&mut merged, &stored) {
            self.extra = Some(Value::Object(merged).to_string());
        }
        Ok(())
    }

    /// Airflow's rule for a conn_id that goes into URLs: 1 to 250 of `A-Za-z0-9_.-`.
    pub fn validate_conn_id(conn_id: &str) -> Result<(), ConnectionError> {
        let len = conn_id.chars().count();
        if len == 0 {
            return Err(ConnectionError::ConnIdEmpty);
        }
        if len > CONN_ID_MAX_LEN {
            return Err(ConnectionError::ConnIdTooLong { len });
        }
        match conn_id
            .chars()
            .enumerate()
            .find(|(_, ch)| !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-')))
        {
            Some((index, ch)) => Err(ConnectionError::ConnIdInvalidChar {
                ch,
                position: index + 1,
            }),
            None => Ok(()),
        }
    }

    /// Whether Updraft knows this conn_type (`CONN_TYPES`); the parsers leave this to callers.
    pub fn check_conn_type(&self) -> Result<(), ConnectionError> {
        if CONN_TYPES.contains(&self.conn_type.as_str()) {
            Ok(())
        } else {
            Err(ConnectionError::UnknownConnType {
                conn_type: self.conn_type.clone(),
                known: CONN_TYPES.join(", "),
            })
        }
    }
}

/// An RFC 3986 scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '+' | '-' | '.'))
}

/// Airflow's `_normalize_conn_type`: SQLAlchemy's `postgresql` is `postgres`, and `-` (the only
/// separator a scheme allows) stands for `_`.
fn normalize_conn_type(conn_type: &str) -> String {
    if conn_type == "postgresql" {
        "postgres".to_owned()
    } else {
        conn_type.replace('-', "_")
    }
}

/// `host` and `port` text of the part after the userinfo; `[...]` encloses an IPv6 address.
fn split_host_port(hostinfo: &str) -> (&str, &str) {
    if let Some(bracketed) = hostinfo.strip_prefix('[')
        && let Some((host, after)) = bracketed.split_once(']')
    {
        return (host, after.split_once(':').map_or("", |(_, port)| port));
    }
    hostinfo.split_once(':').unwrap_or((hostinfo, ""))
}

/// As `urlsplit().port`: none when empty, else digits from 0 to 65535.
fn parse_uri_port(port: &str) -> Result<Option<u16>, ConnectionError> {
    if port.is_empty() {
        return Ok(None);
    }
    if !port.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(ConnectionError::InvalidUriPort);
    }
    port.parse::<u16>()
        .map(Some)
        .map_err(|_| ConnectionError::InvalidUriPort)
}

/// The extra of a URI query, as Airflow: `parse_qsl(keep_blank_values=True)` into a dict (the
/// last of a repeated name wins), or the lone `__extra__` value.
fn extra_from_query(query: &str) -> Result<Option<String>, ConnectionError> {
    let pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_plus(name), decode_plus(value))
        })
        .collect();
    if pairs.iter().any(|(name, _)| name == EXTRA_KEY) {
        let mut pairs = pairs.into_iter();
        return match (pairs.next(), pairs.next()) {
            (Some((_, extra)), None) => {
                parse_object("the `__extra__` query parameter", &extra)?;
                Ok(Some(extra))
            }
            _ => Err(ConnectionError::ExtraNotAlone),
        };
    }
    if pairs.is_empty() {
        return Ok(None);
    }
    Ok(Some(dump_string_pairs(pairs)))
}

/// The query `from_uri` reads back to exactly `extra`: its members when they are strings and
/// `from_uri` would write the same text from them, else the whole text as `__extra__`.
fn extra_to_query(extra: &str) -> String {
    let params = serde_json::from_str::<StringPairs>(extra)
        .ok()
        .map(|pairs| pairs.0)
        .filter(|pairs| {
            !pairs.is_empty()
                && pairs.iter().all(|(name, _)| name != EXTRA_KEY)
                && dump_string_pairs(pairs.clone()) == extra
        });
    match params {
        Some(pairs) => pairs
            .iter()
            .map(|(name, value)| format!("{}={}", encode_plus(name), encode_plus(value)))
            .collect::<Vec<_>>()
            .join("&"),
        None => format!("{EXTRA_KEY}={}", encode_plus(extra)),
    }
}

/// Pairs as the JSON text Airflow's `json.dumps(dict(pairs))` gives: in order, a repeated
/// name keeping its first place and its last value, `", "` and `": "` as separators.
fn dump_string_pairs(pairs: Vec<(String, String)>) -> String {
    let mut unique: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        match unique.iter_mut().find(|(seen, _)| *seen == name) {
            Some(slot) => slot.1 = value,
            None => unique.push((name, value)),
        }
    }
    let members: Vec<String> = unique
        .into_iter()
        .map(|(name, value)| format!("{}: {}", Value::String(name), Value::String(value)))
        .collect();
    format!("{{{}}}", members.join(", "))
}

/// JSON text in Python's `json.dumps` layout (`", "`, `": "`), as Airflow stores an extra.
fn dump_python_style(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            for (index, (name, member)) in map.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push_str(": ");
                dump_python_style(member, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                dump_python_style(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A JSON object's members in the order of the text, when every value is a string.
struct StringPairs(Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for StringPairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StringPairs, D::Error> {
        struct PairsVisitor;

        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = StringPairs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringPairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(StringPairs(pairs))
            }
        }

        deserializer.deserialize_map(PairsVisitor)
    }
}

/// `text` as a JSON object; errors name `part` and quote nothing of the text.
fn parse_object(part: &'static str, text: &str) -> Result<Map<String, Value>, ConnectionError> {
    // Only syntax errors can come out of parsing into a `Value`, and only their position is
    // kept: a message may not echo a secret.
    let value: Value =
        serde_json::from_str(text).map_err(|error| ConnectionError::InvalidJson {
            part,
            line: error.line(),
            column: error.column(),
        })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ConnectionError::NotAnObject {
            part,
            found: json_kind(&other),
        }),
    }
}

/// "an array", "a string"...: what a value is, without its content.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string field of the JSON form; `null` is absent.
fn string_field(field: &'static str, value: Value) -> Result<Option<String>, ConnectionError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text)),
        _ => Err(ConnectionError::FieldType {
            field,
            expected: "a string or null",
        }),
    }
}

/// `port` of the JSON form: an integer from 0 to 65535, or a string of one (Airflow's
/// `int(port)`); `null` or `""` is absent.
fn json_port(value: Value) -> Result<Option<u16>, ConnectionError> {
    let invalid = ConnectionError::FieldType {
        field: "port",
        expected: "an integer from 0 to 65535",
    };
    match value {
        Value::Null => Ok(None),
        Value::Number(number) => number
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .map(Some)
            .ok_or(invalid),
        Value::String(text) => {
            let text = text.trim();
            if text.is_empty() {
                Ok(None)
            } else if text.bytes().all(|byte| byte.is_ascii_digit()) {
                text.parse::<u16>().map(Some).map_err(|_| invalid)
            } else {
                Err(invalid)
            }
        }
        _ => Err(invalid),
    }
}

/// `extra` of the JSON form: an object (stored as Airflow's `json.dumps` text) or a string
/// holding one (stored as is); empty or `null` is absent, as Airflow's `if extra:`.
fn json_extra(value: Value) -> Result<Option<String>, ConnectionError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.trim().is_empty() => Ok(None),
        Value::String(text) => {
            parse_object("`extra`", &text)?;
            Ok(Some(text))
        }
        Value::Object(map) if map.is_empty() => Ok(None),
        object @ Value::Object(_) => {
            let mut text = String::new();
            dump_python_style(&object, &mut text);
            Ok(Some(text))
        }
        _ => Err(ConnectionError::FieldType {
            field: "extra",
            expected: "a JSON object or a string holding one",
        }),
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// Python's `quote(text, safe="")`.
fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Python's `quote_plus`, as `urlencode` writes query names and values.
fn encode_plus(text: &str) -> String {
    // Only a space encodes to `%20`: a literal `%` becomes `%25`.
    encode(text).replace("%20", "+")
}

/// Python's `unquote`: bytes that are not UTF-8 become U+FFFD, a stray `%` stays.
fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// As `parse_qsl` decodes a query name or value: `+` is a space.
fn decode_plus(text: &str) -> String {
    decode(&text.replace('+', " "))
}

/// Puts back `stored`'s value wherever `submitted` holds `***` under a sensitive key; whether
/// it changed anything.
fn keep_masked(submitted: &mut Map<String, Value>, stored: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (key, value) in submitted.iter_mut() {
        let Some(old) = stored.get(key) else { continue };
        match value {
            Value::String(text) if text == MASK && is_sensitive(key) => {
                *value = old.clone();
                changed = true;
            }
            Value::Object(inner) => {
                if let Value::Object(old_inner) = old {
                    changed |= keep_masked(inner, old_inner);
                }
            }
            _ => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_is_shown_masked_and_a_masked_value_sent_back_keeps_the_secret() {
        let mut connection = Connection {
            extra: Some(
                json!({"token": "t0k3n", "headers": {"X-Api-Key": "k3y", "Accept": "json"},
                       "timeout": 5})
                .to_string(),
            ),
            ..Connection::default()
        };
        let shown: Value = serde_json::from_str(&connection.masked_extra().unwrap()).unwrap();
        assert_eq!(
            shown,
            json!({"token": "***", "headers": {"X-Api-Key": "***", "Accept": "json"}, "timeout": 5})
        );
        let mut edited = shown.clone();
        edited["timeout"] = json!(9);
        connection
            .merge_masked_extra(Some(edited.to_string()))
            .unwrap();
        assert_eq!(
            connection.extra_dejson().unwrap(),
            *json!({"token": "t0k3n", "headers": {"X-Api-Key": "k3y", "Accept": "json"},
                    "timeout": 9})
            .as_object()
            .unwrap()
        );
        // A new value replaces the secret; `***` under a key that is not sensitive is taken as is.
        connection
            .merge_masked_extra(Some(json!({"token": "new", "note": "***"}).to_string()))
            .unwrap();
        assert_eq!(
            connection.extra_dejson().unwrap(),
            *json!({"token": "new", "note": "***"}).as_object().unwrap()
        );
        let broken = Connection {
            extra: Some("not json".into()),
            ..Connection::default()
        };
        assert_eq!(broken.masked_extra().as_deref(), Some("***"));
    }

    #[test]
    fn kafka_and_cassandra_clients_read_hosts_ports_extra_and_credentials() {
        let kafka = Connection::parse(
            "events",
            r#"{"conn_type": "kafka", "host": "b1, b2:9093", "port": 9092, "login": "svc",
                "password": "pw", "extra": {"security.protocol": "SASL_SSL", "linger.ms": 5}}"#,
        )
        .unwrap();
        let client = kafka.kafka_client().unwrap();
        assert_eq!(client.brokers.as_deref(), Some("b1:9092,b2:9093"));
        assert_eq!(
            client.settings,
            [
                ("linger.ms", "5"),
                ("security.protocol", "SASL_SSL"),
                ("sasl.username", "svc"),
                ("sasl.password", "pw")
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert!(!format!("{client:?}").contains("pw"));
        let from_extra = Connection::parse(
            "e",
            r#"{"conn_type": "kafka", "host": "ignored", "extra": {"bootstrap.servers": "x:1"}}"#,
        )
        .unwrap();
        assert_eq!(
            from_extra.kafka_client().unwrap().brokers.as_deref(),
            Some("x:1")
        );
        let nested =
            Connection::parse("e", r#"{"conn_type": "kafka", "extra": {"a": {"b": 1}}}"#).unwrap();
        assert!(nested.kafka_client().unwrap_err().contains("extra `a`"));

        let cassandra =
            Connection::parse("c", r#"{"conn_type": "cassandra", "host": "c1, c2:9142"}"#).unwrap();
        assert_eq!(
            cassandra.cassandra_contact_points().unwrap(),
            ["c1:9042", "c2:9142"]
        );
        // docs/streams.md's example.
        let sasl = uri(
            "kafka://svc:s3cret@broker-1:9093?security.protocol=SASL_SSL&sasl.mechanism=SCRAM-SHA-512",
        );
        let client = sasl.kafka_client().unwrap();
        assert_eq!(client.brokers.as_deref(), Some("broker-1:9093"));
        assert!(
            client
                .settings
                .contains(&("sasl.password".into(), "s3cret".into()))
        );
        assert!(
            client
                .settings
                .contains(&("security.protocol".into(), "SASL_SSL".into()))
        );
        let nodes = uri("cassandra://writer:s3cret@node-1,node-2");
        assert_eq!(
            nodes.cassandra_contact_points().unwrap(),
            ["node-1:9042", "node-2:9042"]
        );
        let no_host = Connection::parse("c", r#"{"conn_type": "cassandra"}"#).unwrap();
        assert_eq!(
            no_host.cassandra_contact_points().unwrap_err(),
            "connection `c` has no host"
        );
    }

    fn uri(text: &str) -> Connection {
        Connection::from_uri("c", text).unwrap()
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    // ---- from_uri ----

    #[test]
    fn reads_the_airflow_documentation_uri() {
        let c = uri("my-conn-type://login:password@host:5432/schema?param1=val1&param2=val2");
        assert_eq!(
            c,
            Connection {
                conn_id: "c".into(),
                conn_type: "my_conn_type".into(),
                description: None,
                host: Some("host".into()),
                port: Some(5432),
                login: Some("login".into()),
                password: Some("password".into()),
                schema: Some("schema".into()),
                extra: Some(r#"{"param1": "val1", "param2": "val2"}"#.into()),
            }
        );
        assert_eq!(
            c.extra_dejson().unwrap(),
            object(json!({"param1": "val1", "param2": "val2"}))
        );
    }

    #[test]
    fn percent_decodes_login_password_host_and_schema() {
        let c = uri("postgres://user:p%40ss@db:5432/app");
        assert_eq!(c.conn_type, "postgres");
        assert_eq!(c.login.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(c.host.as_deref(), Some("db"));
        assert_eq!(c.port, Some(5432));
        assert_eq!(c.schema.as_deref(), Some("app"));
        assert_eq!(c.extra, None);

        let c = uri("mysql://us%20er:a%3Ab%2Fc%3Fd%23e%25f@my%2Dhost/my%2Fschema");
        assert_eq!(c.login.as_deref(), Some("us er"));
        assert_eq!(c.password.as_deref(), Some("a:b/c?d#e%f"));
        assert_eq!(c.host.as_deref(), Some("my-host"));
        assert_eq!(c.schema.as_deref(), Some("my/schema"));

        let c = uri("http://h%C3%B6st/sch%C3%A9ma");
        assert_eq!(c.host.as_deref(), Some("höst"));
        assert_eq!(c.schema.as_deref(), Some("schéma"));
    }

    #[test]
    fn a_percent_encoded_host_may_hold_a_protocol() {
        let c = uri("http://https%3A%2F%2Fapi.example.com");
        assert_eq!(c.conn_type, "http");
        assert_eq!(c.host.as_deref(), Some("https://api.example.com"));
        assert_eq!(c.port, None);
        assert_eq!(c.schema, None);
    }

    #[test]
    fn reads_airflows_host_protocol_form() {
        let c = uri("http://https://user:pw@api.example.com:443/v1?timeout=5");
        assert_eq!(c.conn_type, "http");
        assert_eq!(c.host.as_deref(), Some("https://api.example.com"));
        assert_eq!(c.login.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some("pw"));
        assert_eq!(c.port, Some(443));
        assert_eq!(c.schema.as_deref(), Some("v1"));
        assert_eq!(c.extra.as_deref(), Some(r#"{"timeout": "5"}"#));
        // A `://` in a query value is not a host protocol.
        let c = uri("http://host/?url=https://elsewhere");
        assert_eq!(c.host.as_deref(), Some("host"));
        assert_eq!(
            c.extra_dejson().unwrap(),
            object(json!({"url": "https://elsewhere"}))
        );
    }

    #[test]
    fn normalizes_the_scheme_into_the_conn_type() {
        assert_eq!(
            uri("google-cloud-platform://").conn_type,
            "google_cloud_platform"
        );
        assert_eq!(uri("postgresql://db/app").conn_type, "postgres");
        assert_eq!(uri("Postgres://db").conn_type, "postgres");
        assert_eq!(uri("hive-cli://").conn_type, "hive_cli");
    }

    #[test]
    fn reads_minimal_uris() {
        let c = uri("sqlite://");
        assert_eq!(
            c,
            Connection {
                conn_id: "c".into(),
                conn_type: "sqlite".into(),
                ..Connection::default()
            }
        );
        assert_eq!(uri("postgres://db").host.as_deref(), Some("db"));
        assert_eq!(uri("postgres://db/").schema, None);
        assert_eq!(uri("postgres://db:").port, None);
        assert_eq!(uri("fs:///tmp%2Fdata").schema.as_deref(), Some("tmp/data"));
        assert_eq!(uri("postgres://@:5432").port, Some(5432));
        assert_eq!(uri("  postgres://db  ").host.as_deref(), Some("db"));
    }

    #[test]
    fn reads_the_userinfo_as_airflow() {
        // A password without a login, as Redis has.
        let c = uri("redis://:secret@cache:6379/0");
        assert_eq!(c.login, None);
        assert_eq!(c.password.as_deref(), Some("secret"));
        assert_eq!(c.schema.as_deref(), Some("0"));
        // `user:@` is an empty password, `user@` none.
        assert_eq!(uri("ftp://user:@h").password.as_deref(), Some(""));
        assert_eq!(uri("ftp://user@h").password, None);
        // The last `@` ends the userinfo; the first `:` ends the login.
        let c = uri("postgres://user:p@ss:w@db");
        assert_eq!(c.password.as_deref(), Some("p@ss:w"));
        assert_eq!(c.host.as_deref(), Some("db"));
    }

    #[test]
    fn reads_query_parameters_as_parse_qsl() {
        let c = uri("http://h?q=a+b%2Bc&flag&&x=1&x=2&empty=");
        assert_eq!(
            c.extra.as_deref(),
            Some(r#"{"q": "a b+c", "flag": "", "x": "2", "empty": ""}"#)
        );
        // A fragment is dropped, as `urlsplit` does.
        assert_eq!(
            uri("http://h/s?a=1#frag").extra.as_deref(),
            Some(r#"{"a": "1"}"#)
        );
        assert_eq!(uri("http://h/s?").extra, None);
        // Quotes and backslashes are escaped in the JSON text.
        let c = uri("http://h?k=%22%5C");
        assert_eq!(c.extra_dejson().unwrap(), object(json!({"k": "\"\\"})));
    }

    #[test]
    fn reads_a_bracketed_ipv6_host() {
        let c = uri("postgres://u:p@[::1]:5432/db");
        assert_eq!(c.host.as_deref(), Some("::1"));
        assert_eq!(c.port, Some(5432));
    }

    #[test]
    fn reads_the_whole_extra_from_extra_param() {
        let c = uri("aws://?__extra__=%7B%22region%22%3A+%22eu-west-1%22%2C+%22retries%22%3A+3%7D");
        assert_eq!(
            c.extra.as_deref(),
            Some(r#"{"region": "eu-west-1", "retries": 3}"#)
        );
        assert_eq!(
            c.extra_dejson().unwrap(),
            object(json!({"region": "eu-west-1", "retries": 3}))
        );
    }

    #[test]
    fn refuses_a_bad_extra_param() {
        assert_eq!(
            Connection::from_uri("c", "aws://?__extra__=%5B1%5D"),
            Err(ConnectionError::NotAnObject {
                part: "the `__extra__` query parameter",
                found: "an array"
            })
        );
        let error = Connection::from_uri("c", "aws://?__extra__=%7Bnope").unwrap_err();
        assert!(
            matches!(error, ConnectionError::InvalidJson { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("`__extra__`"));
        assert_eq!(
            Connection::from_uri("c", "aws://?a=1&__extra__=%7B%7D"),
            Err(ConnectionError::ExtraNotAlone)
        );
    }

    #[test]
    fn refuses_a_bad_port() {
        for bad in [
            "postgres://db:port/app",
            "postgres://db:70000",
            "postgres://db:-1",
            "postgres://db:54 32",
            "postgres://db:5432:1",
        ] {
            let error = Connection::from_uri("c", bad).unwrap_err();
            assert_eq!(error, ConnectionError::InvalidUriPort, "{bad}");
            assert!(error.to_string().contains("port"));
        }
        assert_eq!(uri("postgres://db:65535").port, Some(65535));
        assert_eq!(uri("postgres://db:0").port, Some(0));
    }

    #[test]
    fn refuses_a_missing_or_bad_scheme() {
        for missing in ["db:5432/app", "://host", "user:pass@host", "host"] {
            let error = Connection::from_uri("c", missing).unwrap_err();
            assert_eq!(error, ConnectionError::MissingConnType, "{missing}");
            assert!(
                error
                    .to_string()
                    .contains("missing the connection type (scheme)")
            );
        }
        for bad in ["my conn://h", "1pg://h", "pg_sql://h"] {
            assert_eq!(
                Connection::from_uri("c", bad),
                Err(ConnectionError::InvalidConnType),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_an_empty_uri() {
        assert_eq!(Connection::from_uri("c", ""), Err(ConnectionError::Empty));
        assert_eq!(
            Connection::from_uri("c", " \n"),
            Err(ConnectionError::Empty)
        );
    }

    #[test]
    fn uri_errors_never_quote_the_password() {
        // An unencoded `/` or `#` splits the password into the host and port.
        for bad in [
            "postgres://user:hunter2/x@db/app",
            "postgres://user:hunter2#x@db/app",
            "postgres://user:hunter2@db:hunter2",
            "hunter2",
            "postgres://u:hunter2@db/?__extra__=hunter2",
            "postgres://u:hunter2@db/?__extra__=%22hunter2%22",
        ] {
            let error = Connection::from_uri("c", bad).unwrap_err();
            assert!(!error.to_string().contains("hunter2"), "{bad}: {error}");
        }
    }

    // ---- from_json ----

    #[test]
    fn reads_the_airflow_documentation_json() {
        let c = Connection::from_json(
            "my_conn",
            r#"{
                "conn_type": "my-conn-type",
                "login": "my-login",
                "password": "my-password",
                "host": "my-host",
                "port": 1234,
                "schema": "my-schema",
                "extra": {"param1": "val1", "param2": "val2"}
            }"#,
        )
        .unwrap();
        assert_eq!(c.conn_id, "my_conn");
        assert_eq!(c.conn_type, "my_conn_type");
        assert_eq!(c.login.as_deref(), Some("my-login"));
        assert_eq!(c.password.as_deref(), Some("my-password"));
        assert_eq!(c.host.as_deref(), Some("my-host"));
        assert_eq!(c.port, Some(1234));
        assert_eq!(c.schema.as_deref(), Some("my-schema"));
        assert_eq!(c.description, None);
        assert_eq!(
            c.extra.as_deref(),
            Some(r#"{"param1": "val1", "param2": "val2"}"#)
        );
    }

    #[test]
    fn json_extra_may_be_an_object_or_a_string_holding_one() {
        let c = Connection::from_json(
            "c",
            r#"{"conn_type": "aws", "extra": {"n": [1, 2.5, null], "b": {"x": true}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.extra_dejson().unwrap(),
            object(json!({"n": [1, 2.5, null], "b": {"x": true}}))
        );
        let c = Connection::from_json(
            "c",
            r#"{"conn_type": "aws", "extra": "{\"region\":\"eu-west-1\"}"}"#,
        )
        .unwrap();
        assert_eq!(c.extra.as_deref(), Some(r#"{"region":"eu-west-1"}"#));
        for absent in [r#""""#, "{}", "null"] {
            let text = format!(r#"{{"conn_type": "aws", "extra": {absent}}}"#);
            assert_eq!(Connection::from_json("c", &text).unwrap().extra, None);
        }
        assert_eq!(
            Connection::from_json("c", r#"{"conn_type": "aws", "extra": "[1]"}"#),
            Err(ConnectionError::NotAnObject {
                part: "`extra`",
                found: "an array"
            })
        );
        let error = Connection::from_json("c", r#"{"conn_type": "aws", "extra": 3}"#).unwrap_err();
        assert!(error.to_string().contains("`extra`"), "{error}");
    }

    #[test]
    fn json_accepts_description_and_nulls() {
        let c = Connection::from_json(
            "c",
            r#"{"conn_type": "http", "description": "the API", "host": null, "port": null}"#,
        )
        .unwrap();
        assert_eq!(c.description.as_deref(), Some("the API"));
        assert_eq!(c.host, None);
        assert_eq!(c.port, None);
    }

    #[test]
    fn json_refuses_unknown_fields() {
        let error =
            Connection::from_json("c", r#"{"conn_type": "http", "hostname": "h"}"#).unwrap_err();
        assert_eq!(error, ConnectionError::UnknownField("hostname".into()));
        assert!(error.to_string().contains("`hostname`"));
        assert_eq!(
            Connection::from_json("c", r#"{"conn_type": "http", "conn_id": "x"}"#),
            Err(ConnectionError::UnknownField("conn_id".into()))
        );
    }

    #[test]
    fn json_port_is_an_integer_from_0_to_65535() {
        let port = |value: &str| {
            Connection::from_json("c", &format!(r#"{{"conn_type": "x", "port": {value}}}"#))
                .map(|c| c.port)
        };
        assert_eq!(port("5432"), Ok(Some(5432)));
        assert_eq!(port("0"), Ok(Some(0)));
        assert_eq!(port("65535"), Ok(Some(65535)));
        assert_eq!(port(r#""5432""#), Ok(Some(5432)));
        assert_eq!(port(r#""""#), Ok(None));
        for bad in ["65536", "-1", "1.5", r#""abc""#, "true", "[1]", "1e3"] {
            let error = port(bad).unwrap_err();
            assert!(error.to_string().contains("`port`"), "{bad}: {error}");
        }
    }

    #[test]
    fn json_needs_a_conn_type() {
        for text in [
            r#"{"host": "h"}"#,
            r#"{"conn_type": null}"#,
            r#"{"conn_type": ""}"#,
        ] {
            let error = Connection::from_json("c", text).unwrap_err();
            assert_eq!(error, ConnectionError::MissingConnTypeField, "{text}");
            assert!(error.to_string().contains("conn_type"));
        }
        assert_eq!(
            Connection::from_json("c", r#"{"conn_type": "postgresql"}"#)
                .unwrap()
                .conn_type,
            "postgres"
        );
    }

    #[test]
    fn json_refuses_wrong_shapes() {
        assert_eq!(
            Connection::from_json("c", "[1]"),
            Err(ConnectionError::NotAnObject {
                part: "the connection JSON",
                found: "an array"
            })
        );
        assert!(matches!(
            Connection::from_json("c", "{nope"),
            Err(ConnectionError::InvalidJson {
                part: "the connection JSON",
                ..
            })
        ));
        assert_eq!(
            Connection::from_json("c", "  "),
            Err(ConnectionError::Empty)
        );
        assert_eq!(
            Connection::from_json("c", r#"{"conn_type": "x", "host": 5}"#),
            Err(ConnectionError::FieldType {
                field: "host",
                expected: "a string or null"
            })
        );
    }

    #[test]
    fn json_errors_never_quote_the_password() {
        for bad in [
            r#"{"conn_type": "x", "password": "hunter2", "port": "hunter2"}"#,
            r#"{"conn_type": "x", "password": "hunter2",}"#,
            r#"{"conn_type": "x", "password": "hunter2", "extra": "hunter2"}"#,
            r#"{"conn_type": "x", "password": "hunter2", "extra": "\"hunter2\""}"#,
            r#"{"conn_type": "x", "password": ["hunter2"]}"#,
            r#"{"password": "hunter2"}"#,
        ] {
            let error = Connection::from_json("c", bad).unwrap_err();
            assert!(!error.to_string().contains("hunter2"), "{bad}: {error}");
        }
    }

    // ---- parse ----

    #[test]
    fn parse_reads_json_or_uri_as_airflow_conn_variables() {
        let json = Connection::parse("c", "  {\"conn_type\": \"http\", \"host\": \"h\"}").unwrap();
        assert_eq!(json.conn_type, "http");
        assert_eq!(json.host.as_deref(), Some("h"));
        let uri = Connection::parse("c", "\nhttp://h\n").unwrap();
        assert_eq!(uri, json);
        assert_eq!(Connection::parse("c", " "), Err(ConnectionError::Empty));
        assert_eq!(
            Connection::parse("c", "{"),
            Err(ConnectionError::InvalidJson {
                part: "the connection JSON",
                line: 1,
                column: 1
            })
        );
    }

    // ---- to_uri ----

    fn conn(conn_type: &str) -> Connection {
        Connection {
            conn_id: "c".into(),
            conn_type: conn_type.into(),
            ..Connection::default()
        }
    }

    #[test]
    fn writes_airflows_get_uri() {
        let c = Connection {
            host: Some("db".into()),
            login: Some("user".into()),
            password: Some("p@ss w/rd".into()),
            port: Some(5432),
            schema: Some("app".into()),
            ..conn("postgres")
        };
        assert_eq!(c.to_uri(), "postgres://user:p%40ss%20w%2Frd@db:5432/app");
        assert_eq!(
            conn("google_cloud_platform").to_uri(),
            "google-cloud-platform://"
        );
        assert_eq!(
            Connection {
                port: Some(5432),
                ..conn("postgres")
            }
            .to_uri(),
            "postgres://@:5432"
        );
        assert_eq!(
            Connection {
                host: Some("https://api.example.com".into()),
                ..conn("http")
            }
            .to_uri(),
            "http://https://api.example.com"
        );
    }

    #[test]
    fn writes_the_airflow_documentation_extras() {
        // Airflow's docs: string extras become query parameters...
        let c = Connection {
            host: Some("myhost.com".into()),
            login: Some("myname".into()),
            password: Some("mypassword".into()),
            extra: Some(r#"{"this_param": "some val", "that_param": "other val*"}"#.into()),
            ..conn("mysql")
        };
        assert_eq!(
            c.to_uri(),
            "mysql://myname:mypassword@myhost.com/?this_param=some+val&that_param=other+val%2A"
        );
        // ...read back the same with or without the `/` before the query.
        let doc_uri =
            "mysql://myname:mypassword@myhost.com?this_param=some+val&that_param=other+val%2A";
        assert_eq!(Connection::from_uri("c", doc_uri).unwrap(), c);

        // ...and any other extra goes whole as `__extra__`.
        let c = Connection {
            host: Some("host/location".into()),
            schema: Some("schema".into()),
            login: Some("user".into()),
            password: Some("password".into()),
            port: Some(1234),
            extra: Some(
                r#"{"my_val": ["list", "of", "values"], "extra": {"nested": {"json": "val"}}}"#
                    .into(),
            ),
            ..conn("scheme")
        };
        assert_eq!(
            c.to_uri(),
            "scheme://user:password@host%2Flocation:1234/schema?__extra__=\
             %7B%22my_val%22%3A+%5B%22list%22%2C+%22of%22%2C+%22values%22%5D%2C+\
             %22extra%22%3A+%7B%22nested%22%3A+%7B%22json%22%3A+%22val%22%7D%7D%7D"
        );
        assert_eq!(Connection::from_uri("c", &c.to_uri()).unwrap(), c);
    }

    #[test]
    fn round_trips_through_the_uri() {
        let conn_types = ["postgres", "google_cloud_platform", "http"];
        let logins = [None, Some("user"), Some("us er@x:y/z"), Some("ünï")];
        let passwords = [
            None,
            Some(""),
            Some("p@ss"),
            Some("a:b/c?d#e%f"),
            Some("with space and +plus+"),
            Some("ünï©ødé 🔑"),
            Some("%41%zz&=;\\\"'"),
        ];
        let hosts = [
            None,
            Some("db"),
            Some("DB.Example.COM"),
            Some("https://api.example.com"),
            Some("https://"),
            Some("://odd"),
            Some("a/b?c#d"),
            Some("::1"),
            Some("höst"),
        ];
        let ports = [None, Some(0), Some(5432), Some(65535)];
        let schemas = [None, Some("app"), Some("a/b c"), Some("%"), Some("0")];
        let extras = [
            None,
            Some(r#"{"a": "1"}"#),
            Some(r#"{"k y": "v&=+%#?", "": "", "ü": "🔑"}"#),
            Some(r#"{"b": "1", "a": "2"}"#),
            Some(r#"{"n": 1, "b": true, "x": null}"#),
            Some(r#"{"nested": {"x": [1, 2]}}"#),
            Some(r#"{"a":"1"}"#),
            Some("{}"),
            Some(r#"{"__extra__": "x"}"#),
            Some(r#"{"a": "1", "a": "2"}"#),
            Some(r#"{"q": "\"quoted\" \\ back"}"#),
        ];
        let mut checked = 0;
        for conn_type in conn_types {
            for login in logins {
                for password in passwords {
                    for host in hosts {
                        for (index, port) in ports.into_iter().enumerate() {
                            // Every schema and extra with every host; ports rotate through them.
                            for (schema, extra) in schemas
                                .iter()
                                .flat_map(|schema| extras.iter().map(move |extra| (schema, extra)))
                                .skip(index)
                                .step_by(ports.len())
                            {
                                let c = Connection {
                                    conn_id: "rt".into(),
                                    conn_type: conn_type.into(),
                                    description: None,
                                    host: host.map(Into::into),
                                    port,
                                    login: login.map(Into::into),
                                    password: password.map(Into::into),
                                    schema: schema.map(Into::into),
                                    extra: extra.map(Into::into),
                                };
                                let text = c.to_uri();
                                assert_eq!(
                                    Connection::from_uri("rt", &text).as_ref(),
                                    Ok(&c),
                                    "{text}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn string_extras_go_as_query_parameters_when_exact() {
        let c = Connection {
            extra: Some(r#"{"k y": "a&b=c+d"}"#.into()),
            ..conn("http")
        };
        assert_eq!(c.to_uri(), "http:///?k+y=a%26b%3Dc%2Bd");
        // Other layouts of the text are kept exactly, whole.
        let c = Connection {
            extra: Some(r#"{"a":"1"}"#.into()),
            ..conn("http")
        };
        assert_eq!(c.to_uri(), "http:///?__extra__=%7B%22a%22%3A%221%22%7D");
    }

    // ---- extra_dejson, conn_id, conn_type ----

    #[test]
    fn extra_dejson_is_the_extra_object() {
        assert_eq!(conn("http").extra_dejson().unwrap(), Map::new());
        let with = |extra: &str| Connection {
            extra: Some(extra.into()),
            ..conn("http")
        };
        assert_eq!(with("").extra_dejson().unwrap(), Map::new());
        assert_eq!(
            with(r#"{"a": 1}"#).extra_dejson().unwrap(),
            object(json!({"a": 1}))
        );
        let error = with("[1]").extra_dejson().unwrap_err();
        assert_eq!(
            error,
            ConnectionError::NotAnObject {
                part: "`extra`",
                found: "an array"
            }
        );
        assert!(error.to_string().contains("`extra`"));
        let error = with("secret-token").extra_dejson().unwrap_err();
        assert!(matches!(
            error,
            ConnectionError::InvalidJson {
                part: "`extra`",
                ..
            }
        ));
        assert!(!error.to_string().contains("secret-token"));
    }

    #[test]
    fn validates_conn_ids() {
        for good in ["a", "my_conn", "My-Conn.2", &"x".repeat(250)] {
            assert_eq!(Connection::validate_conn_id(good), Ok(()), "{good}");
        }
        assert_eq!(
            Connection::validate_conn_id(""),
            Err(ConnectionError::ConnIdEmpty)
        );
        assert_eq!(
            Connection::validate_conn_id(&"x".repeat(251)),
            Err(ConnectionError::ConnIdTooLong { len: 251 })
        );
        let error = Connection::validate_conn_id("my conn").unwrap_err();
        assert_eq!(
            error,
            ConnectionError::ConnIdInvalidChar {
                ch: ' ',
                position: 3
            }
        );
        assert!(error.to_string().contains("letters, digits"), "{error}");
        for bad in ["a/b", "a:b", "é", "a#b", "a@b"] {
            assert!(
                matches!(
                    Connection::validate_conn_id(bad),
                    Err(ConnectionError::ConnIdInvalidChar { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn checks_the_conn_type() {
        assert_eq!(CONN_TYPES.len(), 29);
        for known in CONN_TYPES {
            assert_eq!(conn(known).check_conn_type(), Ok(()));
        }
        let error = conn("nope").check_conn_type().unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("unknown conn_type `nope` (known: http, https, kafka,"),
            "{message}"
        );
        assert!(message.ends_with("imap, sqlite)"), "{message}");
        // The parsers leave the check to callers.
        assert_eq!(uri("my-type://h").conn_type, "my_type");
    }

    // ---- Debug, serde ----

    #[test]
    fn debug_masks_the_password_and_extra() {
        let c = Connection {
            host: Some("db".into()),
            login: Some("user".into()),
            password: Some("hunter2".into()),
            extra: Some(r#"{"token": "tok-123"}"#.into()),
            ..conn("postgres")
        };
        for text in [format!("{c:?}"), format!("{c:#?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("tok-123"), "{text}");
            assert!(text.contains("***"), "{text}");
            assert!(text.contains("\"db\""), "{text}");
            assert!(text.contains("\"user\""), "{text}");
        }
        assert!(format!("{c:?}").contains("password: Some(***)"));
        let text = format!("{:?}", conn("http"));
        assert!(text.contains("password: None"), "{text}");
        assert!(text.contains("extra: None"), "{text}");
    }

    #[test]
    fn serializes_every_field() {
        let c = uri("postgres://user:pw@db:5432/app?a=1");
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Connection>(&text).unwrap(), c);
    }
}
