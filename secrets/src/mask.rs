//! Masking: secret values replaced by `***` wherever a try's text is kept (its log, its stored
//! rendered config, its error message). A value becomes secret when a template reveals it: a
//! connection's password, an extra value under a sensitive key, a variable whose key is
//! sensitive (Airflow's rule and list, `DEFAULT_SENSITIVE_FIELDS`).

use std::sync::RwLock;

use serde_json::Value;

pub const MASK: &str = "***";

/// Names whose values are secret, matched case-insensitively anywhere in a key: `api_key`,
/// `X-Api-Key`, `db_password`.
pub const SENSITIVE_NAMES: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "keyfile_dict",
    "service_account",
];

/// Whether a key or variable name holds a secret.
pub fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    SENSITIVE_NAMES
        .iter()
        .any(|sensitive| name.contains(sensitive))
}

/// Values too short to mask without hiding ordinary text (Airflow masks nothing shorter either:
/// a one-letter password would turn every `a` into `***`).
const SHORTEST_SECRET: usize = 3;

/// The secrets revealed to one try, and their masking.
#[derive(Default)]
pub struct Masker {
    secrets: RwLock<Vec<String>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.secrets.read().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Masker").field("secrets", &count).finish()
    }
}

impl Masker {
    pub fn new() -> Masker {
        Masker::default()
    }

    /// Masks `secret` from now on (and each of its lines, as a multi-line value is often logged
    /// line by line).
    pub fn add(&self, secret: &str) {
        let Ok(mut secrets) = self.secrets.write() else {
            return;
        };
        for part in std::iter::once(secret).chain(secret.lines()) {
            let part = part.trim_end_matches('\r');
            if part.chars().count() >= SHORTEST_SECRET && !secrets.iter().any(|s| s == part) {
                secrets.push(part.to_string());
            }
        }
        // Longest first: a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Every string of `value` under a sensitive key, at any depth (a connection's extra).
    pub fn add_sensitive_values(&self, value: &Value) {
        match value {
            Value::Object(entries) => {
                for (key, item) in entries {
                    if is_sensitive(key) {
                        self.add_all_strings(item);
                    } else {
                        self.add_sensitive_values(item);
                    }
                }
            }
            Value::Array(items) => items
                .iter()
                .for_each(|item| self.add_sensitive_values(item)),
            _ => {}
        }
    }

    /// A connection's password and every extra value under a sensitive key. An extra that is
    /// not a JSON object is masked whole.
    pub fn add_connection(&self, connection: &crate::Connection) {
        if let Some(password) = &connection.password {
            self.add(password);
        }
        match connection.extra_dejson() {
            Ok(extra) => self.add_sensitive_values(&Value::Object(extra)),
            Err(_) => {
                if let Some(extra) = &connection.extra {
                    self.add(extra);
                }
            }
        }
    }

    /// A variable's value when its key is sensitive.
    pub fn add_variable(&self, key: &str, value: &str) {
        if is_sensitive(key) {
            self.add(value);
        }
    }

    /// Reads the environment: the secrets of every `UPDRAFT_CONN_*` connection (that parses)
    /// and of every `UPDRAFT_VAR_*` variable with a sensitive name.
    pub fn add_environment(&self) {
        for (name, value) in std::env::vars() {
            if let Some(conn_id) = name.strip_prefix(crate::connection::CONN_ENV_PREFIX) {
                if let Ok(connection) = crate::Connection::parse(&conn_id.to_lowercase(), &value) {
                    self.add_connection(&connection);
                }
            } else if let Some(key) = name.strip_prefix("UPDRAFT_VAR_") {
                self.add_variable(key, &value);
            }
        }
    }

    /// Every string (and number) of `value`, at any depth: a whole value that is secret.
    pub fn add_all_strings(&self, value: &Value) {
        match value {
            Value::String(text) => self.add(text),
            Value::Number(number) => self.add(&number.to_string()),
            Value::Array(items) => items.iter().for_each(|item| self.add_all_strings(item)),
            Value::Object(entries) => entries.values().for_each(|item| self.add_all_strings(item)),
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.read().map(|s| s.is_empty()).unwrap_or(true)
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let Ok(secrets) = self.secrets.read() else {
            return text.to_string();
        };
        let mut masked = text.to_string();
        for secret in secrets.iter() {
            if masked.contains(secret.as_str()) {
                masked = masked.replace(secret.as_str(), MASK);
            }
        }
        masked
    }

    /// Every string of `value` masked, and every value under a sensitive key replaced whole.
    pub fn mask_json(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.mask(text)),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.mask_json(i)).collect()),
            Value::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, item)| {
                        let masked = if is_sensitive(key) && !matches!(item, Value::Null) {
                            Value::String(MASK.to_string())
                        } else {
                            self.mask_json(item)
                        };
                        (key.clone(), masked)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sensitive_names_match_anywhere_in_a_key() {
        for name in [
            "password",
            "DB_PASSWORD",
            "X-Api-Key",
            "apikey",
            "oauth_token",
            "client_secret",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["host", "timeout", "username", "topic"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn revealed_secrets_are_masked_in_text_and_json() {
        let masker = Masker::new();
        masker.add("s3cr3t-pass");
        masker.add("x"); // too short to mask
        masker.add_sensitive_values(
            &json!({"headers": {"Authorization": "Bearer abc123"}, "timeout": "30"}),
        );
        assert_eq!(
            masker.mask("curl -u me:s3cr3t-pass -H 'Authorization: Bearer abc123' x"),
            "curl -u me:*** -H 'Authorization: ***' x"
        );
        assert_eq!(
            masker.mask_json(
                &json!({"cmd": "echo s3cr3t-pass", "api_key": "anything", "n": 30, "timeout": "30"})
            ),
            json!({"cmd": "echo ***", "api_key": "***", "n": 30, "timeout": "30"})
        );
    }

    #[test]
    fn a_multi_line_secret_is_masked_line_by_line_too() {
        let masker = Masker::new();
        masker.add("-----BEGIN KEY-----\nMIIBOgIBAAJBAK\n-----END KEY-----");
        assert_eq!(masker.mask("line: MIIBOgIBAAJBAK"), "line: ***");
    }
}
