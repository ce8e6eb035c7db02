//! Advance: after something changed in a run (it started, a try ended, it was cleared), decide
//! its `none` tasks ([`decide_run`]) and apply the decisions, queue what is ready within
//! `max_active_tasks`, end the run when nothing is left, and start the DAG's next queued runs.
//!
//! Two paths apply decisions, with the same rules:
//! - [`decide_run_fully`]: the run locked, all its states read, every decision applied and its
//!   unfinished count set. The sweep's stalled runs, clears, runs re-queued with their history,
//!   and any run where a decision finished a task (skips and upstream failures propagate) take
//!   this path. A fresh run needs neither: [`start_queued_runs`] creates its task instances in
//!   the states of its first decision.
//! - [`after_try`]: the executor's hand-off, without the run lock. The end of a try lowered the
//!   run's unfinished count under the run row's lock, so the ends of one run are serialised
//!   there; an end that finds another one committed after the states it read reads them again.
//!   So the last end before a task becomes decidable always sees every upstream state, and the
//!   end that brings the count to zero ends the run. Decisions are final once taken (trigger
//!   rules decide early only when later states cannot change the outcome), and a clear or a
//!   mark voids those in flight (`clear_number`).
//!
//! Ready tasks of a DAG whose `max_active_tasks` may bind are admitted under the DAG's queueing
//! lock: waiting ones first (oldest first), then the new ones, into the free slots; the rest
//! wait as `scheduled`. Lock order: the DAG's queueing lock, then a run's.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::PgPool;

use super::batch::Batcher;
use super::decide::{decide_run, inputs_of_downstream};
use crate::dag::{Dag, RunState, TaskState};
use crate::store::task_instances::{
    self, Decided, Decisions, RunDecisions, TaskStateRow, TryEnded,
};
use crate::store::{DagCache, StoreError, channels, dags, notify, runs};

/// Whether `max_active_tasks` can ever bind: it cannot when all the runs `max_active_runs`
/// allows, with every task active at once, stay within it. Unbounded DAGs hand off without
/// the DAG's queueing lock.
pub fn limit_may_bind(max_active_tasks: i32, max_active_runs: i32, tasks: usize) -> bool {
    let most_active = i64::from(max_active_runs).saturating_mul(tasks as i64);
    most_active > i64::from(max_active_tasks)
}

/// The states of `ready` tasks: the first `claim` claimed by the caller (`running`), then
/// `queued` while `slots` last (`None`: no limit), the rest left waiting (`scheduled`).
pub fn admit(ready: usize, claim: usize, slots: Option<i64>) -> Vec<TaskState> {
    let slots = slots.map_or(usize::MAX, |slots| usize::try_from(slots).unwrap_or(0));
    (0..ready)
        .map(|index| match index {
            index if index >= slots => TaskState::Scheduled,
            index if index < claim => TaskState::Running,
            _ => TaskState::Queued,
        })
        .collect()
}

/// The downstream tasks of `task_id` that its end in `state` alone decides, to claim with the
/// end itself: when every downstream task has `task_id` as its only upstream task, the rules
/// run every one of them, and the DAG's `max_active_tasks` cannot bind (so no slot is
/// counted). `None` otherwise: the end hands off after it is stored ([`after_try`]).
pub fn decided_with_end<'d>(dag: &'d Dag, task_id: &str, state: TaskState) -> Option<Vec<&'d str>> {
    let downstream = dag.downstream(task_id);
    let bounded = limit_may_bind(
        i32::try_from(dag.max_active_tasks).unwrap_or(i32::MAX),
        i32::try_from(dag.max_active_runs).unwrap_or(i32::MAX),
        dag.tasks.len(),
    );
    if bounded || !state.is_finished() || downstream.is_empty() {
        return None;
    }
    let mut view: HashMap<&str, TaskState> = HashMap::from([(task_id, state)]);
    for down in &downstream {
        let only_this = dag
            .task(down)
            .is_some_and(|task| task.upstream.len() == 1 && task.upstream[0] == task_id);
        if !only_this {
            return None;
        }
        view.insert(down, TaskState::None);
    }
    let decisions = decide_run(dag, &view);
    let all_run = decisions.tasks.len() == downstream.len()
        && decisions
            .tasks
            .iter()
            .all(|(_, state)| *state == TaskState::Scheduled);
    all_run.then(|| decisions.tasks.iter().map(|(task, _)| *task).collect())
}

