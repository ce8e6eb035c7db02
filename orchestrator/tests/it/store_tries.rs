//! Tries in the store: claims take heavier tasks first (Airflow's priority weight), and the
//! ends of tries are stored in one statement, as the executor batches them under load: each end
//! is guarded by its owner, each run's unfinished count drops by its own ends, and exactly one
//! end per emptied run closes it. An end claims the downstream tasks it alone decides in the
//! same statement, and queued tries for the slots it frees. Hand-off decisions batched the same
//! way change a task once and hand a claimed task only to a request with a slot for it.

use std::collections::HashMap;

use serde_json::json;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::advance::{
    Applier, EndedTry, after_try, apply_batch, start_queued_runs,
};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::task_instances::{
    self, DecidedDownstream, Decisions, RunDecisions, TryEnd,
};
use updraft_orchestrator::store::{DagCache, runs};

use crate::scheduler_support::{Env, env};

/// `count` runs of the DAG in `yaml`, triggered and started: their first tasks are queued.
async fn started_runs(env: &Env, dag_id: &str, yaml: &str, count: usize) -> Vec<i64> {
    env.write_dag(dag_id, yaml).await;
    let mut ids = Vec::new();
    for _ in 0..count {
        let run = trigger_run(&env.pool, dag_id, TriggerRequest::default())
            .await
            .unwrap();
        ids.push(run.id);
    }
    let mut started = start_queued_runs(&env.pool, &DagCache::new(), dag_id)
        .await
        .unwrap();
    started.sort_unstable();
    assert_eq!(started, ids, "every run started");
    ids
}

/// A try's plain successful end: nothing read back, nothing decided with it.
fn success(task_instance_id: i64) -> TryEnd {
    TryEnd {
        task_instance_id,
        state: TaskState::Success,
        rendered_config: None,
        next_retry_at: None,
        output: None,
        read_back: Vec::new(),
        decided_downstream: None,
    }
}

const TWO_PARALLEL: &str = r#"
dag_id: two_parallel
schedule: null
is_paused_upon_creation: false
tasks:
  - id: left
    operator: empty
  - id: right
    operator: empty
"#;

#[tokio::test]
async fn one_statement_ends_the_tries_of_several_runs() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("store_tries").await;
    let run_ids = started_runs(&env, "two_parallel", TWO_PARALLEL, 2).await;
    let claimed = task_instances::claim(&env.pool, "owner-a", 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4, "two tasks of two runs: {claimed:?}");

    let end = |id: i64, state: TaskState| TryEnd {
        task_instance_id: id,
        state,
        rendered_config: Some(json!({})),
        next_retry_at: None,
        output: Some(json!({"id": id})),
        read_back: vec!["left".to_string(), "right".to_string()],
        decided_downstream: None,
    };
    let ends: Vec<TryEnd> = claimed
        .iter()
        .map(|try_| {
            let state = if try_.task_id == "left" {
                TaskState::Success
            } else {
                TaskState::Failed
            };
            end(try_.id, state)
        })
        .collect();

    // Another process's end of these rows is refused, row by row.
    let foreign = task_instances::end_tries(&env.pool, "owner-b", &ends)
        .await
        .unwrap();
    assert!(foreign.iter().all(Option::is_none), "{foreign:?}");

    let ended = task_instances::end_tries(&env.pool, "owner-a", &ends)
        .await
        .unwrap();
    assert_eq!(ended.len(), 4, "one answer per end, in order");
    let mut closers: HashMap<i64, Vec<i64>> = HashMap::new();
    for (end, ended) in ends.iter().zip(&ended) {
        let ended = ended.as_ref().expect("the row was owner-a's");
        assert_eq!(ended.task_instance_id, end.task_instance_id);
        assert!(run_ids.contains(&ended.dag_run_id));
        assert_eq!(ended.dag_id, "two_parallel");
        assert_eq!(ended.run_state, RunState::Running);
        assert_eq!(ended.ended_in_run, 2, "each run's two tries ended here");
        assert_eq!(ended.unfinished_seen, 2);
        assert_eq!(ended.unfinished_now, Some(0));
        assert!(!ended.missed_an_end(), "no end outside the statement");
        let read: Vec<&str> = ended.rows.iter().map(|row| row.task_id.as_str()).collect();
        assert_eq!(read.len(), 2, "both tasks read back: {read:?}");
        if ended.closes_run {
            closers
                .entry(ended.dag_run_id)
                .or_default()
                .push(ended.task_instance_id);
        }
    }
    for &run in &run_ids {
        let of_run: Vec<i64> = claimed
            .iter()
            .filter(|try_| try_.dag_run_id == run)
            .map(|try_| try_.id)
            .collect();
        let last = of_run.iter().max().copied();
        assert_eq!(
            closers.get(&run).map(Vec::as_slice),
            last.as_ref().map(std::slice::from_ref),
            "exactly one end closes run {run}: its last try's"
        );
    }

    let rows = task_instances::of_runs(&env.pool, &run_ids).await.unwrap();
    for row in &rows {
        let expected = if row.task_id == "left" {
            TaskState::Success
        } else {
            TaskState::Failed
        };
        assert_eq!(row.state, expected, "{row:?}");
    }

    // A repeat (a retried statement whose first attempt committed) changes nothing.
    let again = task_instances::end_tries(&env.pool, "owner-a", &ends)
        .await
        .unwrap();
    assert!(again.iter().all(Option::is_none), "{again:?}");
}

