//! The executor's hand-off after a try ends, in two statements (`migrations/0003_handoff.sql`):
//! `updraft_end_try` stores the end and returns the run's task states; the trigger rules run
//! here; `updraft_advance_run` applies the decisions only if the run's states are still those
//! they were made from (checked with the run locked, so as safe as deciding under the lock),
//! queues within max_active_tasks and claims this run's ready tasks for the caller.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use super::decide::{Decided, decide_run, queue_tasks};
use crate::dag::Dag;
use crate::store::{RunState, StoreError, TaskState};

/// A run's task instances: `(id, task_id, state)`, ordered by id.
pub type RunRows = Vec<(i64, String, String)>;

/// Stores a try's end if the row is still `owner`'s; returns the run's task states after it
/// (`None`: the row is no longer ours).
pub async fn end_try(
    pool: &PgPool,
    task_instance_id: i64,
    owner: &str,
    state: TaskState,
    rendered: Option<Value>,
    next_retry: Option<DateTime<Utc>>,
    output: Option<Value>,
) -> Result<Option<RunRows>, StoreError> {
    let rows: RunRows = sqlx::query_as("SELECT * FROM updraft_end_try($1, $2, $3, $4, $5, $6)")
        .bind(task_instance_id)
        .bind(owner)
        .bind(state.as_str())
        .bind(rendered)
        .bind(next_retry)
        .bind(output)
        .fetch_all(pool)
        .await?;
    Ok((!rows.is_empty()).then_some(rows))
}

/// A task instance claimed by the hand-off: `(id, task_id, try_number, max_tries)`.
pub type HandedOff = (i64, String, i32, i32);

/// What `advance_after_try` did.
#[derive(Debug, Default)]
pub struct Advanced {
    /// Tasks of the run claimed for the caller (now `running`, owned by it).
    pub claimed: Vec<HandedOff>,
    /// The run ended with this state (the DAG's next queued runs may start).
    pub finished: Option<RunState>,
}

type AdvanceRow = (
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i32>,
);

/// Decides the run's next tasks from `rows` and applies them; when another process changed the
/// run in between, decides again from the states it returns. Claims up to `claim` of the run's
/// queued tasks for `owner`.
pub async fn advance_after_try(
    pool: &PgPool,
    dag: &Dag,
    dag_run_id: i64,
    mut rows: RunRows,
    owner: &str,
    claim: i32,
) -> Result<Advanced, StoreError> {
    // Each retry means another process moved the run on; they are rare and short.
    for _ in 0..100 {
        let decided = decide_run(dag, &rows);
        let check = Check::new(dag, &rows, &decided);
        let result: Vec<AdvanceRow> = sqlx::query_as(
            "SELECT * FROM updraft_advance_run($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(dag_run_id)
        .bind(&check.none_ids)
        .bind(&check.up_ids)
        .bind(&check.up_cats)
        .bind(&check.pending_ids)
        .bind(&decided.ids)
        .bind(&decided.states)
        .bind(decided.finished.map(RunState::as_str))
        .bind(owner)
        .bind(claim)
        .fetch_all(pool)
        .await?;
        if result.first().is_some_and(|r| r.0 == "gone") {
            return Ok(Advanced::default());
        }
        if result.first().is_some_and(|r| r.0 == "state") {
            rows = result
                .into_iter()
                .filter_map(|(_, id, task_id, state, _, _)| Some((id?, task_id?, state?)))
                .collect();
            continue;
        }
        if result.iter().any(|r| r.0 == "queue") {
            // Scheduled tasks wait for the slot this try freed (now committed).
            queue_tasks(pool, &dag.dag_id).await?;
        }
        let claimed = result
            .into_iter()
            .filter_map(|(_, id, task_id, _, try_number, max_tries)| {
                Some((id?, task_id?, try_number?, max_tries?))
            })
            .collect();
        return Ok(Advanced {
            claimed,
            finished: decided.finished,
        });
    }
    // Leave it to the sweep's stalled-run check rather than spin.
    tracing::warn!(
        dag_run_id,
        "run kept changing during hand-off; the sweep will decide it"
    );
    Ok(Advanced::default())
}

/// What `updraft_advance_run` verifies, with the run locked, before applying decisions made
/// from `rows` (see the function's comment in `migrations/0003_handoff.sql`).
struct Check {
    none_ids: Vec<i64>,
    up_ids: Vec<i64>,
    up_cats: Vec<&'static str>,
    pending_ids: Vec<i64>,
}

/// As `updraft_state_category`: what trigger rules and run ends distinguish.
fn category(state: TaskState) -> &'static str {
    if state == TaskState::None || state.is_finished() {
        state.as_str()
    } else {
        "pending"
    }
}

impl Check {
    fn new(dag: &Dag, rows: &[(i64, String, String)], decided: &Decided) -> Check {
        let state_of = |text: &str| TaskState::from_str(text).unwrap_or(TaskState::Removed);
        let by_task: HashMap<&str, (i64, TaskState)> = rows
            .iter()
            .map(|(id, task_id, state)| (task_id.as_str(), (*id, state_of(state))))
            .collect();
        let mut none_ids = Vec::new();
        let mut up: BTreeMap<i64, &'static str> = BTreeMap::new();
        for (id, task_id, state) in rows {
            if state_of(state) != TaskState::None {
                continue;
            }
            none_ids.push(*id);
            for upstream in dag
                .task(task_id)
                .map(|t| t.upstream.as_slice())
                .unwrap_or(&[])
            {
                if let Some((up_id, up_state)) = by_task.get(upstream.as_str()) {
                    up.insert(*up_id, category(*up_state));
                }
            }
        }
        let decisions: HashMap<i64, &str> = decided
            .ids
            .iter()
            .copied()
            .zip(decided.states.iter().copied())
            .collect();
        let pending_ids = rows
            .iter()
            .filter(|(id, _, state)| {
                let state = decisions.get(id).copied().unwrap_or(state.as_str());
                !state_of(state).is_finished()
            })
            .map(|(id, _, _)| *id)
            .collect();
        none_ids.sort_unstable();
        Check {
            none_ids,
            up_ids: up.keys().copied().collect(),
            up_cats: up.values().copied().collect(),
            pending_ids,
        }
    }
}
