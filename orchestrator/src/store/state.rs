//! Task-instance and run states, and the one function that says which transitions are allowed.
//!
//! States are stored as TEXT with CHECK constraints (`migrations/0001_initial.sql`). Every SQL
//! statement that changes a state names its source states with [`TaskState::sources_of`] or is
//! listed in `USED_TRANSITIONS` of the tests, so the SQL cannot drift from this table.

use std::fmt;
use std::str::FromStr;

/// A task instance's state. `None` is Airflow's null: "not yet decided".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskState {
    None,
    Scheduled,
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    UpstreamFailed,
    Skipped,
    Removed,
}

impl TaskState {
    pub const ALL: [TaskState; 10] = [
        TaskState::None,
        TaskState::Scheduled,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpForRetry,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
        TaskState::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::None => "none",
            TaskState::Scheduled => "scheduled",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
            TaskState::Removed => "removed",
        }
    }

    /// Finished for good (until cleared): downstream trigger rules count these.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success
                | TaskState::Failed
                | TaskState::UpstreamFailed
                | TaskState::Skipped
                | TaskState::Removed
        )
    }

    /// Every state from which `to` may be reached, as stored strings (for `state = ANY($n)`).
    pub fn sources_of(to: TaskState) -> Vec<&'static str> {
        TaskState::ALL
            .into_iter()
            .filter(|from| allowed(*from, to))
            .map(TaskState::as_str)
            .collect()
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownState(text.to_string()))
    }
}

/// The allowed task-instance transitions (Airflow's, without `restarting`/`deferred`).
///
/// - scheduling: none → scheduled | upstream_failed | skipped; scheduled → queued;
///   up_for_retry → scheduled (retry due); queued → running (claim);
/// - a try ends: running → success | failed | up_for_retry (also the reaper and SIGTERM release);
/// - clearing: any state except none → none (a running try loses its claim and is cancelled);
/// - "mark success/failed" of a run: any unfinished state → success | failed | skipped,
///   and a finished state → success | failed.
pub fn allowed(from: TaskState, to: TaskState) -> bool {
    use TaskState::*;
    if from == to {
        return false;
    }
    match (from, to) {
        (None, Scheduled | UpstreamFailed | Skipped | Removed) => true,
        (Scheduled, Queued) => true,
        (UpForRetry, Scheduled) => true,
        (Queued, Running) => true,
        (Running, Success | Failed | UpForRetry) => true,
        (_, None) => true,
        // Marking a run: unfinished tasks follow it.
        (None | Scheduled | Queued | Running | UpForRetry, Success | Failed | Skipped) => true,
        (Success | Failed | UpstreamFailed | Skipped | Removed, Success | Failed) => true,
        _ => false,
    }
}

/// A DAG run's state (Airflow's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    Queued,
    Running,
    Success,
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 4] = [
        RunState::Queued,
        RunState::Running,
        RunState::Success,
        RunState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = UnknownState;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownState(text.to_string()))
    }
}

/// Allowed run transitions: queued → running → success | failed; a finished run goes back to
/// queued when cleared; a user may mark any run success/failed/queued (Airflow's actions).
pub fn run_allowed(from: RunState, to: RunState) -> bool {
    use RunState::*;
    from != to
        && match (from, to) {
            (Queued, Running) => true,
            (_, Success | Failed) => true,
            (_, Queued) => true,
            (Success | Failed, Running) => false,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    /// The transitions the scheduler, executor and store write in SQL.
    const USED_TRANSITIONS: &[(TaskState, TaskState)] = &[
        (None, Scheduled),
        (None, UpstreamFailed),
        (None, Skipped),
        (Scheduled, Queued),
        (Queued, Running),
        (Running, Success),
        (Running, Failed),
        (Running, UpForRetry),
        (UpForRetry, Scheduled),
        (Success, None),
        (Failed, None),
        (Running, None),
    ];

    #[test]
    fn every_transition_used_in_sql_is_allowed() {
        for (from, to) in USED_TRANSITIONS {
            assert!(allowed(*from, *to), "{from} -> {to}");
        }
    }

    #[test]
    fn the_transition_table_is_what_we_document() {
        let mut table = Vec::new();
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                if allowed(from, to) {
                    table.push(format!("{from}->{to}"));
                }
            }
        }
        // Nothing leaves a finished state except clearing and marking.
        for from in TaskState::ALL.into_iter().filter(|s| s.is_finished()) {
            for to in TaskState::ALL {
                if allowed(from, to) {
                    assert!(matches!(to, None | Success | Failed), "{from}->{to}");
                }
            }
        }
        // Only a claim starts a try; only a try ends in up_for_retry.
        assert_eq!(TaskState::sources_of(Running), vec!["queued"]);
        assert_eq!(TaskState::sources_of(UpForRetry), vec!["running"]);
        assert_eq!(TaskState::sources_of(Queued), vec!["scheduled"]);
        assert!(!allowed(None, Queued) && !allowed(None, Running));
        assert!(!allowed(Success, Skipped) && !allowed(Failed, Running));
        assert_eq!(table.len(), 39, "{table:?}");
    }

    #[test]
    fn states_round_trip_through_text() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
        }
        for state in RunState::ALL {
            assert_eq!(state.as_str().parse::<RunState>(), Ok(state));
        }
        assert!("restarting".parse::<TaskState>().is_err());
    }

    #[test]
    fn run_transitions() {
        assert!(run_allowed(RunState::Queued, RunState::Running));
        assert!(run_allowed(RunState::Running, RunState::Success));
        assert!(run_allowed(RunState::Success, RunState::Queued));
        assert!(!run_allowed(RunState::Success, RunState::Running));
        assert!(!run_allowed(RunState::Running, RunState::Running));
    }
}