const WEIGHTED: &str = r#"
dag_id: weighted
schedule: null
is_paused_upon_creation: false
tasks:
  - id: leaf
    operator: empty
  - id: head
    operator: empty
  - id: tail
    operator: empty
    upstream: [head]
"#;

#[tokio::test]
async fn claims_take_the_heavier_task_first() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("store_weights").await;
    started_runs(&env, "weighted", WEIGHTED, 1).await;

    // `leaf` was created first, but `head` has a task below it (Airflow's `downstream` weight).
    let first = task_instances::claim(&env.pool, "owner-a", 1)
        .await
        .unwrap();
    let second = task_instances::claim(&env.pool, "owner-a", 1)
        .await
        .unwrap();
    let claimed: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|try_| try_.task_id.as_str())
        .collect();
    assert_eq!(claimed, ["head", "leaf"]);
}

const FORK: &str = r#"
dag_id: fork
schedule: null
is_paused_upon_creation: false
tasks:
  - id: start
    operator: empty
  - id: left
    operator: empty
    upstream: [start]
  - id: right
    operator: empty
    upstream: [start]
"#;

#[tokio::test]
async fn batched_decisions_claim_a_task_once_and_skip_a_stale_run() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("store_apply").await;
    let runs = started_runs(&env, "fork", FORK, 2).await;
    // `left` and `right` wait for `start`, still `none`: the decisions below are their first.
    let rows = task_instances::of_runs(&env.pool, &runs).await.unwrap();
    let id = |run: i64, task: &str| {
        rows.iter()
            .find(|row| row.dag_run_id == run && row.task_id == task)
            .map(|row| row.id)
            .unwrap()
    };
    let decide = |run: i64, clear_number: i32, decided: &[(&str, TaskState)]| {
        let mut decisions = Decisions::default();
        for (task, state) in decided {
            decisions.push(id(run, task), *state);
        }
        RunDecisions {
            dag_run_id: run,
            clear_number,
            decisions,
        }
    };
    let batch = [
        // Two ends of one run both found `left` ready.
        decide(runs[0], 0, &[("left", TaskState::Running)]),
        decide(
            runs[0],
            0,
            &[("left", TaskState::Running), ("right", TaskState::Queued)],
        ),
        // Decided before a clear the run has not had: applies nothing.
        decide(runs[1], 7, &[("left", TaskState::Running)]),
    ];
    let decided = task_instances::apply_decisions_of_runs(&env.pool, "owner-a", &batch)
        .await
        .unwrap();
    let mut changed: Vec<(i64, &str, TaskState)> = decided
        .iter()
        .map(|task| (task.dag_run_id, task.task_id.as_str(), task.state))
        .collect();
    changed.sort_by_key(|change| change.1);
    assert_eq!(
        changed,
        [
            (runs[0], "left", TaskState::Running),
            (runs[0], "right", TaskState::Queued)
        ]
    );
    let left = decided.iter().find(|task| task.task_id == "left").unwrap();
    assert_eq!(left.try_number, 1, "claimed once");
    let after = task_instances::of_runs(&env.pool, &[runs[1]])
        .await
        .unwrap();
    assert!(
        after
            .iter()
            .all(|row| row.task_id == "start" || row.state == TaskState::None),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_task_claimed_in_a_batch_goes_to_a_request_with_a_slot_for_it() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("store_route").await;
    let runs = started_runs(&env, "fork", FORK, 1).await;
    let rows = task_instances::of_runs(&env.pool, &runs).await.unwrap();
    let left = rows.iter().find(|row| row.task_id == "left").unwrap().id;
    let asking = |state: TaskState| {
        let mut decisions = Decisions::default();
        decisions.push(left, state);
        RunDecisions {
            dag_run_id: runs[0],
            clear_number: 0,
            decisions,
        }
    };
    // One end had no free slot (queued), another had one (running): whichever the statement
    // applied goes back to the request that asked for exactly that.
    let batch = vec![asking(TaskState::Queued), asking(TaskState::Running)];
    let answers = apply_batch(&env.pool, "owner-a", batch.clone()).await;
    let answers: Vec<Vec<_>> = answers.into_iter().map(Result::unwrap).collect();
    let applied = task_instances::of_runs(&env.pool, &runs).await.unwrap();
    let state = applied.iter().find(|row| row.id == left).unwrap().state;
    for (request, answer) in batch.iter().zip(&answers) {
        let asked = request.decisions.states[0];
        let expected: Vec<TaskState> = if asked == state { vec![state] } else { vec![] };
        let got: Vec<TaskState> = answer.iter().map(|task| task.state).collect();
        assert_eq!(got, expected, "the request that asked {asked}");
    }
}

