//! A run's `params`: each param's default, overridden by the run's conf.

use serde_json::{Map, Value};

use super::Dag;
use super::parse::type_matches;

/// A conf value that does not fit its param.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("conf `{name}` = {value} does not match param type {kind}")]
pub struct ParamError {
    pub name: String,
    pub value: Value,
    pub kind: String,
}

/// Each param's default, overridden by the conf value of the same name (Airflow's
/// `dag_run_conf_overrides_params`); a conf value of the wrong type is an error.
pub fn resolve_params(
    dag: &Dag,
    conf: &Map<String, Value>,
) -> Result<Map<String, Value>, ParamError> {
    let mut params = Map::new();
    for (name, param) in &dag.params {
        let value = match conf.get(name) {
            Some(value) if type_matches(param.kind, value) => value.clone(),
            Some(value) => {
                return Err(ParamError {
                    name: name.clone(),
                    value: value.clone(),
                    kind: format!("{:?}", param.kind),
                });
            }
            None => param.default.clone().unwrap_or(Value::Null),
        };
        params.insert(name.clone(), value);
    }
    Ok(params)
}
