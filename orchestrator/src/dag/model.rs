//! The validated DAG: what the parser produces and the scheduler runs.
//!
//! A `Dag` serialises to JSON as the DAG version snapshot stored with every run; the task graph
//! is rebuilt from the `upstream` lists on load.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A validated DAG.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dag {
    pub dag_id: String,
    pub description: Option<String>,
    pub schedule: Schedule,
    pub timezone: Tz,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub max_active_runs: u32,
    pub max_active_tasks: u32,
    pub tags: Vec<String>,
    pub is_paused_upon_creation: bool,
    pub owner: String,
    pub params: BTreeMap<String, Param>,
    /// Tasks in file order.
    pub tasks: Vec<Task>,
    #[serde(skip)]
    graph: TaskGraph,
}

/// Task index graph: node weights are indexes into `Dag::tasks`, edges go upstream → downstream.
pub type TaskGraph = DiGraph<usize, ()>;

impl Dag {
    /// Builds a DAG whose `tasks` have already been checked: unique ids, known upstream ids, no cycle.
    pub fn new(mut dag: Dag) -> Dag {
        dag.graph = build_graph(&dag.tasks);
        dag
    }

    /// Loads a stored version snapshot.
    pub fn from_snapshot(snapshot: &Value) -> Result<Dag, serde_json::Error> {
        serde_json::from_value::<Dag>(snapshot.clone()).map(Dag::new)
    }

    pub fn snapshot(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn graph(&self) -> &TaskGraph {
        &self.graph
    }

    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.task_id == task_id)
    }

    /// Task ids directly downstream of `task_id`.
    pub fn downstream(&self, task_id: &str) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|task| task.upstream.iter().any(|up| up == task_id))
            .map(|task| task.task_id.as_str())
            .collect()
    }

    /// Airflow's default priority weights (`weight_rule: downstream`), in `tasks` order: one
    /// for the task plus one for every task downstream of it, however far. Executors claim
    /// heavier tasks first, so a run's next steps do not wait behind other runs' leaves.
    pub fn priority_weights(&self) -> Vec<i32> {
        let mut weights = vec![1; self.tasks.len()];
        for start in self.graph.node_indices() {
            let mut reachable = petgraph::visit::Dfs::new(&self.graph, start);
            let mut count = 0i32;
            while reachable.next(&self.graph).is_some() {
                count = count.saturating_add(1);
            }
            weights[self.graph[start]] = count;
        }
        weights
    }

    /// Task ids in an order where every task follows its upstream tasks.
    pub fn topological_order(&self) -> Vec<&str> {
        petgraph::algo::toposort(&self.graph, None)
            .unwrap_or_default()
            .into_iter()
            .map(|node: NodeIndex| self.tasks[self.graph[node]].task_id.as_str())
            .collect()
    }
}

impl Default for Dag {
    fn default() -> Self {
        Dag {
            dag_id: String::new(),
            description: None,
            schedule: Schedule::Manual,
            timezone: Tz::UTC,
            start_date: None,
            end_date: None,
            catchup: false,
            max_active_runs: 16,
            max_active_tasks: 16,
            tags: Vec::new(),
            is_paused_upon_creation: true,
            owner: "airflow".to_string(),
            params: BTreeMap::new(),
            tasks: Vec::new(),
            graph: TaskGraph::default(),
        }
    }
}

fn build_graph(tasks: &[Task]) -> TaskGraph {
    let mut graph = TaskGraph::with_capacity(tasks.len(), tasks.len());
    let nodes: Vec<NodeIndex> = (0..tasks.len())
        .map(|index| graph.add_node(index))
        .collect();
    for (index, task) in tasks.iter().enumerate() {
        for upstream in &task.upstream {
            if let Some(up) = tasks.iter().position(|t| &t.task_id == upstream) {
                graph.add_edge(nodes[up], nodes[index], ());
            }
        }
    }
    graph
}

/// When runs are created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// `schedule: null`: manual runs only.
    Manual,
    /// `@once`: one run, at `start_date`.
    Once,
    /// A 5-field crontab or a preset, as written, and its 6-field form for the `cron` crate.
    Cron {
        expression: String,
        seconds_form: String,
    },
}

impl Schedule {
    /// The `cron` crate's schedule for a `Cron`; `None` for manual and `@once`.
    pub fn cron(&self) -> Option<cron::Schedule> {
        match self {
            Schedule::Cron { seconds_form, .. } => seconds_form.parse().ok(),
            Schedule::Manual | Schedule::Once => None,
        }
    }

    /// The schedule as the user wrote it (`None` for manual only).
    pub fn as_written(&self) -> Option<&str> {
        match self {
            Schedule::Manual => None,
            Schedule::Once => Some("@once"),
            Schedule::Cron { expression, .. } => Some(expression),
        }
    }
}

/// A run parameter: `params.NAME` in templates, overridable by a run's conf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub default: Option<Value>,
    #[serde(rename = "type")]
    pub kind: ParamType,
    pub description: Option<String>,
    /// The values allowed (JSON Schema's `enum`), when restricted; the trigger form's select.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
    Any,
}

/// One task of a DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: String,
    pub operator: String,
    pub upstream: Vec<String>,
    pub trigger_rule: TriggerRule,
    pub owner: String,
    pub retry: RetryPolicy,
    #[serde(with = "duration_millis_opt")]
    pub execution_timeout: Option<Duration>,
    /// The operator's own fields, templates not yet rendered.
    pub config: Value,
}

/// Airflow's retry settings, after defaults and per-task overrides are merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub retries: u32,
    #[serde(with = "duration_millis")]
    pub retry_delay: Duration,
    pub exponential_backoff: bool,
    #[serde(with = "duration_millis_opt")]
    pub max_retry_delay: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            retry_delay: Duration::from_secs(300),
            exponential_backoff: false,
            max_retry_delay: None,
        }
    }
}

/// Airflow's trigger rules: when a task may run, given its upstream tasks' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    #[default]
    AllSuccess,
    AllFailed,
    AllDone,
    OneSuccess,
    OneFailed,
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
    Always,
}

mod duration_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

mod duration_millis_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_some(&(duration.as_millis() as u64)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(|millis| millis.map(Duration::from_millis))
    }
}
