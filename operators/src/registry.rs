use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// The plugins folder these operators were found in, and the plugins there that did not load.
    plugins: Option<PluginsLoad>,
}

/// What loading the plugins folder left to report: the folder, and each plugin that did not
/// load as `(its manifest, the message)` (the DAG processor stores them as import errors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginsLoad {
    pub folder: PathBuf,
    pub errors: Vec<(PathBuf, String)>,
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

    pub fn set_plugins_load(&mut self, load: PluginsLoad) {
        self.plugins = Some(load);
    }

    /// The plugins folder read into this registry and its broken plugins; `None` when no
    /// folder was read.
    pub fn plugins_load(&self) -> Option<&PluginsLoad> {
        self.plugins.as_ref()
    }
}

/// The registry a long-running process uses, replaced whole when the plugins folder changes:
/// each try and each parse takes the current one; a try already running keeps its own.
#[derive(Clone)]
pub struct SharedRegistry {
    current: Arc<tokio::sync::watch::Sender<Arc<Registry>>>,
}

impl SharedRegistry {
    pub fn new(registry: Arc<Registry>) -> Self {
        SharedRegistry {
            current: Arc::new(tokio::sync::watch::Sender::new(registry)),
        }
    }

    pub fn current(&self) -> Arc<Registry> {
        self.current.borrow().clone()
    }

    pub fn replace(&self, registry: Registry) {
        self.current.send_replace(Arc::new(registry));
    }

    /// Wakes on each [`SharedRegistry::replace`] after the receiver was made.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Registry>> {
        self.current.subscribe()
    }
}

impl From<Registry> for SharedRegistry {
    fn from(registry: Registry) -> Self {
        SharedRegistry::new(Arc::new(registry))
    }
}

impl From<Arc<Registry>> for SharedRegistry {
    fn from(registry: Arc<Registry>) -> Self {
        SharedRegistry::new(registry)
    }
}
