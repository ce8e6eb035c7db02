//! The trigger form: a field per param of the DAG (its type, default and description, a list
//! when it has `enum`), more conf as JSON, and the run id; its handler turns the fields into
//! the run's conf.

use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use serde_json::{Map, Value};
use updraft_orchestrator::dag::{Dag, Param, ParamType};
use updraft_orchestrator::engine::trigger::TriggerRequest;
use updraft_orchestrator::store::versions;

use super::{PageResult, enc};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::extract::ApiPath;
use crate::users::Role;

/// The form field of a param is named `param:NAME`.
const PREFIX: &str = "param:";

/// One field of the form.
pub struct ParamField {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `json` (array, object, any): what the
    /// browser checks before sending.
    pub kind: &'static str,
    pub description: String,
    /// The default as the field shows it.
    pub value: String,
    /// For `enum`: each choice as (JSON text, label, selected).
    pub choices: Vec<(String, String, bool)>,
}

pub fn fields(dag: &Dag) -> Vec<ParamField> {
    dag.params
        .iter()
        .map(|(name, param)| {
            let default = param.default.clone().unwrap_or(Value::Null);
            ParamField {
                name: name.clone(),
                kind: kind_of(param.kind),
                description: param.description.clone().unwrap_or_default(),
                value: match (&default, param.kind) {
                    (Value::Null, _) => String::new(),
                    (Value::String(text), _) => text.clone(),
                    (other, _) => other.to_string(),
                },
                choices: param
                    .choices
                    .iter()
                    .flatten()
                    .map(|choice| {
                        let label = match choice {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        };
                        (choice.to_string(), label, *choice == default)
                    })
                    .collect(),
            }
        })
        .collect()
}

fn kind_of(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "string",
        ParamType::Integer => "integer",
        ParamType::Number => "number",
        ParamType::Boolean => "boolean",
        ParamType::Array | ParamType::Object | ParamType::Any => "json",
    }
}

/// The value of a param's field; `None` for an empty field whose param is not a string (the
/// default applies).
fn value_of(name: &str, param: &Param, text: &str) -> Result<Option<Value>, AppError> {
    let bad = |why: String| AppError::BadRequest(format!("param `{name}`: {why}"));
    if param.choices.is_some() {
        return serde_json::from_str(text)
            .map(Some)
            .map_err(|_| bad(format!("`{text}` is not one of its choices")));
    }
    if text.trim().is_empty() && param.kind != ParamType::String {
        return Ok(None);
    }
    let value = match param.kind {
        ParamType::String => Value::String(text.to_string()),
        ParamType::Integer => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad(format!("`{text}` is not a whole number")))?,
        ParamType::Number => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| bad(format!("`{text}` is not a number")))?,
        ParamType::Boolean => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => return Err(bad(format!("`{other}` is not true or false"))),
        },
        ParamType::Array | ParamType::Object | ParamType::Any => {
            serde_json::from_str(text).map_err(|error| bad(format!("not valid JSON: {error}")))?
        }
    };
    Ok(Some(value))
}

/// `POST /dags/{dag_id}/trigger`: the run's conf is the `conf` JSON object with each param's
/// field on top (the engine then checks types and choices, as for the API).
pub async fn trigger(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(dag_id): ApiPath<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    user.check_csrf(field("csrf_token").unwrap_or_default())?;
    user.require(Role::Op)?;
    if form.iter().any(|(_, value)| value.contains('\0')) {
        return Err(AppError::BadRequest("the form must not contain NUL characters".into()).into());
    }
    let text = field("conf").unwrap_or_default();
    if text.to_ascii_lowercase().contains("\\u0000") {
        return Err(AppError::BadRequest("conf must not contain NUL characters".into()).into());
    }
    let mut conf = if text.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(AppError::BadRequest("conf must be a JSON object".into()).into()),
            Err(error) => {
                return Err(
                    AppError::BadRequest(format!("conf is not valid JSON: {error}")).into(),
                );
            }
        }
    };
    if form.iter().any(|(key, _)| key.starts_with(PREFIX)) {
        let version = versions::latest_with_source(&state.pool, &dag_id)
            .await
            .map_err(AppError::from)?;
        let params = version
            .as_ref()
            .and_then(|version| version.dag.as_ref())
            .map(|dag| dag.params.clone())
            .unwrap_or_default();
        for (key, text) in &form {
            let Some(name) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let param = params
                .get(name)
                .ok_or_else(|| AppError::BadRequest(format!("the DAG has no param `{name}`")))?;
            if let Some(value) = value_of(name, param, text)? {
                conf.insert(name.to_string(), value);
            }
        }
    }
    let request = TriggerRequest {
        run_id: field("run_id")
            .filter(|id| !id.trim().is_empty())
            .map(str::to_string),
        logical_date: None,
        conf,
        note: None,
    };
    let run_id = crate::api::runs::trigger(&state.pool, &user, &dag_id, request).await?;
    Ok(Redirect::to(&format!("/dags/{}/runs/{}", enc(&dag_id), enc(&run_id))).into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn param(kind: ParamType, choices: Option<Vec<Value>>) -> Param {
        Param {
            default: None,
            kind,
            description: None,
            choices,
        }
    }

    #[test]
    fn fields_become_values_of_their_param_type() {
        let value = |kind, text| value_of("p", &param(kind, None), text);
        assert_eq!(value(ParamType::Integer, " 42 ").unwrap(), Some(json!(42)));
        assert_eq!(value(ParamType::Number, "2.5").unwrap(), Some(json!(2.5)));
        assert_eq!(
            value(ParamType::Boolean, "false").unwrap(),
            Some(json!(false))
        );
        assert_eq!(
            value(ParamType::Object, "{\"a\":1}").unwrap(),
            Some(json!({"a": 1}))
        );
        assert_eq!(value(ParamType::String, "").unwrap(), Some(json!("")));
        assert_eq!(
            value(ParamType::Integer, "").unwrap(),
            None,
            "the default applies"
        );
        let error = value(ParamType::Integer, "4.5").unwrap_err().to_string();
        assert!(
            error.contains("param `p`: `4.5` is not a whole number"),
            "{error}"
        );
        let choices = param(ParamType::String, Some(vec![json!("eu"), json!("us")]));
        assert_eq!(
            value_of("p", &choices, "\"us\"").unwrap(),
            Some(json!("us"))
        );
    }
}
