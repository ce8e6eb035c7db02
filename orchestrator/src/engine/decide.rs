//! Decide: which of a run's `none` tasks run, are skipped or upstream-failed, and whether the
//! run is over. Pure: the scheduler, the executor's hand-off and `updraft dags test` all call
//! [`decide_run`] with the states they hold (the database's, or `dags test`'s in-memory map),
//! so they agree by construction.

use std::collections::HashMap;

use crate::dag::trigger_rules::{Decision, UpstreamCounts, evaluate};
use crate::dag::{Dag, RunState, TaskState};

/// What [`decide_run`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunDecisions<'d> {
    /// `none` tasks leaving `none`, in topological order, and their new states: `scheduled`
    /// (the rule passed), `skipped` or `upstream_failed`.
    pub tasks: Vec<(&'d str, TaskState)>,
    /// The run's end, when every task is finished after these decisions.
    pub run_end: Option<RunState>,
}

impl RunDecisions<'_> {
    /// Whether a decision finished a task (so its own downstream tasks may now be decidable).
    pub fn finishes_a_task(&self) -> bool {
        self.tasks.iter().any(|(_, state)| state.is_finished())
    }
}

/// Applies the trigger rules to every `none` task of `states` (task id → state), in
/// topological order so `skipped` and `upstream_failed` propagate in one pass. A task whose
/// upstream task has no state is treated as `removed`. The run ends when every task of the
/// DAG is finished: failed if a leaf task failed or was upstream-failed, else success.
pub fn decide_run<'d>(dag: &'d Dag, states: &HashMap<&str, TaskState>) -> RunDecisions<'d> {
    let mut decisions = RunDecisions::default();
    let mut decided: HashMap<&str, TaskState> = HashMap::new();
    let state_of = |task_id: &str, decided: &HashMap<&str, TaskState>| {
        decided
            .get(task_id)
            .or_else(|| states.get(task_id))
            .copied()
    };
    if states.values().any(|state| *state == TaskState::None) {
        for task_id in dag.topological_order() {
            if state_of(task_id, &decided) != Some(TaskState::None) {
                continue;
            }
            let Some(task) = dag.task(task_id) else {
                continue;
            };
            let mut counts = UpstreamCounts::default();
            for upstream in &task.upstream {
                counts.add(state_of(upstream, &decided).unwrap_or(TaskState::Removed));
            }
            let state = match evaluate(task.trigger_rule, counts) {
                Decision::Wait => continue,
                Decision::Run => TaskState::Scheduled,
                Decision::Skip => TaskState::Skipped,
                Decision::UpstreamFailed => TaskState::UpstreamFailed,
            };
            decided.insert(task_id, state);
            decisions.tasks.push((task_id, state));
        }
    }
    let all_finished = dag
        .tasks
        .iter()
        .all(|task| state_of(&task.task_id, &decided).is_some_and(|state| state.is_finished()));
    if all_finished {
        let leaf_failed = dag.tasks.iter().any(|task| {
            dag.downstream(&task.task_id).is_empty()
                && matches!(
                    state_of(&task.task_id, &decided),
                    Some(TaskState::Failed | TaskState::UpstreamFailed)
                )
        });
        decisions.run_end = Some(if leaf_failed {
            RunState::Failed
        } else {
            RunState::Success
        });
    }
    decisions
}

