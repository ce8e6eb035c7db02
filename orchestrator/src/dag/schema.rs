//! The JSON Schema of the DAG format (`dags/schema.json`), generated from the spec types below
//! and the registered operators' config schemas. Editors use it for completion and checks; the
//! parser stays the authority (a test keeps their key sets equal).

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};
use updraft_operators::Registry;
use updraft_operators::fields::DurationValue;

use super::tasks::TRIGGER_RULES;

/// An Updraft DAG: one per file. See docs/dag-format.md.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, title = "Updraft DAG")]
#[allow(dead_code)]
pub struct DagSpec {
    /// Unique id of the DAG: letters, digits, `_`, `-`, `.`.
    #[schemars(length(min = 1, max = 250), regex(pattern = r"^[A-Za-z0-9_.\-]+$"))]
    dag_id: String,
    description: Option<String>,
    /// `@once`, `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`, a 5-field cron
    /// expression, or null for manual runs only (the default).
    schedule: Option<ScheduleText>,
    /// IANA timezone of the schedule and of dates written without an offset. Default `UTC`.
    timezone: Option<String>,
    /// First logical date; required when `schedule` is set.
    start_date: Option<DateText>,
    /// Last logical date (inclusive).
    end_date: Option<DateText>,
    /// Create the runs missed since `start_date` (default false).
    catchup: Option<bool>,
    /// Runs in flight at once (default 16).
    #[schemars(range(min = 1))]
    max_active_runs: Option<u32>,
    /// Running tasks of this DAG at once, over all its runs (default 16).
    #[schemars(range(min = 1))]
    max_active_tasks: Option<u32>,
    tags: Option<Vec<String>>,
    /// A new DAG starts paused (default true).
    is_paused_upon_creation: Option<bool>,
    /// Run parameters: `params.NAME` in templates; a run's conf overrides them.
    params: Option<BTreeMap<String, ParamSpec>>,
    /// Settings every task inherits; each task may override them.
    default_args: Option<DefaultArgsSpec>,
    /// The tasks, in any order; `upstream` gives the dependencies.
    #[schemars(length(min = 1))]
    tasks: Vec<TaskRef>,
}

/// Owner and retry settings, as `default_args` or per task.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DefaultArgsSpec {
    /// Shown in the UI (default `airflow`).
    owner: Option<String>,
    /// Tries after the first failed one (default 0).
    retries: Option<u32>,
    /// Wait before a retry (default 5m).
    retry_delay: Option<DurationValue>,
    /// Double the wait at each retry (default false).
    retry_exponential_backoff: Option<bool>,
    /// Cap of the exponential wait.
    max_retry_delay: Option<DurationValue>,
    /// A try running longer fails (default: no limit).
    execution_timeout: Option<DurationValue>,
}

/// The keys every task has besides its operator's fields.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TaskCommonSpec {
    /// Unique within the DAG: letters, digits, `_`, `-`, `.`.
    #[schemars(length(min = 1, max = 250), regex(pattern = r"^[A-Za-z0-9_.\-]+$"))]
    id: String,
    /// What the task does; its other keys are this operator's fields.
    operator: String,
    /// Ids of the tasks this one waits for.
    upstream: Option<Vec<String>>,
    /// When the task may run, given its upstream tasks' states (default `all_success`).
    trigger_rule: Option<TriggerRuleName>,
    owner: Option<String>,
    retries: Option<u32>,
    retry_delay: Option<DurationValue>,
    retry_exponential_backoff: Option<bool>,
    max_retry_delay: Option<DurationValue>,
    execution_timeout: Option<DurationValue>,
}

/// A param: `{default, type, description, enum}`, or just its default value.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ParamDetails {
    default: Option<Value>,
    /// Checked against the default and the run's conf (default: from the default's type).
    #[serde(rename = "type")]
    kind: Option<ParamTypeName>,
    description: Option<String>,
    /// The values allowed; the trigger form offers them as a list.
    #[serde(rename = "enum")]
    choices: Option<Vec<Value>>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ParamTypeName {
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
    Any,
}

pub struct ParamSpec;

