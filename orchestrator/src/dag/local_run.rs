//! Runs a DAG once in-process, without the scheduler or database (`updraft dags test`):
//! tasks in dependency order, one at a time, one try each, trigger rules applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
pub use tokio_util::sync::CancellationToken;
use updraft_operators::{LogSink, Registry};

use super::model::{Dag, Schedule, TriggerRule};
use crate::task_runner::{TemplateInputs, resolve_params, run_try};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalState {
    Success,
    Failed,
    UpstreamFailed,
    Skipped,
}

impl LocalState {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalState::Success => "success",
            LocalState::Failed => "failed",
            LocalState::UpstreamFailed => "upstream_failed",
            LocalState::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalTaskResult {
    pub task_id: String,
    pub state: LocalState,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    pub output: Option<Value>,
    pub error: Option<String>,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis() as u64)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalRun {
    pub run_id: String,
    pub logical_date: DateTime<Utc>,
    pub tasks: Vec<LocalTaskResult>,
}

impl LocalRun {
    pub fn succeeded(&self) -> bool {
        self.tasks
            .iter()
            .all(|task| matches!(task.state, LocalState::Success | LocalState::Skipped))
    }
}

/// Gives the log sink of a task, by task id.
pub type LogFor = Box<dyn Fn(&str) -> Arc<dyn LogSink> + Send + Sync>;

pub struct LocalRunOptions {
    pub conf: Map<String, Value>,
    pub logical_date: DateTime<Utc>,
    /// Variables as the store would give them (`UPDRAFT_VAR_*` env vars still win).
    pub variables: BTreeMap<String, String>,
    /// Where each task's log lines go, by task id.
    pub log_for: LogFor,
    /// Called when a task finishes (to print progress as it happens).
    pub on_task_done: Box<dyn Fn(&LocalTaskResult) + Send + Sync>,
}

impl LocalRunOptions {
    /// Logs to stdout prefixed with `[task_id] `, nothing printed on completion, logical date now.
    pub fn new(conf: Map<String, Value>) -> LocalRunOptions {
        LocalRunOptions {
            conf,
            logical_date: Utc::now().trunc_subsecs(0),
            variables: BTreeMap::new(),
            log_for: Box::new(|task_id| {
                Arc::new(updraft_operators::StdoutLog {
                    prefix: format!("[{task_id}] "),
                })
            }),
            on_task_done: Box::new(|_| {}),
        }
    }
}

/// `--logical-date`: a date as in DAG files (`2023-09-03`, `2023-09-03 10:00`, RFC 3339), UTC
/// unless it has an offset.
pub fn parse_logical_date(text: &str) -> Result<DateTime<Utc>, String> {
    super::values::parse_date(text, chrono_tz::Tz::UTC)
}

/// Runs every task once; `Err` only for a conf that does not fit the DAG's params.
pub async fn run_locally(
    dag: &Dag,
    registry: &Registry,
    options: LocalRunOptions,
    cancel: CancellationToken,
) -> Result<LocalRun, String> {
    let params = resolve_params(dag, &options.conf)?;
    let logical_date = options.logical_date;
    let data_interval_end = match &dag.schedule {
        Schedule::Cron { .. } => dag
            .schedule
            .cron()
            .and_then(|cron| {
                cron.after(&logical_date.with_timezone(&dag.timezone))
                    .next()
            })
            .map_or(logical_date, |end| end.with_timezone(&Utc)),
        Schedule::Manual | Schedule::Once => logical_date,
    };
    let run_id = format!("test__{}", logical_date.to_rfc3339());
    let mut states: BTreeMap<String, LocalState> = BTreeMap::new();
    let mut xcom: BTreeMap<String, Value> = BTreeMap::new();
    let mut results = Vec::with_capacity(dag.tasks.len());
    for task_id in dag.topological_order() {
        let Some(task) = dag.task(task_id) else {
            continue;
        };
        let upstream: Vec<LocalState> = task
            .upstream
            .iter()
            .filter_map(|id| states.get(id).copied())
            .collect();
        let started = Instant::now();
        let result = match decide(task.trigger_rule, &upstream) {
            Some(state) => LocalTaskResult {
                task_id: task_id.into(),
                state,
                duration: Duration::ZERO,
                output: None,
                error: None,
            },
            None => {
                let inputs = TemplateInputs {
                    dag_id: dag.dag_id.clone(),
                    run_id: run_id.clone(),
                    task_id: task_id.into(),
                    try_number: 1,
                    logical_date,
                    data_interval_start: logical_date,
                    data_interval_end,
                    params: params.clone(),
                    conf: options.conf.clone(),
                    xcom: xcom.clone(),
                    variables: options.variables.clone(),
                };
                let outcome = run_try(
                    task,
                    registry,
                    &inputs,
                    (options.log_for)(task_id),
                    cancel.clone(),
                )
                .await;
                let duration = started.elapsed();
                match outcome {
                    Ok(output) => {
                        xcom.insert(task_id.into(), output.clone());
                        LocalTaskResult {
                            task_id: task_id.into(),
                            state: LocalState::Success,
                            duration,
                            output: Some(output),
                            error: None,
                        }
                    }
                    Err(error) => LocalTaskResult {
                        task_id: task_id.into(),
                        state: LocalState::Failed,
                        duration,
                        output: None,
                        error: Some(error.to_string()),
                    },
                }
            }
        };
        states.insert(task_id.into(), result.state);
        (options.on_task_done)(&result);
        results.push(result);
    }
    Ok(LocalRun {
        run_id,
        logical_date,
        tasks: results,
    })
}

/// `None`: the task runs. `Some(state)`: it does not, and ends in that state. Upstream tasks
/// are all finished here (tasks run one at a time in dependency order).
pub fn decide(rule: TriggerRule, upstream: &[LocalState]) -> Option<LocalState> {
    use LocalState::*;
    if upstream.is_empty() {
        return None;
    }
    let count = |wanted: &[LocalState]| {
        upstream
            .iter()
            .filter(|state| wanted.contains(state))
            .count()
    };
    let failed = count(&[Failed, UpstreamFailed]);
    let succeeded = count(&[Success]);
    let skipped = count(&[Skipped]);
    let all = upstream.len();
    match rule {
        TriggerRule::AllSuccess if failed > 0 => Some(UpstreamFailed),
        TriggerRule::AllSuccess if skipped > 0 => Some(Skipped),
        TriggerRule::AllSuccess => None,
        TriggerRule::AllFailed if failed == all => None,
        TriggerRule::AllFailed => Some(Skipped),
        TriggerRule::AllDone | TriggerRule::Always => None,
        TriggerRule::OneSuccess if succeeded > 0 => None,
        TriggerRule::OneSuccess if failed > 0 => Some(UpstreamFailed),
        TriggerRule::OneSuccess => Some(Skipped),
        TriggerRule::OneFailed if failed > 0 => None,
        TriggerRule::OneFailed => Some(Skipped),
        TriggerRule::NoneFailed if failed > 0 => Some(UpstreamFailed),
        TriggerRule::NoneFailed => None,
        TriggerRule::NoneFailedMinOneSuccess if failed > 0 => Some(UpstreamFailed),
        TriggerRule::NoneFailedMinOneSuccess if succeeded > 0 => None,
        TriggerRule::NoneFailedMinOneSuccess => Some(Skipped),
        TriggerRule::NoneSkipped if skipped > 0 => Some(Skipped),
        TriggerRule::NoneSkipped => None,
    }
}

#[cfg(test)]
mod tests {
    use super::LocalState::*;
    use super::*;

