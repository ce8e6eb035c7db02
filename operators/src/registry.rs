use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::Schema;
use serde_json::Value;

use crate::{Operator, OperatorError, TaskContext};

/// An operator with its config type erased, as the registry holds it.
#[async_trait]
pub trait OperatorKind: Send + Sync {
    fn name(&self) -> &str;
    fn deferred_fields(&self) -> Vec<&str>;
    fn shell_fields(&self) -> Vec<&str>;
    /// Top-level config fields whose rendered values are secrets, masked like a connection's
    /// password in what the try leaves behind (a plugin declares them).
    fn secret_fields(&self) -> Vec<&str> {
        Vec::new()
    }
    /// The JSON Schema of the operator's config.
    fn config_schema(&self) -> Schema;
    /// Checks a config's shape (field names and types) before any rendering.
    fn validate(&self, config: &Value) -> Result<(), String>;
    async fn execute(&self, config: Value, ctx: &TaskContext) -> Result<Value, OperatorError>;
}

#[async_trait]
impl<O: Operator> OperatorKind for O {
    fn name(&self) -> &str {
        O::NAME
    }

    fn deferred_fields(&self) -> Vec<&str> {
        O::DEFERRED_FIELDS.to_vec()
    }

    fn shell_fields(&self) -> Vec<&str> {
        O::SHELL_FIELDS.to_vec()
    }

    fn config_schema(&self) -> Schema {
        schemars::schema_for!(O::Config)
    }

    fn validate(&self, config: &Value) -> Result<(), String> {
        let config = serde_json::from_value::<O::Config>(config.clone())
            .map_err(|error| error.to_string())?;
        O::check(&config)
    }

    async fn execute(&self, config: Value, ctx: &TaskContext) -> Result<Value, OperatorError> {
        let config = serde_json::from_value::<O::Config>(config)
            .map_err(|error| OperatorError::Config(error.to_string()))?;
        O::check(&config).map_err(OperatorError::Config)?;
        Operator::execute(self, config, ctx).await
    }
}

/// Operators by name.
#[derive(Default, Clone)]
pub struct Registry {
    operators: BTreeMap<String, Arc<dyn OperatorKind>>,
    /// Operators of plugins that did not load, and why.
    unavailable: BTreeMap<String, String>,
}

impl Registry {
    pub fn register(&mut self, operator: impl OperatorKind + 'static) {
        self.register_shared(Arc::new(operator));
    }

    /// Adds an operator held elsewhere too (a plugin's); one with the same name is replaced.
    pub fn register_shared(&mut self, operator: Arc<dyn OperatorKind>) {
        self.operators.insert(operator.name().to_string(), operator);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn OperatorKind>> {
        self.operators.get(name)
    }

    /// Records that `name` would come from a plugin that did not load, and why.
    pub fn mark_unavailable(&mut self, name: &str, reason: String) {
        self.unavailable.insert(name.to_string(), reason);
    }

    /// Why `name` is not registered, when a broken plugin would have provided it.
    pub fn unavailable(&self, name: &str) -> Option<&str> {
        self.unavailable.get(name).map(String::as_str)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.operators.keys().map(String::as_str).collect()
    }
}
