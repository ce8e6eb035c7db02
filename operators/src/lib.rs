//! Operator plugins: one trait, a registry, one file per operator.
//!
//! An operator receives its rendered config and a [`TaskContext`] (log sink, cancellation,
//! run/task identity, a renderer for fields it renders itself) and returns a JSON output, which
//! becomes the task's XCom. It knows nothing of the database or the scheduler.
//!
//! Adding an operator: write `src/<name>.rs` with a type implementing [`Operator`], then add one
//! line to the `builtin_operators!` list below.

mod context;
mod registry;

pub use context::{LogSink, Renderer, StdoutLog, TaskContext, TaskIdentity};
pub use registry::{OperatorKind, Registry};

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
    /// The operator's own YAML fields; `#[serde(deny_unknown_fields)]` so typos are errors.
    type Config: DeserializeOwned + JsonSchema + Send;

    /// Runs one try.
    async fn execute(&self, config: Self::Config, ctx: &TaskContext) -> Result<Value, OperatorError>;
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
    empty::EmptyOperator,
}
