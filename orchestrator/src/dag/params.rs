//! A run's `params`: each param's default, overridden by the run's conf.

use serde_json::{Map, Value};

use super::parse::{type_matches, type_name};
use super::{Dag, Param};

/// A conf value that does not fit its param.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("conf `{name}` = {value} does not match param `{name}`: {expected}")]
pub struct ParamError {
    pub name: String,
    pub value: Value,
    /// What the param takes: "type integer", "one of [\"a\", \"b\"]".
    pub expected: String,
}

/// Why `value` does not fit `param`, if it does not (null means "no value" and always fits).
pub fn misfit(param: &Param, value: &Value) -> Option<String> {
    if !type_matches(param.kind, value) {
        return Some(format!("type {}", type_name(param.kind)));
    }
    match &param.choices {
        Some(choices) if !value.is_null() && !choices.contains(value) => {
            Some(format!("one of {}", Value::Array(choices.clone())))
        }
        _ => None,
    }
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
            Some(value) => match misfit(param, value) {
                None => value.clone(),
                Some(expected) => {
                    return Err(ParamError {
                        name: name.clone(),
                        value: value.clone(),
                        expected,
                    });
                }
            },
            None => param.default.clone().unwrap_or(Value::Null),
        };
        params.insert(name.clone(), value);
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::dag::ParamType;

    fn dag_with(param: Param) -> Dag {
        let mut dag = Dag::default();
        dag.params.insert("region".into(), param);
        dag
    }

    #[test]
    fn a_conf_value_must_be_of_the_type_and_among_the_choices() {
        let dag = dag_with(Param {
            default: Some(json!("eu")),
            kind: ParamType::String,
            description: None,
            choices: Some(vec![json!("eu"), json!("us")]),
        });
        let conf = |value: Value| json!({ "region": value }).as_object().cloned().unwrap();
        assert_eq!(
            resolve_params(&dag, &conf(json!("us"))).unwrap()["region"],
            "us"
        );
        assert_eq!(resolve_params(&dag, &Map::new()).unwrap()["region"], "eu");
        let error = resolve_params(&dag, &conf(json!("asia"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "conf `region` = \"asia\" does not match param `region`: one of [\"eu\",\"us\"]"
        );
        let error = resolve_params(&dag, &conf(json!(3))).unwrap_err();
        assert_eq!(error.expected, "type string");
    }
}
