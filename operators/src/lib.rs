//! Operator plugins: one trait, a registry, one file per operator.
//!
//! An operator receives its rendered config and a [`TaskContext`] (log sink, cancellation,
//! run/task identity, a renderer for fields it renders itself) and returns a JSON output, which
//! becomes the task's XCom. It knows nothing of the database or the scheduler.
//!
//! Adding an operator: write `src/<name>.rs` with a type implementing [`Operator`], then add one
//! line to the `builtin_operators!` list below. Operators in other languages come as plugins
//! ([`plugins`]): a program speaking a JSON protocol, found at start-up.

mod context;
pub mod fields;
pub mod plugins;
mod process;
mod registry;
mod statements;

pub use context::{
    DagRunStatus, DagRuns, LogSink, LoggedXCom, NewDagRun, NoDagRuns, Renderer, StdoutLog,
    TaskContext, TaskIdentity, TaskServices, XComSink,
};
pub use registry::{OperatorKind, PluginsLoad, Registry, SharedRegistry};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One kind of task: the unit of work a DAG's task names with `operator:`.
#[async_trait]
pub trait Operator: Send + Sync + 'static {
    /// The name written in YAML (`operator: http`).
    const NAME: &'static str;
    /// Top-level config fields the operator renders itself (e.g. per item of a `for_each`);
    /// the orchestrator leaves their templates untouched.
    const DEFERRED_FIELDS: &'static [&'static str] = &[];
    /// Top-level config fields a shell runs: every value a template puts in them is
    /// shell-quoted unless marked `| safe` (a `conf` value must never become a command).
    const SHELL_FIELDS: &'static [&'static str] = &[];
    /// The operator's own YAML fields; `#[serde(deny_unknown_fields)]` so typos are errors.
    type Config: DeserializeOwned + JsonSchema + Send;

    /// Checks across fields that serde cannot express (e.g. `command` or `script`, not both).
    /// Runs at parse time on the unrendered config and again before each try.
    fn check(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// Runs one try.
    async fn execute(
        &self,
        config: Self::Config,
        ctx: &TaskContext,
    ) -> Result<Value, OperatorError>;
}

/// Why a try failed. Every message names what it was doing (URL, topic, command).
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("invalid config: {0}")]
    Config(String),
    #[error("template error: {0}")]
    Template(String),
    #[error("{0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
}

macro_rules! builtin_operators {
    ($($module:ident :: $operator:ident),* $(,)?) => {
        $(mod $module; pub use $module::$operator;)*

        /// Every built-in operator, by name.
        pub fn builtin_registry() -> Registry {
            let mut registry = Registry::default();
            $(registry.register($module::$operator::default());)*
            registry
        }
    };
}

builtin_operators! {
    cql::CqlOperator,
    empty::EmptyOperator,
    http::HttpOperator,
    kafka_publish::KafkaPublishOperator,
    shell::ShellOperator,
    sql::SqlOperator,
    trigger_dag::TriggerDagOperator,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A minimal valid config per operator; a new operator without one fails the test below.
    fn minimal_config(name: &str) -> Option<Value> {
        Some(match name {
            "cql" => json!({"conn_id": "cassandra", "cql": "SELECT now() FROM system.local"}),
            "empty" => json!({}),
            "http" => json!({"url": "http://127.0.0.1/"}),
            "kafka_publish" => json!({"topic": "t", "value": {"a": 1}}),
            "shell" => json!({"command": "true"}),
            "sql" => json!({"conn_id": "warehouse", "sql": "SELECT 1"}),
            "trigger_dag" => json!({"trigger_dag_id": "other"}),
            _ => return None,
        })
    }

    #[test]
    fn the_registry_lists_every_builtin_operator() {
        assert_eq!(
            builtin_registry().names(),
            [
                "cql",
                "empty",
                "http",
                "kafka_publish",
                "shell",
                "sql",
                "trigger_dag"
            ]
        );
    }

    #[test]
    fn every_config_schema_is_produced_and_unknown_fields_are_rejected() {
        let registry = builtin_registry();
        for name in registry.names() {
            let operator = registry.get(name).unwrap();
            let schema = operator.config_schema().to_value();
            assert_eq!(schema["type"], "object", "{name}: {schema}");
            assert_eq!(schema["additionalProperties"], false, "{name}: {schema}");

            let mut config =
                minimal_config(name).unwrap_or_else(|| panic!("add a minimal config for `{name}`"));
            operator
                .validate(&config)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            config["no_such_field"] = json!(1);
            let error = operator.validate(&config).unwrap_err();
            assert!(
                error.contains("unknown field `no_such_field`"),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn deferred_fields_are_config_fields() {
        let registry = builtin_registry();
        for name in registry.names() {
            let operator = registry.get(name).unwrap();
            let schema = operator.config_schema().to_value();
            for field in operator.deferred_fields() {
                assert!(
                    schema["properties"].get(field).is_some(),
                    "{name}: deferred `{field}` is not a field"
                );
            }
        }
        assert_eq!(
            registry.get("kafka_publish").unwrap().deferred_fields(),
            ["key", "value", "headers"]
        );
    }
}