/// What a hand-off did.
#[derive(Debug, Default)]
pub struct Advanced {
    /// Tasks of the run claimed for the caller (now `running`, owned by it).
    pub claimed: Vec<Decided>,
    /// The run ended. The DAG's next queued runs are started by the schedulers, woken by the
    /// end's `updraft_runs` notification: one start per DAG at a time in each process, where
    /// every run's end starting them itself queued on the DAG row's lock.
    pub run_ended: Option<RunState>,
}

/// A try that ended, as the hand-off sees it.
pub struct EndedTry<'a> {
    pub dag: &'a Dag,
    pub task_id: &'a str,
    /// The state the try ended in.
    pub state: TaskState,
    /// What `end_try` read when it stored the end.
    pub ended: TryEnded,
    /// The end carried the decisions of its downstream tasks ([`decided_with_end`]).
    pub decided_with_end: bool,
}

/// The hand-off after a try ended: decides the downstream tasks and applies the decisions; of
/// the tasks that become ready, up to `free_slots` are claimed for `owner` in the same write.
pub async fn after_try(
    pool: &PgPool,
    cache: &DagCache,
    applier: &Applier,
    end: EndedTry<'_>,
    owner: &str,
    free_slots: usize,
) -> Result<Advanced, StoreError> {
    let EndedTry {
        dag,
        task_id,
        state,
        ended,
        decided_with_end,
    } = end;
    let bounded = limit_may_bind(
        ended.max_active_tasks,
        ended.max_active_runs,
        dag.tasks.len(),
    );
    if ended.closes_run {
        return Ok(Advanced {
            claimed: Vec::new(),
            run_ended: close_run(pool, cache, dag, &ended).await?,
        });
    }
    if decided_with_end {
        if ended.decided_downstream.is_empty() {
            // None applied: the run stopped, those tasks were changed (cleared, marked), or
            // the DAG's limits were edited. Rare; the whole run is decided again.
            return full_decision(pool, cache, &dag.dag_id, ended.dag_run_id).await;
        }
        return Ok(Advanced {
            claimed: ended.decided_downstream,
            run_ended: None,
        });
    }
    // A retry, a run stopped meanwhile (marked, cleared), a run another end of the same
    // statement closes, or a leaf: nothing to decide here. (The slot a try frees in a DAG
    // whose max_active_tasks may bind is handed on by the executor's end writer.)
    let inputs = inputs_of_downstream(dag, task_id);
    if !state.is_finished() || ended.unfinished_now.is_none_or(|n| n <= 0) || inputs.is_empty() {
        return Ok(Advanced::default());
    }
    let rows = if ended.missed_an_end() {
        // Another end committed after our snapshot: read the inputs again, after our commit.
        task_instances::states_of(pool, ended.dag_run_id, &inputs).await?
    } else {
        ended.rows
    };
    let mut view: HashMap<&str, TaskState> = rows
        .iter()
        .map(|row| (row.task_id.as_str(), row.state))
        .collect();
    view.insert(task_id, state);
    let decisions = decide_run(dag, &view);
    if decisions.finishes_a_task() {
        // Skips and upstream failures propagate beyond what we read: decide the whole run.
        return full_decision(pool, cache, &dag.dag_id, ended.dag_run_id).await;
    }
    let ids: HashMap<&str, i64> = rows
        .iter()
        .map(|row| (row.task_id.as_str(), row.id))
        .collect();
    let ready: Vec<i64> = decisions
        .tasks
        .iter()
        .filter_map(|(ready, _)| ids.get(ready).copied())
        .collect();
    if ready.is_empty() {
        return Ok(Advanced::default());
    }
    let decided = if bounded {
        let mut tx = pool.begin().await?;
        task_instances::lock_queue(&mut tx, &dag.dag_id).await?;
        // After our end's commit: the slot it freed counts.
        let admitted = task_instances::queue_waiting_locked(&mut tx, &dag.dag_id).await?;
        let targets = admit(ready.len(), free_slots, Some(admitted.left()));
        let apply = decisions_of(&ready, &targets);
        let decided = task_instances::apply_decisions(
            &mut *tx,
            ended.dag_run_id,
            ended.clear_number,
            owner,
            &apply,
        )
        .await?;
        if admitted.queued > 0 || decided.iter().any(|t| t.state == TaskState::Queued) {
            notify(&mut *tx, channels::QUEUED, &dag.dag_id).await?;
        }
        tx.commit().await?;
        decided
    } else {
        let decisions = decisions_of(&ready, &admit(ready.len(), free_slots, None));
        let decided = applier
            .apply(RunDecisions {
                dag_run_id: ended.dag_run_id,
                clear_number: ended.clear_number,
                decisions,
            })
            .await?;
        if decided.iter().any(|task| task.state == TaskState::Queued) {
            notify(pool, channels::QUEUED, &dag.dag_id).await?;
        }
        decided
    };
    Ok(Advanced {
        claimed: decided
            .into_iter()
            .filter(|task| task.state == TaskState::Running)
            .collect(),
        run_ended: None,
    })
}