const FAN_OUT: &str = r#"
dag_id: fan_out
schedule: null
is_paused_upon_creation: false
max_active_runs: 2
max_active_tasks: 100
tasks:
  - id: a
    operator: empty
  - id: b
    operator: empty
    upstream: [a]
  - id: c
    operator: empty
    upstream: [a]
"#;

#[tokio::test]
async fn an_end_claims_the_tasks_it_alone_decides_in_the_same_statement() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("store_ahead").await;
    let run_ids = started_runs(&env, "fan_out", FAN_OUT, 2).await;
    let claimed = task_instances::claim(&env.pool, "owner-a", 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2, "the root of each run: {claimed:?}");
    let (first, second) = if claimed[0].dag_run_id == run_ids[0] {
        (&claimed[0], &claimed[1])
    } else {
        (&claimed[1], &claimed[0])
    };
    // The first end assumes the DAG's limits; the second limits it no longer has (edited).
    let end = |id: i64, max_active_tasks: i32| TryEnd {
        task_instance_id: id,
        state: TaskState::Success,
        rendered_config: None,
        next_retry_at: None,
        output: None,
        read_back: Vec::new(),
        decided_downstream: Some(DecidedDownstream {
            task_ids: vec!["b".to_string(), "c".to_string()],
            max_active_tasks,
            max_active_runs: 2,
        }),
    };
    let ends = [end(first.id, 100), end(second.id, 99)];
    let ended = task_instances::end_tries(&env.pool, "owner-a", &ends)
        .await
        .unwrap();
    let [Some(first_end), Some(second_end)] = &ended[..] else {
        panic!("both rows were owner-a's: {ended:?}");
    };
    let mut started: Vec<&str> = first_end
        .decided_downstream
        .iter()
        .map(|task| task.task_id.as_str())
        .collect();
    started.sort_unstable();
    assert_eq!(started, ["b", "c"]);
    assert!(
        first_end
            .decided_downstream
            .iter()
            .all(|task| task.state == TaskState::Running && task.try_number == 1),
        "{first_end:?}"
    );
    assert!(second_end.decided_downstream.is_empty(), "{second_end:?}");

    let rows = task_instances::of_runs(&env.pool, &run_ids).await.unwrap();
    let row = |run: i64, task: &str| {
        rows.iter()
            .find(|row| row.dag_run_id == run && row.task_id == task)
            .unwrap_or_else(|| panic!("{task} of run {run}"))
    };
    let root_end = row(run_ids[0], "a").end_date;
    for task in ["b", "c"] {
        let claimed = row(run_ids[0], task);
        assert_eq!(claimed.state, TaskState::Running);
        assert_eq!(claimed.owner.as_deref(), Some("owner-a"));
        assert_eq!(
            claimed.start_date, root_end,
            "claimed in the end's transaction"
        );
        assert_eq!(row(run_ids[1], task).state, TaskState::None);
    }

    // Nothing applied: the hand-off decides that run whole instead.
    let cache = DagCache::new();
    let dag = cache.get(&env.pool, second.dag_version_id).await.unwrap();
    let applier = Applier::start(env.pool.clone(), "owner-a".to_string());
    let handed = EndedTry {
        dag: &dag,
        task_id: "a",
        state: TaskState::Success,
        ended: second_end.clone(),
        decided_with_end: true,
    };
    let advanced = after_try(&env.pool, &cache, &applier, handed, "owner-a", 0)
        .await
        .unwrap();
    assert!(advanced.claimed.is_empty() && advanced.run_ended.is_none());
    let states = task_instances::of_runs(&env.pool, &run_ids[1..])
        .await
        .unwrap();
    for task in ["b", "c"] {
        let state = states
            .iter()
            .find(|row| row.task_id == task)
            .map(|row| row.state);
        assert_eq!(state, Some(TaskState::Queued), "{task}");
    }
}

