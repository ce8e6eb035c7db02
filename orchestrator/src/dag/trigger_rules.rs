//! Airflow's trigger rules as a pure function of the upstream tasks' state counts.

use super::TriggerRule;
use super::state::TaskState;

/// How many direct upstream tasks are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    pub total: usize,
    pub success: usize,
    pub failed: usize,
    pub upstream_failed: usize,
    pub skipped: usize,
    pub removed: usize,
}

impl UpstreamCounts {
    pub fn add(&mut self, state: TaskState) {
        self.total += 1;
        match state {
            TaskState::Success => self.success += 1,
            TaskState::Failed => self.failed += 1,
            TaskState::UpstreamFailed => self.upstream_failed += 1,
            TaskState::Skipped => self.skipped += 1,
            TaskState::Removed => self.removed += 1,
            _ => {}
        }
    }

    pub fn done(&self) -> usize {
        self.success + self.failed + self.upstream_failed + self.skipped + self.removed
    }

    fn failures(&self) -> usize {
        self.failed + self.upstream_failed
    }
}

/// What happens to a task that has not started (`none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Upstream tasks are not far enough yet.
    Wait,
    /// The rule passes: the task becomes `scheduled`.
    Run,
    Skip,
    UpstreamFailed,
}

impl Decision {
    pub fn state(self) -> Option<TaskState> {
        match self {
            Decision::Wait => None,
            Decision::Run => Some(TaskState::Scheduled),
            Decision::Skip => Some(TaskState::Skipped),
            Decision::UpstreamFailed => Some(TaskState::UpstreamFailed),
        }
    }
}