/// The hand-offs of one process (their decisions taken, no lock needed), applied in batches:
/// the downstream decisions of many ended tries cost one statement.
#[derive(Clone)]
pub struct Applier {
    batcher: Batcher<RunDecisions, Result<Vec<Decided>, StoreError>>,
}

impl Applier {
    /// Starts the writer; tasks decided `running` are claimed for `owner`.
    pub fn start(pool: PgPool, owner: String) -> Applier {
        let batcher = Batcher::start(256, move |runs: Vec<RunDecisions>| {
            let (pool, owner) = (pool.clone(), owner.clone());
            async move { apply_batch(&pool, &owner, runs).await }
        });
        Applier { batcher }
    }

    async fn apply(&self, run: RunDecisions) -> Result<Vec<Decided>, StoreError> {
        self.batcher.submit(run).await.unwrap_or_else(|| {
            Err(StoreError::Shared(
                "the executor's hand-off writer has stopped".into(),
            ))
        })
    }
}

/// What the hand-off writer does with a batch: one statement; each task changed goes back to
/// the first request that decided it so (two ends of one run may both decide a task: it changes once). When the statement
/// fails, each request alone.
pub async fn apply_batch(
    pool: &PgPool,
    owner: &str,
    runs: Vec<RunDecisions>,
) -> Vec<Result<Vec<Decided>, StoreError>> {
    let mut decided: HashMap<i64, Decided> =
        match task_instances::apply_decisions_of_runs(pool, owner, &runs).await {
            Ok(decided) => decided.into_iter().map(|task| (task.id, task)).collect(),
            Err(error) if runs.len() == 1 => return vec![Err(error.into())],
            Err(error) => {
                tracing::warn!(%error, runs = runs.len(), "applying the hand-offs one by one");
                let mut answers = Vec::with_capacity(runs.len());
                for run in &runs {
                    let one = task_instances::apply_decisions_of_runs(
                        pool,
                        owner,
                        std::slice::from_ref(run),
                    )
                    .await;
                    answers.push(one.map_err(StoreError::from));
                }
                return answers;
            }
        };
    // A task `running` goes back to a request that asked for it `running` (one that has a
    // slot for it), never to one that asked for it `queued`.
    runs.iter()
        .map(|run| {
            let decisions = &run.decisions;
            Ok(decisions
                .ids
                .iter()
                .zip(&decisions.states)
                .filter_map(|(id, state)| {
                    let applied = decided.get(id)?.state;
                    (applied == *state).then(|| decided.remove(id)).flatten()
                })
                .collect())
        })
        .collect()
}

fn decisions_of(ids: &[i64], states: &[TaskState]) -> Decisions {
    Decisions {
        ids: ids.to_vec(),
        states: states.to_vec(),
    }
}

/// The end that emptied a run ends it. Every task is finished, so nothing can become ready (no
/// slot is counted) and the states alone decide the run's end: read without the run's lock, as
/// a clear or a mark since then raised the run's `clear_number`, which the run's end checks.
/// States that still leave decisions (a task changed meanwhile) decide the whole run.
async fn close_run(
    pool: &PgPool,
    cache: &DagCache,
    dag: &Dag,
    ended: &TryEnded,
) -> Result<Option<RunState>, StoreError> {
    let mut conn = pool.acquire().await?;
    let rows = task_instances::run_states(&mut conn, ended.dag_run_id).await?;
    let states: HashMap<&str, TaskState> = rows
        .iter()
        .map(|row| (row.task_id.as_str(), row.state))
        .collect();
    let decisions = decide_run(dag, &states);
    let (Some(end), true) = (decisions.run_end, decisions.tasks.is_empty()) else {
        drop(conn);
        return decide(pool, cache, &dag.dag_id, ended.dag_run_id, Queueing::Later).await;
    };
    let finished =
        runs::finish_announced(&mut *conn, ended.dag_run_id, end, ended.clear_number).await?;
    let Some(run_id) = finished else {
        return Ok(None);
    };
    tracing::info!(dag_id = %dag.dag_id, %run_id, state = %end, "run finished");
    Ok(Some(end))
}