const BOUNDED: &str = r#"
dag_id: bounded
schedule: null
is_paused_upon_creation: false
max_active_runs: 2
max_active_tasks: 3
tasks:
  - id: a
    operator: empty
  - id: b
    operator: empty
  - id: c
    operator: empty
    upstream: [a, b]
"#;

#[tokio::test]
async fn a_started_run_is_created_with_its_first_tasks_admitted() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("store_start").await;
    let run_ids = started_runs(&env, "bounded", BOUNDED, 2).await;
    let rows = task_instances::of_runs(&env.pool, &run_ids).await.unwrap();
    let states: Vec<(i64, &str, TaskState)> = rows
        .iter()
        .map(|row| (row.dag_run_id, row.task_id.as_str(), row.state))
        .collect();
    // Three slots: the older run's roots, then one of the newer run's; the other waits for a
    // slot, and the fan-in waits for its upstream tasks.
    use TaskState::{None as NoneState, Queued, Scheduled};
    let of_run = |run: i64| -> Vec<TaskState> {
        let mut run_states: Vec<TaskState> = states
            .iter()
            .filter(|(id, task, _)| *id == run && *task != "c")
            .map(|(_, _, state)| *state)
            .collect();
        run_states.sort_by_key(|state| state.to_string());
        run_states
    };
    assert_eq!(of_run(run_ids[0]), vec![Queued, Queued]);
    assert_eq!(of_run(run_ids[1]), vec![Queued, Scheduled]);
    assert!(
        states
            .iter()
            .filter(|(_, task, _)| *task == "c")
            .all(|(_, _, state)| *state == NoneState)
    );
    assert!(
        rows.iter()
            .filter(|row| row.state == Queued)
            .all(|row| row.queued_at.is_some())
    );

    // The first run's tasks all end: the last end closes it (the start counted three
    // unfinished tasks), and the newer run's waiting root is queued into a freed slot.
    let claimed = task_instances::claim(&env.pool, "owner-a", 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    let ended = task_instances::end_tries(
        &env.pool,
        "owner-a",
        &claimed
            .iter()
            .map(|try_| success(try_.id))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let unfinished: HashMap<i64, Option<i32>> = ended
        .iter()
        .flatten()
        .map(|ended| (ended.dag_run_id, ended.unfinished_now))
        .collect();
    assert_eq!(
        unfinished[&run_ids[0]],
        Some(1),
        "c is left in the first run"
    );
    assert_eq!(
        unfinished[&run_ids[1]],
        Some(2),
        "a root and c are left in the second"
    );
    let queued = task_instances::queue_waiting(&env.pool, "bounded", true)
        .await
        .unwrap();
    assert_eq!(queued, 1, "the waiting root takes a freed slot");
}

#[tokio::test]
async fn ends_claim_queued_tries_for_the_slots_they_free() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("store_refill").await;
    let run_ids = started_runs(&env, "two_parallel", TWO_PARALLEL, 3).await;
    let first = task_instances::claim(&env.pool, "owner-a", 2)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let ends: Vec<TryEnd> = first.iter().map(|try_| success(try_.id)).collect();

    // Another process's ends are refused; its claim still takes queued tries.
    let foreign = task_instances::end_tries_and_claim(&env.pool, "owner-b", &ends, 1)
        .await
        .unwrap();
    assert!(foreign.ended.iter().all(Option::is_none), "{foreign:?}");
    assert_eq!(foreign.claimed.len(), 1);

    let stored = task_instances::end_tries_and_claim(&env.pool, "owner-a", &ends, 2)
        .await
        .unwrap();
    assert!(stored.ended.iter().all(Option::is_some), "{stored:?}");
    // The claim's order: equal weights, oldest run first, after owner-b's pick.
    let queued_order: Vec<(i64, String)> = stored
        .claimed
        .iter()
        .map(|try_| (try_.dag_run_id, try_.task_id.clone()))
        .collect();
    let mut expected = queued_order.clone();
    expected.sort();
    assert_eq!(queued_order, expected, "oldest run first");
    assert_eq!(stored.claimed.len(), 2);

    let rows = task_instances::of_runs(&env.pool, &run_ids).await.unwrap();
    for try_ in stored.claimed.iter().chain(&foreign.claimed) {
        let row = rows.iter().find(|row| row.id == try_.id).unwrap();
        assert_eq!(row.state, TaskState::Running, "{row:?}");
        assert_eq!(row.try_number, 1);
        assert_eq!(try_.try_number, 1);
        let run = runs::get(&env.pool, "two_parallel", &row.run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            try_.logical_date, run.logical_date,
            "the run's columns come along"
        );
        assert_eq!(try_.dag_version_id, run.dag_version_id);
    }
    let owners: Vec<Option<&str>> = stored
        .claimed
        .iter()
        .map(|try_| rows.iter().find(|row| row.id == try_.id).unwrap())
        .map(|row| row.owner.as_deref())
        .collect();
    assert_eq!(owners, [Some("owner-a"), Some("owner-a")]);

    // One queued try is left: a larger claim takes only it, a claim of none takes nothing.
    let none = task_instances::end_tries_and_claim(&env.pool, "owner-a", &[], 0)
        .await
        .unwrap();
    assert!(none.claimed.is_empty());
    let last = task_instances::end_tries_and_claim(&env.pool, "owner-a", &[], 5)
        .await
        .unwrap();
    assert_eq!(last.claimed.len(), 1);
    let queued = task_instances::of_runs(&env.pool, &run_ids)
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.state == TaskState::Queued)
        .count();
    assert_eq!(queued, 0);
}