/// The tasks whose states a decision about `task_id`'s downstream tasks reads: those tasks
/// and all their upstream tasks (`task_id` among them).
pub fn inputs_of_downstream(dag: &Dag, task_id: &str) -> Vec<String> {
    let mut tasks: Vec<String> = Vec::new();
    for down in dag.downstream(task_id) {
        tasks.push(down.to_string());
        if let Some(task) = dag.task(down) {
            tasks.extend(task.upstream.iter().cloned());
        }
    }
    tasks.sort_unstable();
    tasks.dedup();
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{Task, TriggerRule};

    fn dag(edges: &[(&str, &[&str], TriggerRule)]) -> Dag {
        let tasks = edges
            .iter()
            .map(|(id, upstream, rule)| Task {
                task_id: id.to_string(),
                operator: "empty".into(),
                upstream: upstream.iter().map(|u| u.to_string()).collect(),
                trigger_rule: *rule,
                owner: "me".into(),
                retry: Default::default(),
                execution_timeout: Option::None,
                config: serde_json::json!({}),
            })
            .collect();
        let mut dag = Dag::default();
        dag.dag_id = "d".into();
        dag.tasks = tasks;
        Dag::new(dag)
    }

    use TaskState::*;
    use TriggerRule::*;

    #[test]
    fn roots_run_first_and_downstream_waits() {
        let dag = dag(&[("a", &[], AllSuccess), ("b", &["a"], AllSuccess)]);
        let states = HashMap::from([("a", None), ("b", None)]);
        let decisions = decide_run(&dag, &states);
        assert_eq!(decisions.tasks, vec![("a", Scheduled)]);
        assert_eq!(decisions.run_end, Option::None);
    }

    #[test]
    fn a_failure_propagates_in_one_pass_and_ends_the_run() {
        let dag = dag(&[
            ("a", &[], AllSuccess),
            ("b", &["a"], AllSuccess),
            ("c", &["b"], AllSuccess),
            ("cleanup", &["c"], AllDone),
        ]);
        let states = HashMap::from([("a", Failed), ("b", None), ("c", None), ("cleanup", None)]);
        let decisions = decide_run(&dag, &states);
        assert_eq!(
            decisions.tasks,
            vec![
                ("b", UpstreamFailed),
                ("c", UpstreamFailed),
                ("cleanup", Scheduled)
            ]
        );
        assert!(decisions.finishes_a_task());
        assert_eq!(decisions.run_end, Option::None);
        let done = HashMap::from([
            ("a", Failed),
            ("b", UpstreamFailed),
            ("c", UpstreamFailed),
            ("cleanup", Success),
        ]);
        // The leaf succeeded: as in Airflow, the run's state follows its leaves.
        assert_eq!(decide_run(&dag, &done).run_end, Some(RunState::Success));
    }

    #[test]
    fn a_failed_leaf_fails_the_run() {
        let dag = dag(&[("a", &[], AllSuccess), ("b", &["a"], AllSuccess)]);
        let states = HashMap::from([("a", Success), ("b", Failed)]);
        assert_eq!(decide_run(&dag, &states).run_end, Some(RunState::Failed));
    }

    #[test]
    fn a_partial_view_decides_only_what_it_holds() {
        let dag = dag(&[
            ("a", &[], AllSuccess),
            ("b", &["a"], AllSuccess),
            ("c", &["b"], AllSuccess),
        ]);
        // The hand-off after `a` reads `a` and `b` only: `c` is not decided, the run not ended.
        let view = HashMap::from([("a", Success), ("b", None)]);
        let decisions = decide_run(&dag, &view);
        assert_eq!(decisions.tasks, vec![("b", Scheduled)]);
        assert_eq!(decisions.run_end, Option::None);
        assert_eq!(inputs_of_downstream(&dag, "a"), vec!["a", "b"]);
    }

    #[test]
    fn fan_in_waits_for_every_upstream() {
        let dag = dag(&[
            ("a", &[], AllSuccess),
            ("b", &[], AllSuccess),
            ("c", &["a", "b"], AllSuccess),
        ]);
        let view = HashMap::from([("a", Success), ("b", Running), ("c", None)]);
        assert!(decide_run(&dag, &view).tasks.is_empty());
        let view = HashMap::from([("a", Success), ("b", Success), ("c", None)]);
        assert_eq!(decide_run(&dag, &view).tasks, vec![("c", Scheduled)]);
        assert_eq!(inputs_of_downstream(&dag, "b"), vec!["a", "b", "c"]);
    }
}