/// Airflow 2's `TriggerRuleDep` with `flag_upstream_failed`: a decision is taken as soon as it is
/// certain (e.g. `all_success` turns `upstream_failed` at the first upstream failure, and
/// `one_success` runs at the first success), otherwise the task waits.
pub fn evaluate(rule: TriggerRule, up: UpstreamCounts) -> Decision {
    use Decision::*;
    let all_done = up.done() >= up.total;
    match rule {
        TriggerRule::Always => Run,
        _ if up.total == 0 => Run,
        TriggerRule::AllSuccess => {
            if up.failures() > 0 {
                UpstreamFailed
            } else if up.skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllFailed => {
            if up.success > 0 || up.skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllDone => {
            if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::OneSuccess => {
            if up.success > 0 {
                Run
            } else if !all_done {
                Wait
            } else if up.skipped == up.total {
                Skip
            } else {
                UpstreamFailed
            }
        }
        TriggerRule::OneFailed => {
            if up.failures() > 0 {
                Run
            } else if all_done {
                Skip
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailed => {
            if up.failures() > 0 {
                UpstreamFailed
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if up.failures() > 0 {
                UpstreamFailed
            } else if !all_done {
                Wait
            } else if up.skipped + up.removed == up.total {
                Skip
            } else {
                Run
            }
        }
        TriggerRule::NoneSkipped => {
            if up.skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::*;
    use TaskState as S;
    use proptest::prelude::*;

    fn counts(states: &[TaskState]) -> UpstreamCounts {
        let mut counts = UpstreamCounts::default();
        for state in states {
            counts.add(*state);
        }
        counts
    }

    /// Every rule over representative upstream combinations (R = running, not done).
    #[test]
    fn truth_table() {
        use TriggerRule::*;
        let combos: &[(&str, &[TaskState])] = &[
            ("SS", &[S::Success, S::Success]),
            ("SR", &[S::Success, S::Running]),
            ("SF", &[S::Success, S::Failed]),
            ("FR", &[S::Failed, S::Running]),
            ("FF", &[S::Failed, S::UpstreamFailed]),
            ("SK", &[S::Success, S::Skipped]),
            ("KK", &[S::Skipped, S::Skipped]),
            ("KR", &[S::Skipped, S::Running]),
            ("FK", &[S::Failed, S::Skipped]),
        ];
        #[rustfmt::skip]
        let table: &[(TriggerRule, [Decision; 9])] = &[
            //                         SS    SR    SF              FR              FF              SK    KK    KR    FK
            (AllSuccess,              [Run,  Wait, UpstreamFailed, UpstreamFailed, UpstreamFailed, Skip, Skip, Skip, UpstreamFailed]),
            (AllFailed,               [Skip, Skip, Skip,           Wait,           Run,            Skip, Skip, Skip, Skip]),
            (AllDone,                 [Run,  Wait, Run,            Wait,           Run,            Run,  Run,  Wait, Run]),
            (OneSuccess,              [Run,  Run,  Run,            Wait,           UpstreamFailed, Run,  Skip, Wait, UpstreamFailed]),
            (OneFailed,               [Skip, Wait, Run,            Run,            Run,            Skip, Skip, Wait, Run]),
            (NoneFailed,              [Run,  Wait, UpstreamFailed, UpstreamFailed, UpstreamFailed, Run,  Run,  Wait, UpstreamFailed]),
            (NoneFailedMinOneSuccess, [Run,  Wait, UpstreamFailed, UpstreamFailed, UpstreamFailed, Run,  Skip, Wait, UpstreamFailed]),
            (NoneSkipped,             [Run,  Wait, Run,            Wait,           Run,            Skip, Skip, Skip, Skip]),
            (Always,                  [Run,  Run,  Run,            Run,            Run,            Run,  Run,  Run,  Run]),
        ];
        for (rule, expected) in table {
            for ((name, states), want) in combos.iter().zip(expected) {
                assert_eq!(
                    evaluate(*rule, counts(states)),
                    *want,
                    "{rule:?} over {name}"
                );
            }
        }
        // A task without upstream runs whatever its rule.
        assert_eq!(evaluate(AllFailed, UpstreamCounts::default()), Run);
    }

    fn state() -> impl Strategy<Value = TaskState> {
        prop::sample::select(vec![
            S::None,
            S::Scheduled,
            S::Queued,
            S::Running,
            S::UpForRetry,
            S::Success,
            S::Failed,
            S::UpstreamFailed,
            S::Skipped,
        ])
    }

    fn rule() -> impl Strategy<Value = TriggerRule> {
        let rules: Vec<TriggerRule> = crate::dag::tasks::TRIGGER_RULES
            .iter()
            .map(|(_, rule)| *rule)
            .collect();
        prop::sample::select(rules)
    }

    proptest! {
        /// Once every upstream task is finished, every rule decides (nothing waits forever).
        #[test]
        fn finished_upstream_always_decides(rule in rule(), states in prop::collection::vec(
            prop::sample::select(vec![S::Success, S::Failed, S::UpstreamFailed, S::Skipped]), 0..6)) {
            prop_assert_ne!(evaluate(rule, counts(&states)), Wait);
        }

        /// Whether the task runs, decided early, never changes as more upstream tasks finish.
        /// (The kind of non-run may: as in Airflow, `all_success` is skipped at the first
        /// skipped upstream even if another one fails later.)
        #[test]
        fn early_decisions_are_final(rule in rule(), states in prop::collection::vec(state(), 1..6),
            finals in prop::collection::vec(
                prop::sample::select(vec![S::Success, S::Failed, S::UpstreamFailed, S::Skipped]), 6)) {
            let early = evaluate(rule, counts(&states));
            let finished: Vec<TaskState> = states.iter().zip(&finals)
                .map(|(s, f)| if s.is_finished() { *s } else { *f }).collect();
            let late = evaluate(rule, counts(&finished));
            if early != Wait {
                prop_assert_eq!(early == Run, late == Run);
            }
        }

        /// all_success runs only when every upstream succeeded.
        #[test]
        fn all_success_means_all_success(states in prop::collection::vec(state(), 1..6)) {
            let run = evaluate(TriggerRule::AllSuccess, counts(&states)) == Run;
            prop_assert_eq!(run, states.iter().all(|s| *s == S::Success));
        }
    }
}
