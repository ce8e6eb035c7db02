//! `empty`: does nothing. For joins, placeholders and benchmarks.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::{Operator, OperatorError, TaskContext};

#[derive(Debug, Default)]
pub struct EmptyOperator;

/// `empty` takes no fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyConfig {}

#[async_trait]
impl Operator for EmptyOperator {
    const NAME: &'static str = "empty";
    type Config = EmptyConfig;

    async fn execute(
        &self,
        _config: EmptyConfig,
        _ctx: &TaskContext,
    ) -> Result<Value, OperatorError> {
        Ok(Value::Null)
    }
}