    #[test]
    fn trigger_rules_decide_from_upstream_states() {
        let cases: &[(TriggerRule, &[LocalState], Option<LocalState>)] = &[
            (TriggerRule::AllSuccess, &[Success, Success], None),
            (
                TriggerRule::AllSuccess,
                &[Success, Failed],
                Some(UpstreamFailed),
            ),
            (
                TriggerRule::AllSuccess,
                &[UpstreamFailed],
                Some(UpstreamFailed),
            ),
            (TriggerRule::AllSuccess, &[Success, Skipped], Some(Skipped)),
            (TriggerRule::AllFailed, &[Failed, UpstreamFailed], None),
            (TriggerRule::AllFailed, &[Failed, Success], Some(Skipped)),
            (TriggerRule::AllDone, &[Failed, Skipped], None),
            (TriggerRule::OneSuccess, &[Failed, Success], None),
            (
                TriggerRule::OneSuccess,
                &[Failed, Failed],
                Some(UpstreamFailed),
            ),
            (TriggerRule::OneFailed, &[Success, Failed], None),
            (TriggerRule::OneFailed, &[Success], Some(Skipped)),
            (TriggerRule::NoneFailed, &[Success, Skipped], None),
            (TriggerRule::NoneFailed, &[Failed], Some(UpstreamFailed)),
            (
                TriggerRule::NoneFailedMinOneSuccess,
                &[Skipped, Skipped],
                Some(Skipped),
            ),
            (
                TriggerRule::NoneFailedMinOneSuccess,
                &[Skipped, Success],
                None,
            ),
            (TriggerRule::NoneSkipped, &[Failed, Success], None),
            (TriggerRule::NoneSkipped, &[Skipped], Some(Skipped)),
            (TriggerRule::Always, &[UpstreamFailed], None),
        ];
        for (rule, upstream, expected) in cases {
            assert_eq!(decide(*rule, upstream), *expected, "{rule:?} {upstream:?}");
        }
    }
}
