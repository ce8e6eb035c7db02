use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::Schema;
use serde_json::Value;

use crate::{Operator, OperatorError, TaskContext};

/// An operator with its config type erased, as the registry holds it.
#[async_trait]
pub trait OperatorKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn deferred_fields(&self) -> &'static [&'static str];
    fn shell_fields(&self) -> &'static [&'static str];
    /// The JSON Schema of the operator's config.
    fn config_schema(&self) -> Schema;
    /// Checks a config's shape (field names and types) before any rendering.
    fn validate(&self, config: &Value) -> Result<(), String>;
    async fn execute(&self, config: Value, ctx: &TaskContext) -> Result<Value, OperatorError>;
}

#[async_trait]
impl<O: Operator> OperatorKind for O {
    fn name(&self) -> &'static str {
        O::NAME
    }

    fn deferred_fields(&self) -> &'static [&'static str] {
        O::DEFERRED_FIELDS
    }

    fn shell_fields(&self) -> &'static [&'static str] {
        O::SHELL_FIELDS
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
    operators: BTreeMap<&'static str, Arc<dyn OperatorKind>>,
}

impl Registry {
    pub fn register(&mut self, operator: impl OperatorKind + 'static) {
        self.operators.insert(operator.name(), Arc::new(operator));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn OperatorKind>> {
        self.operators.get(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.operators.keys().copied().collect()
    }
}
