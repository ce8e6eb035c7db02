//! Airflow 2 REST API shapes, built from the store's read-models.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use updraft_orchestrator::dag::{RunType, TaskState};
use updraft_orchestrator::store::dags::DagView;
use updraft_orchestrator::store::runs::DagRunRow;
use updraft_orchestrator::store::task_instances::TaskInstanceView;
use utoipa::ToSchema;

/// Airflow's words for a schedule.
pub fn timetable_description(schedule: Option<&str>, timezone: &str) -> String {
    match schedule {
        None => "Never, external triggers only".to_string(),
        Some("@once") => "Once, as soon as possible".to_string(),
        Some(expression) => format!("{expression} ({timezone})"),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Tag {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleInterval {
    #[serde(rename = "__type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DagJson {
    pub dag_id: String,
    pub dag_display_name: String,
    pub root_dag_id: Option<String>,
    pub is_paused: bool,
    pub is_active: bool,
    pub is_subdag: bool,
    pub last_parsed_time: Option<DateTime<Utc>>,
    pub last_pickled: Option<DateTime<Utc>>,
    pub last_expired: Option<DateTime<Utc>>,
    pub scheduler_lock: Option<bool>,
    pub pickle_id: Option<String>,
    pub default_view: String,
    pub fileloc: String,
    pub file_token: String,
    pub owners: Vec<String>,
    pub description: Option<String>,
    pub schedule_interval: Option<ScheduleInterval>,
    pub timetable_description: String,
    pub tags: Vec<Tag>,
    pub max_active_tasks: i32,
    pub max_active_runs: i32,
    pub max_consecutive_failed_dag_runs: i32,
    pub has_task_concurrency_limits: bool,
    pub has_import_errors: bool,
    pub next_dagrun: Option<DateTime<Utc>>,
    pub next_dagrun_data_interval_start: Option<DateTime<Utc>>,
    pub next_dagrun_data_interval_end: Option<DateTime<Utc>>,
    pub next_dagrun_create_after: Option<DateTime<Utc>>,
}

impl From<&DagView> for DagJson {
    fn from(row: &DagView) -> DagJson {
        DagJson {
            dag_id: row.dag_id.clone(),
            dag_display_name: row.dag_id.clone(),
            root_dag_id: None,
            is_paused: row.is_paused,
            is_active: row.is_active,
            is_subdag: false,
            last_parsed_time: Some(row.last_parsed_at),
            last_pickled: None,
            last_expired: None,
            scheduler_lock: None,
            pickle_id: None,
            default_view: "grid".into(),
            fileloc: row.fileloc.clone(),
            file_token: URL_SAFE_NO_PAD.encode(row.fileloc.as_bytes()),
            owners: row.owner_list(),
            description: row.description.clone(),
            schedule_interval: row.schedule.as_ref().map(|value| ScheduleInterval {
                kind: "CronExpression".into(),
                value: value.clone(),
            }),
            timetable_description: timetable_description(row.schedule.as_deref(), &row.timezone),
            tags: row
                .tags
                .iter()
                .map(|name| Tag { name: name.clone() })
                .collect(),
            max_active_tasks: row.max_active_tasks,
            max_active_runs: row.max_active_runs,
            max_consecutive_failed_dag_runs: 0,
            has_task_concurrency_limits: false,
            has_import_errors: row.has_import_errors,
            next_dagrun: row.next_dagrun,
            next_dagrun_data_interval_start: row.next_dagrun_interval_start,
            next_dagrun_data_interval_end: row.next_dagrun_interval_end,
            next_dagrun_create_after: row.next_dagrun_create_after,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DagCollection {
    pub dags: Vec<DagJson>,
    pub total_entries: i64,
}

/// `GET /dags/{dag_id}/details`: the DAG plus what its latest parsed version says.
#[derive(Debug, Serialize, ToSchema)]
pub struct DagDetailJson {
    #[serde(flatten)]
    pub dag: DagJson,
    pub timezone: String,
    pub catchup: bool,
    pub orientation: String,
    pub concurrency: i32,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub dag_run_timeout: Option<Value>,
    pub doc_md: Option<String>,
    #[schema(value_type = Object)]
    pub params: Value,
    pub is_paused_upon_creation: Option<bool>,
    pub last_parsed: Option<DateTime<Utc>>,
    pub template_search_path: Option<Vec<String>>,
    pub render_template_as_native_obj: bool,
    pub dataset_expression: Option<Value>,
}

/// Airflow's serialised `Param` objects from our params.
pub fn airflow_params(dag: &updraft_orchestrator::dag::Dag) -> Value {
    let mut out = Map::new();
    for (name, param) in &dag.params {
        let kind = serde_json::to_value(param.kind).unwrap_or(Value::Null);
        out.insert(
            name.clone(),
            json!({
                "__class": "airflow.models.param.Param",
                "value": param.default.clone().unwrap_or(Value::Null),
                "description": param.description,
                "schema": if kind == json!("any") { json!({}) } else { json!({"type": kind}) },
            }),
        );
    }
    Value::Object(out)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DagRunJson {
    pub dag_run_id: String,
    pub dag_id: String,
    pub logical_date: DateTime<Utc>,
    pub execution_date: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub last_scheduling_decision: Option<DateTime<Utc>>,
    pub run_type: String,
    pub state: String,
    pub external_trigger: bool,
    #[schema(value_type = Object)]
    pub conf: Value,
    pub note: Option<String>,
}

impl From<DagRunRow> for DagRunJson {
    fn from(row: DagRunRow) -> DagRunJson {
        DagRunJson {
            external_trigger: row.run_type == RunType::Manual,
            dag_run_id: row.run_id,
            dag_id: row.dag_id,
            logical_date: row.logical_date,
            execution_date: row.logical_date,
            start_date: row.start_date,
            end_date: row.end_date,
            data_interval_start: row.data_interval_start,
            data_interval_end: row.data_interval_end,
            last_scheduling_decision: Some(row.updated_at),
            run_type: row.run_type.to_string(),
            state: row.state.to_string(),
            conf: row.conf,
            note: row.note,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DagRunCollection {
    pub dag_runs: Vec<DagRunJson>,
    pub total_entries: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskInstanceJson {
    pub task_id: String,
    pub task_display_name: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub execution_date: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    /// `null` while the scheduler has not decided (our state `none`).
    pub state: Option<String>,
    pub try_number: i32,
    pub map_index: i32,
    pub max_tries: i32,
    pub hostname: String,
    pub unixname: String,
    pub pool: String,
    pub pool_slots: i32,
    pub queue: Option<String>,
    pub priority_weight: Option<i32>,
    pub operator: Option<String>,
    pub queued_when: Option<String>,
    pub pid: Option<i32>,
    pub executor: Option<String>,
    pub executor_config: String,
    pub sla_miss: Option<Value>,
    pub rendered_map_index: Option<String>,
    #[schema(value_type = Object)]
    pub rendered_fields: Value,
    pub trigger: Option<Value>,
    pub triggerer_job: Option<Value>,
    pub note: Option<String>,
}

impl From<TaskInstanceView> for TaskInstanceJson {
    fn from(row: TaskInstanceView) -> TaskInstanceJson {
        // `owner` is the claiming process, `hostname:pid:random`.
        let mut owner = row.owner.as_deref().unwrap_or("").split(':');
        let hostname = owner.next().unwrap_or("").to_string();
        let pid = owner.next().and_then(|pid| pid.parse().ok());
        TaskInstanceJson {
            task_display_name: row.task_id.clone(),
            task_id: row.task_id,
            dag_id: row.dag_id,
            dag_run_id: row.run_id,
            execution_date: row.logical_date,
            start_date: row.start_date,
            end_date: row.end_date,
            duration: row.duration,
            state: (row.state != TaskState::None).then(|| row.state.to_string()),
            try_number: row.try_number,
            map_index: -1,
            max_tries: row.max_tries,
            hostname,
            unixname: std::env::var("USER").unwrap_or_default(),
            pool: "default_pool".into(),
            pool_slots: 1,
            queue: Some("default".into()),
            priority_weight: Some(row.priority_weight),
            operator: Some(row.operator),
            queued_when: row.queued_at.map(|date| date.to_rfc3339()),
            pid,
            executor: None,
            executor_config: "{}".into(),
            sla_miss: None,
            rendered_map_index: None,
            rendered_fields: row.rendered_config.unwrap_or_else(|| json!({})),
            trigger: None,
            triggerer_job: None,
            note: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskInstanceCollection {
    pub task_instances: Vec<TaskInstanceJson>,
    pub total_entries: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskInstanceReference {
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub execution_date: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskInstanceReferenceCollection {
    pub task_instances: Vec<TaskInstanceReference>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportErrorJson {
    pub import_error_id: i64,
    pub timestamp: DateTime<Utc>,
    pub filename: String,
    pub stack_trace: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportErrorCollection {
    pub import_errors: Vec<ImportErrorJson>,
    pub total_entries: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct XComEntry {
    pub key: String,
    pub timestamp: DateTime<Utc>,
    pub execution_date: DateTime<Utc>,
    pub map_index: i32,
    pub task_id: String,
    pub dag_id: String,
    /// The value as JSON text (Airflow returns a string); with `deserialize=true`, the JSON itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub value: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct XComCollection {
    pub xcom_entries: Vec<XComEntry>,
    pub total_entries: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogJson {
    pub content: String,
    pub continuation_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusJson {
    pub status: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerStatus {
    pub status: Option<String>,
    pub latest_scheduler_heartbeat: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthJson {
    pub metadatabase: StatusJson,
    pub scheduler: SchedulerStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionJson {
    pub version: String,
    pub git_version: Option<String>,
}

// ---- request bodies ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagPatch {
    pub is_paused: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagRunCreate {
    pub dag_run_id: Option<String>,
    pub logical_date: Option<DateTime<Utc>>,
    pub execution_date: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub conf: Option<Value>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagRunStatePatch {
    #[schema(value_type = SettableRunState)]
    pub state: String,
}

/// Airflow's "set a task instance's state": `new_state` is `success` or `failed`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskInstanceStatePatch {
    /// Report what would change, change nothing: true unless set, as in Airflow.
    #[serde(default = "yes")]
    pub dry_run: bool,
    #[schema(value_type = SettableTaskState)]
    pub new_state: String,
}

/// The states a task instance may be set to.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum SettableTaskState {
    Success,
    Failed,
}

/// The states a run may be set to; other values are refused with `400`. (For the document only:
/// the handler checks the text, to answer with Airflow's message.)
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum SettableRunState {
    Success,
    Failed,
    Queued,
}

/// Airflow's `ClearTaskInstances`. Unsupported switches are refused when set, never ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearTaskInstancesBody {
    #[serde(default = "yes")]
    pub dry_run: bool,
    pub task_ids: Option<Vec<String>>,
    pub dag_run_id: Option<String>,
    #[serde(default = "yes")]
    pub only_failed: bool,
    #[serde(default)]
    pub only_running: bool,
    #[serde(default)]
    pub include_downstream: bool,
    #[serde(default)]
    pub include_upstream: bool,
    #[serde(default)]
    pub include_future: bool,
    #[serde(default)]
    pub include_past: bool,
    #[serde(default)]
    pub include_subdags: bool,
    #[serde(default)]
    pub include_parentdag: bool,
    #[serde(default = "yes")]
    pub reset_dag_runs: bool,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

fn yes() -> bool {
    true
}
