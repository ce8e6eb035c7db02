//! Waiting on runs and their task instances, read through the store. Shared by the
//! orchestrator's and the CLI's integration tests (the CLI's includes this file by path).

use std::time::Duration;

use sqlx::PgPool;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::store::runs;
use updraft_orchestrator::store::task_instances::{self, TaskInstanceRow};

/// Runs as the store reads them, for waiting on them.
pub struct Runs {
    /// Their states, in no particular order.
    pub states: Vec<RunState>,
    /// Their task instances, by id.
    pub task_instances: Vec<TaskInstanceRow>,
}

impl Runs {
    pub async fn read(pool: &PgPool, ids: &[i64]) -> Runs {
        Runs {
            states: runs::states(pool, ids).await.expect("run states"),
            task_instances: task_instances::of_runs(pool, ids)
                .await
                .expect("task instances"),
        }
    }

    /// How many of the runs are in `state`.
    pub fn count(&self, state: RunState) -> usize {
        self.states.iter().filter(|seen| **seen == state).count()
    }

    /// How many task instances `which` selects.
    pub fn tis(&self, which: impl Fn(&TaskInstanceRow) -> bool) -> usize {
        self.task_instances.iter().filter(|ti| which(ti)).count()
    }

    /// Each task instance as (task, state), by task id.
    #[allow(dead_code)] // not every including crate asks
    pub fn task_states(&self) -> Vec<(&str, TaskState)> {
        let mut states: Vec<(&str, TaskState)> = self
            .task_instances
            .iter()
            .map(|ti| (ti.task_id.as_str(), ti.state))
            .collect();
        states.sort_unstable_by_key(|(task_id, _)| *task_id);
        states
    }

    /// The task instance of `task_id` (the runs waited on have one each).
    #[allow(dead_code)] // not every including crate asks
    pub fn ti(&self, task_id: &str) -> Option<&TaskInstanceRow> {
        self.task_instances.iter().find(|ti| ti.task_id == task_id)
    }
}

/// The states, and each task instance as (run, task, state, try).
impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tis: Vec<_> = self
            .task_instances
            .iter()
            .map(|ti| (&ti.run_id, &ti.task_id, ti.state, ti.try_number))
            .collect();
        write!(f, "runs {:?}, task instances {tis:?}", self.states)
    }
}

/// Waits until `done` holds for the runs `ids` and their task instances, and returns what it
/// saw; on timeout the failure names `what` and shows the runs' states and every task instance.
pub async fn wait_for_runs(
    pool: &PgPool,
    what: &str,
    ids: &[i64],
    limit: Duration,
    done: impl Fn(&Runs) -> bool,
) -> Runs {
    testkit::eventually(what, limit, async || {
        let seen = Runs::read(pool, ids).await;
        if done(&seen) { Ok(seen) } else { Err(seen) }
    })
    .await
}