impl JsonSchema for ParamSpec {
    fn schema_name() -> Cow<'static, str> {
        "Param".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                generator.subschema_for::<ParamDetails>(),
                { "type": ["string", "number", "integer", "boolean", "array", "null"], "description": "the default value" }
            ]
        })
    }
}

struct ScheduleText;

impl JsonSchema for ScheduleText {
    fn schema_name() -> Cow<'static, str> {
        "Schedule".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "enum": ["@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually"] },
                { "type": "string", "pattern": r"^\s*\S+(\s+\S+){4}\s*$", "description": "minute hour day-of-month month day-of-week" }
            ]
        })
    }
}

struct DateText;

impl JsonSchema for DateText {
    fn schema_name() -> Cow<'static, str> {
        "Date".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "`2023-09-03`, `2023-09-03 10:00` or RFC 3339; without an offset, in the DAG's timezone",
            "pattern": r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?$"
        })
    }
}

struct TriggerRuleName;

impl JsonSchema for TriggerRuleName {
    fn schema_name() -> Cow<'static, str> {
        "TriggerRule".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = TRIGGER_RULES.iter().map(|(name, _)| *name).collect();
        json_schema!({ "enum": names })
    }
}

/// A task; its schema is built from the registry in [`dag_schema`].
struct TaskRef;

impl JsonSchema for TaskRef {
    fn schema_name() -> Cow<'static, str> {
        "Task".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({})
    }
}

/// The whole schema, with one `if operator == X then X's fields` branch per operator.
pub fn dag_schema(registry: &Registry) -> Value {
    let mut root = schemars::schema_for!(DagSpec).to_value();
    let common = schemars::schema_for!(TaskCommonSpec).to_value();
    let mut defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let common_defs = common
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    defs.extend(common_defs);
    let common_properties = common
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();

    let names = registry.names();
    let mut branches = Vec::new();
    for name in &names {
        let Some(operator) = registry.get(name) else {
            continue;
        };
        let mut config = operator.config_schema().to_value();
        let prefix = format!("{name}.");
        rewrite_refs(&mut config, &prefix);
        if let Some(Value::Object(own_defs)) = config.get("$defs") {
            for (def, schema) in own_defs {
                defs.insert(format!("{prefix}{def}"), schema.clone());
            }
        }
        let mut properties = common_properties.clone();
        if let Some(Value::Object(fields)) = config.get("properties") {
            properties.extend(fields.clone());
        }
        properties.insert("operator".into(), json!({ "const": name }));
        let mut required = vec![json!("id"), json!("operator")];
        if let Some(Value::Array(fields)) = config.get("required") {
            required.extend(fields.iter().cloned());
        }
        let mut branch = Map::new();
        branch.insert("type".into(), json!("object"));
        if let Some(description) = config.get("description") {
            branch.insert("description".into(), description.clone());
        }
        branch.insert("properties".into(), Value::Object(properties));
        branch.insert("required".into(), Value::Array(required));
        branch.insert("additionalProperties".into(), json!(false));
        defs.insert(format!("task.{name}"), Value::Object(branch));
        branches.push(json!({
            "if": { "properties": { "operator": { "const": name } }, "required": ["operator"] },
            "then": { "$ref": format!("#/$defs/task.{name}") }
        }));
    }
    let mut operator_schema = common_properties
        .get("operator")
        .cloned()
        .unwrap_or_else(|| json!({}));
    operator_schema["enum"] = json!(names);
    defs.insert(
        "Task".into(),
        json!({
            "type": "object",
            "description": "A task: the common keys plus its operator's own fields.",
            "required": ["id", "operator"],
            "properties": { "id": common_properties.get("id").cloned().unwrap_or_default(), "operator": operator_schema },
            "allOf": branches
        }),
    );
    root["$defs"] = Value::Object(defs);
    root
}

fn rewrite_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = item
                    && let Some(name) = target.strip_prefix("#/$defs/")
                {
                    *target = format!("#/$defs/{prefix}{name}");
                } else {
                    rewrite_refs(item, prefix);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, prefix)),
        _ => {}
    }
}

/// The schema as committed in `dags/schema.json` (pretty, ending with a newline).
pub fn dag_schema_text(registry: &Registry) -> String {
    let mut text = serde_json::to_string_pretty(&dag_schema(registry)).unwrap_or_default();
    text.push('\n');
    text
}