/// The hand-off's fallback: the whole run decided under its lock.
async fn full_decision(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
    dag_run_id: i64,
) -> Result<Advanced, StoreError> {
    Ok(Advanced {
        claimed: Vec::new(),
        run_ended: decide_run_fully(pool, cache, dag_id, dag_run_id).await?,
    })
}

/// Decides every `none` task of a running run with the run locked, applies the decisions,
/// stores its unfinished count, and ends it when every task is finished. Ready tasks are
/// queued within `max_active_tasks`. Returns the run's end, if it ended.
pub async fn decide_run_fully(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
    dag_run_id: i64,
) -> Result<Option<RunState>, StoreError> {
    decide(pool, cache, dag_id, dag_run_id, Queueing::InTransaction).await
}

/// When [`decide`] queues the ready tasks of a DAG whose `max_active_tasks` may bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queueing {
    /// Under the DAG's queueing lock, taken before the run's.
    InTransaction,
    /// After the commit (they wait as `scheduled` until then): for a run that cannot have
    /// ready tasks, which then never waits for the lock.
    Later,
}

async fn decide(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
    dag_run_id: i64,
    queueing: Queueing,
) -> Result<Option<RunState>, StoreError> {
    // The queueing lock comes before the run's, and only DAGs whose limit may bind need it.
    let Some(limits) = runs::limits(pool, dag_run_id).await? else {
        return Ok(None);
    };
    let dag: Arc<Dag> = cache.get(pool, limits.dag_version_id).await?;
    let queue_locked = queueing == Queueing::InTransaction
        && limit_may_bind(
            limits.max_active_tasks,
            limits.max_active_runs,
            dag.tasks.len(),
        );
    let mut tx = pool.begin().await?;
    if queue_locked {
        task_instances::lock_queue(&mut tx, dag_id).await?;
    }
    let Some(run) = runs::lock(&mut tx, dag_run_id).await? else {
        return Ok(None);
    };
    if run.state != RunState::Running {
        return Ok(None);
    }
    let rows: Vec<TaskStateRow> = task_instances::run_states(&mut tx, dag_run_id).await?;
    let mut states: HashMap<&str, TaskState> = rows
        .iter()
        .map(|row| (row.task_id.as_str(), row.state))
        .collect();
    let decisions = decide_run(&dag, &states);
    for (task_id, state) in &decisions.tasks {
        states.insert(task_id, *state);
    }
    if decisions.run_end.is_none() {
        // Before queueing: the free slots are computed from every open run's count.
        let unfinished = states.values().filter(|state| !state.is_finished()).count();
        runs::set_unfinished(
            &mut tx,
            dag_run_id,
            i32::try_from(unfinished).unwrap_or(i32::MAX),
        )
        .await?;
    }
    let ids: HashMap<&str, i64> = rows
        .iter()
        .map(|row| (row.task_id.as_str(), row.id))
        .collect();
    let ready = decisions
        .tasks
        .iter()
        .filter(|(_, state)| *state == TaskState::Scheduled)
        .count();
    let bounded = limit_may_bind(run.max_active_tasks, run.max_active_runs, dag.tasks.len());
    let (slots, waiting_queued) = match (bounded && ready > 0, queue_locked) {
        (true, true) => {
            let admitted = task_instances::queue_waiting_locked(&mut tx, dag_id).await?;
            (Some(admitted.left()), admitted.queued)
        }
        // Not locked (or the limit was edited to bind meanwhile): they wait, and are queued
        // after the commit.
        (true, false) => (Some(0), 0),
        (false, _) => (None, 0),
    };
    let mut admitted = admit(ready, 0, slots).into_iter();
    let mut apply = Decisions::default();
    for (task_id, state) in &decisions.tasks {
        let target = match state {
            TaskState::Scheduled => admitted.next().unwrap_or(TaskState::Scheduled),
            finished => *finished,
        };
        if let Some(id) = ids.get(task_id) {
            apply.push(*id, target);
        }
    }
    if !apply.is_empty() {
        task_instances::apply_decisions(&mut *tx, dag_run_id, run.clear_number, "", &apply).await?;
    }
    if waiting_queued > 0 || apply.states.contains(&TaskState::Queued) {
        notify(&mut *tx, channels::QUEUED, &run.dag_id).await?;
    }
    // After the decisions: they apply only to a running run, and the last ones may be what
    // ends it (a leaf decided upstream_failed).
    if let Some(end) = decisions.run_end {
        runs::finish_announced(&mut *tx, dag_run_id, end, run.clear_number).await?;
    }
    tx.commit().await?;
    if bounded && !queue_locked && ready > 0 {
        task_instances::queue_waiting(pool, dag_id, true).await?;
    }
    if let Some(end) = decisions.run_end {
        tracing::info!(dag_id = %run.dag_id, run_id = %run.run_id, state = %end, "run finished");
    }
    Ok(decisions.run_end)
}

