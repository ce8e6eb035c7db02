//! `var` and `conn` in templates, as Airflow has them: `var('name', default)`,
//! `{{ var.value.name }}`, `{{ var.json.name.field }}`, `conn('id')`, `{{ conn.id.host }}`
//! (with `password` and `extra_dejson`). The environment comes first (`UPDRAFT_VAR_<NAME>`,
//! `UPDRAFT_CONN_<ID>` as an Airflow URI or JSON), then what the store gave the try. Parsing a
//! DAG never looks anything up: lookups happen when a template renders.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Object, Value as JinjaValue};
use minijinja::{Error, ErrorKind, State};
use updraft_secrets::{Connection, Masker};

/// The environment variable that overrides variable `name`.
pub fn variable_env_name(name: &str) -> String {
    format!("UPDRAFT_VAR_{}", name.to_uppercase())
}

/// The environment variable that defines connection `conn_id` (Airflow's `AIRFLOW_CONN_*`).
pub fn connection_env_name(conn_id: &str) -> String {
    Connection::env_var_name(conn_id)
}

fn lookup_error(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// A stored variable or connection as a try got it: its value, or why no key opens it. The
/// reason is raised only when a template reads that one, so one unreadable row fails only the
/// tasks that use it.
pub type Stored<T> = Result<T, String>;

/// `var`: callable, and `var.value` / `var.json`.
#[derive(Debug)]
pub struct Variables {
    pub stored: Arc<BTreeMap<String, Stored<String>>>,
    /// Learns the value of every variable with a sensitive name the templates read.
    pub masker: Arc<Masker>,
}

impl Variables {
    /// The variable's value (env first, then the store), given to the masker when sensitive;
    /// `None` when it is set nowhere, an error when the store cannot open it.
    fn lookup(&self, name: &str) -> Result<Option<String>, Error> {
        let value = match std::env::var(variable_env_name(name)) {
            Ok(value) => value,
            Err(_) => match self.stored.get(name) {
                Some(Ok(value)) => value.clone(),
                Some(Err(why)) => return Err(lookup_error(why.clone())),
                None => return Ok(None),
            },
        };
        self.masker.add_variable(name, &value);
        Ok(Some(value))
    }

    fn missing(name: &str) -> Error {
        lookup_error(format!(
            "variable `{name}` is not set (set env {} or store it: `updraft variables set {name} ...`)",
            variable_env_name(name)
        ))
    }
}

impl Object for Variables {
    fn get_value(self: &Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        let as_json = match key.as_str()? {
            "value" => false,
            "json" => true,
            _ => return None,
        };
        Some(JinjaValue::from_object(VariableValues {
            variables: Arc::clone(self),
            as_json,
        }))
    }

    fn call(self: &Arc<Self>, _: &State<'_, '_>, args: &[JinjaValue]) -> Result<JinjaValue, Error> {
        let (name, default): (String, Option<JinjaValue>) = minijinja::value::from_args(args)?;
        match (self.lookup(&name)?, default) {
            (Some(value), _) => Ok(JinjaValue::from(value)),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(lookup_error(format!(
                "var('{name}'): variable `{name}` is not set (set env {} or give a default)",
                variable_env_name(&name)
            ))),
        }
    }
}

/// `var.value.<name>` (text) and `var.json.<name>` (the value parsed as JSON).
#[derive(Debug)]
struct VariableValues {
    variables: Arc<Variables>,
    as_json: bool,
}

impl Object for VariableValues {
    fn get_value(self: &Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        let name = key.as_str()?;
        let text = match self.variables.lookup(name) {
            Ok(Some(text)) => text,
            Ok(None) => return Some(JinjaValue::from(Variables::missing(name))),
            Err(error) => return Some(JinjaValue::from(error)),
        };
        if !self.as_json {
            return Some(JinjaValue::from(text));
        }
        Some(match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value) => JinjaValue::from_serialize(value),
            Err(error) => JinjaValue::from(lookup_error(format!(
                "var.json.{name}: the value is not JSON ({error})"
            ))),
        })
    }
}

/// `conn`: callable, and `conn.<id>`.
#[derive(Debug)]
pub struct Connections {
    pub stored: Arc<BTreeMap<String, Stored<Connection>>>,
    /// Learns the password and sensitive extras of every connection the templates read.
    pub masker: Arc<Masker>,
}

impl Connections {
    /// The connection `conn_id` (env first, then the store), its secrets given to the masker;
    /// or why there is none.
    pub fn resolve(&self, conn_id: &str) -> Result<Connection, String> {
        let env_name = connection_env_name(conn_id);
        let connection = match std::env::var(&env_name) {
            Ok(text) => {
                Connection::parse(conn_id, &text).map_err(|error| format!("{env_name}: {error}"))?
            }
            Err(_) => self.stored.get(conn_id).cloned().unwrap_or_else(|| {
                Err(format!(
                    "connection `{conn_id}` is not defined (set env {env_name} or add it: `updraft connections add {conn_id} ...`)"
                ))
            })?,
        };
        self.masker.add_connection(&connection);
        Ok(connection)
    }

    /// The connection as templates see it, or why there is none.
    fn lookup(&self, conn_id: &str) -> Result<JinjaValue, Error> {
        let connection = self.resolve(conn_id).map_err(lookup_error)?;
        let extra = connection
            .extra_dejson()
            .map_err(|error| lookup_error(format!("connection `{conn_id}`: {error}")))?;
        let mut fields = serde_json::to_value(&connection)
            .map_err(|error| lookup_error(format!("connection `{conn_id}`: {error}")))?;
        if let Some(fields) = fields.as_object_mut() {
            fields.insert("extra_dejson".into(), serde_json::Value::Object(extra));
        }
        Ok(JinjaValue::from_serialize(fields))
    }
}

impl Object for Connections {
    fn get_value(self: &Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        Some(self.lookup(key.as_str()?).unwrap_or_else(JinjaValue::from))
    }

    fn call(self: &Arc<Self>, _: &State<'_, '_>, args: &[JinjaValue]) -> Result<JinjaValue, Error> {
        let (conn_id,): (String,) = minijinja::value::from_args(args)?;
        self.lookup(&conn_id)
    }
}