/// Starts the DAG's oldest queued runs within `max_active_runs` (not while paused): creates
/// their task instances from the pinned version, those that can run at once already queued
/// within `max_active_tasks` (the first decision of a fresh run needs no states read back).
/// A run with task instances from before (re-queued by a clear or a mark), or whose first
/// decision finishes tasks, is decided again from what is stored. Returns the started runs'
/// ids.
pub async fn start_queued_runs(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
) -> Result<Vec<i64>, StoreError> {
    // Most calls (every run's end) find nothing to start: they skip the DAG row's lock, which
    // every start of the DAG's runs waits for. A run queued after this read is started by the
    // NOTIFY its trigger sends after its commit.
    if !runs::has_queued(pool, dag_id).await? {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let Some(limits) = dags::lock_for_starting(&mut tx, dag_id).await? else {
        return Ok(Vec::new());
    };
    // Lock order: the DAG row, its queueing lock, then runs (the lock is uncontended for a DAG
    // whose limit cannot bind: nothing else takes it).
    task_instances::lock_queue(&mut tx, dag_id).await?;
    let started = runs::start_queued(&mut tx, dag_id, limits.max_active_runs).await?;
    // Free max_active_tasks slots, counted once (after queueing older waiting tasks) when a
    // run whose limit may bind needs them, then handed out run by run.
    let mut slots_left: Option<i64> = None;
    let mut decide_again = Vec::new();
    let mut queued_any = false;
    for run in &started {
        let dag = cache.get(&mut *tx, run.dag_version_id).await?;
        let bounded = limit_may_bind(
            limits.max_active_tasks,
            limits.max_active_runs,
            dag.tasks.len(),
        );
        let free = match (bounded, slots_left) {
            (false, _) => None,
            (true, Some(left)) => Some(left),
            (true, None) => {
                let admitted = task_instances::queue_waiting_locked(&mut tx, dag_id).await?;
                queued_any |= admitted.queued > 0;
                Some(admitted.left())
            }
        };
        let first = first_states(&dag, free);
        let decided_in_full = first.is_none();
        let states = first.unwrap_or_else(|| vec![TaskState::None; dag.tasks.len()]);
        let queued = states.iter().filter(|s| **s == TaskState::Queued).count();
        queued_any |= queued > 0;
        if let Some(free) = free {
            slots_left = Some(free - queued as i64);
        }
        let created =
            task_instances::create_for_run(&mut tx, &dag, run.id, &run.run_id, &states).await?;
        if decided_in_full || created != dag.tasks.len() as i64 {
            decide_again.push(run.id);
        }
    }
    if queued_any {
        notify(&mut *tx, channels::QUEUED, dag_id).await?;
    }
    tx.commit().await?;
    for id in decide_again {
        decide_run_fully(pool, cache, dag_id, id).await?;
    }
    if !started.is_empty() {
        tracing::debug!(dag_id, runs = started.len(), "runs started");
    }
    Ok(started.into_iter().map(|run| run.id).collect())
}

/// The states a fresh run's task instances start in (by position in `dag.tasks`): its first
/// decision, the ready tasks queued into `free` slots (`None`: no limit) and the rest
/// `scheduled`, every other task `none`. `None` when that decision finishes tasks (a rule
/// skips or fails a task with nothing upstream): the run is then decided in full.
fn first_states(dag: &Dag, free: Option<i64>) -> Option<Vec<TaskState>> {
    let all_none: HashMap<&str, TaskState> = dag
        .tasks
        .iter()
        .map(|task| (task.task_id.as_str(), TaskState::None))
        .collect();
    let first = decide_run(dag, &all_none);
    if first.finishes_a_task() || first.run_end.is_some() {
        return None;
    }
    let admitted: HashMap<&str, TaskState> = first
        .tasks
        .iter()
        .map(|(task_id, _)| *task_id)
        .zip(admit(first.tasks.len(), 0, free))
        .collect();
    Some(
        dag.tasks
            .iter()
            .map(|task| {
                admitted
                    .get(task.task_id.as_str())
                    .copied()
                    .unwrap_or(TaskState::None)
            })
            .collect(),
    )
}

/// Everything a DAG may need after an event: its due scheduled runs (when `create_runs`), its
/// queued runs started and their first tasks decided. Returns how many runs started.
pub async fn advance_dag(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
    create_runs: bool,
) -> Result<usize, StoreError> {
    if create_runs {
        super::trigger::create_due_runs(pool, cache, dag_id).await?;
    }
    Ok(start_queued_runs(pool, cache, dag_id).await?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::{Queued, Running, Scheduled};

    fn dag(limits: &str, tasks: &str) -> Dag {
        let source = format!("dag_id: d\nschedule: null\n{limits}tasks:\n{tasks}");
        let registry = updraft_operators::builtin_registry();
        crate::dag::parse::parse_dag("d.yaml", &source, &registry).expect("a valid DAG")
    }

    const UNBOUNDED: &str = "max_active_runs: 1\nmax_active_tasks: 100\n";

    #[test]
    fn an_end_decides_the_tasks_that_wait_for_it_alone() {
        let tasks = "  - {id: a, operator: empty}
  - {id: b, operator: empty, upstream: [a]}
  - {id: c, operator: empty, upstream: [a]}
  - {id: d, operator: empty, upstream: [b, c]}
  - {id: e, operator: empty, upstream: [d], trigger_rule: all_failed}
";
        let dag = dag(UNBOUNDED, tasks);
        // A fan-out: both wait for `a` alone.
        let mut fan_out = decided_with_end(&dag, "a", TaskState::Success).unwrap_or_default();
        fan_out.sort_unstable();
        assert_eq!(fan_out, vec!["b", "c"]);
        // A fan-in waits for others too; a retry or a leaf decides nothing; a failure and a
        // rule that skips finish tasks, which the whole run's decision propagates.
        assert_eq!(decided_with_end(&dag, "b", TaskState::Success), None);
        assert_eq!(decided_with_end(&dag, "a", TaskState::UpForRetry), None);
        assert_eq!(decided_with_end(&dag, "e", TaskState::Success), None);
        assert_eq!(decided_with_end(&dag, "a", TaskState::Failed), None);
        assert_eq!(decided_with_end(&dag, "d", TaskState::Success), None);
        assert_eq!(
            decided_with_end(&dag, "d", TaskState::Failed),
            Some(vec!["e"])
        );
        // Where max_active_tasks may bind, a slot must be counted under the queueing lock.
        let bounded = self::dag("max_active_runs: 16\nmax_active_tasks: 16\n", tasks);
        assert_eq!(decided_with_end(&bounded, "a", TaskState::Success), None);
    }

    #[test]
    fn the_limit_binds_only_when_the_runs_can_exceed_it() {
        // Airflow's defaults (16 runs, 16 tasks) bind for any DAG of two tasks or more.
        assert!(limit_may_bind(16, 16, 2));
        assert!(!limit_may_bind(16, 16, 1));
        assert!(!limit_may_bind(10_000, 1_000, 10));
        assert!(limit_may_bind(10_000, 1_000, 11));
    }

    #[test]
    fn ready_tasks_are_claimed_then_queued_then_left_waiting() {
        assert_eq!(admit(3, 1, None), vec![Running, Queued, Queued]);
        assert_eq!(
            admit(4, 1, Some(2)),
            vec![Running, Queued, Scheduled, Scheduled]
        );
        assert_eq!(admit(2, 5, Some(1)), vec![Running, Scheduled]);
        assert_eq!(admit(2, 0, Some(0)), vec![Scheduled, Scheduled]);
        assert_eq!(admit(2, 0, Some(-3)), vec![Scheduled, Scheduled]);
    }
}
