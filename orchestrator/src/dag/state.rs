//! Task-instance and run states, run types, and the one function that says which task-instance
//! transitions are allowed.
//!
//! States are stored as TEXT with CHECK constraints (`migrations/0001_initial.sql`), mapped to
//! these enums in one place (`store/types.rs`). Every store statement that changes a task state
//! declares its transition as a [`Transition`]; the statement's guard is built from it and a
//! store test checks each declared transition against [`allowed`].

use std::fmt;
use std::str::FromStr;

/// A task instance's state. `None` is Airflow's null: "not yet decided".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
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

    /// Started or waiting to start: what keeps a run busy.
    pub fn is_in_flight(self) -> bool {
        !self.is_finished() && self != TaskState::None
    }

    /// Every state from which `to` may be reached.
    pub fn sources_of(to: TaskState) -> Vec<TaskState> {
        TaskState::ALL
            .into_iter()
            .filter(|from| allowed(*from, to))
            .collect()
    }

    /// States not finished: the task still has to run or be decided.
    pub fn unfinished() -> Vec<TaskState> {
        TaskState::ALL
            .into_iter()
            .filter(|state| !state.is_finished())
            .collect()
    }
}

/// A state change a store statement makes: from any of `from` to `to`, possibly through
/// intermediate states in one write (`via`, e.g. a hand-off claims a task straight from `none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: &'static [TaskState],
    pub via: &'static [TaskState],
    pub to: TaskState,
}

impl Transition {
    pub const fn new(
        from: &'static [TaskState],
        via: &'static [TaskState],
        to: TaskState,
    ) -> Transition {
        Transition { from, via, to }
    }

    /// Whether every step, from each source through `via` to `to`, is allowed.
    pub fn is_allowed(&self) -> bool {
        self.from.iter().all(|from| {
            let mut steps = std::iter::once(*from)
                .chain(self.via.iter().copied())
                .chain(std::iter::once(self.to));
            let mut previous = steps.next();
            steps.all(|next| {
                let ok = previous.is_some_and(|previous| allowed(previous, next));
                previous = Some(next);
                ok
            })
        })
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// How a run was created (Airflow's run types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    Scheduled,
    Manual,
    Backfill,
}

impl RunType {
    pub const ALL: [RunType; 3] = [RunType::Scheduled, RunType::Manual, RunType::Backfill];

    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Scheduled => "scheduled",
            RunType::Manual => "manual",
            RunType::Backfill => "backfill",
        }
    }

    /// Airflow's run id: `<type>__<logical date, RFC 3339>`.
    pub fn run_id(self, logical_date: chrono::DateTime<chrono::Utc>) -> String {
        format!("{}__{}", self.as_str(), logical_date.to_rfc3339())
    }
}

impl fmt::Display for RunType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunType {
    type Err = UnknownState;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RunType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownState(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

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
        assert_eq!(TaskState::sources_of(Running), vec![Queued]);
        assert_eq!(TaskState::sources_of(UpForRetry), vec![Running]);
        assert_eq!(TaskState::sources_of(Queued), vec![Scheduled]);
        assert!(!allowed(None, Queued) && !allowed(None, Running));
        assert!(!allowed(Success, Skipped) && !allowed(Failed, Running));
        assert_eq!(table.len(), 39, "{table:?}");
    }

    #[test]
    fn states_round_trip_through_text() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, serde_json::json!(state.as_str()));
        }
        for state in RunState::ALL {
            assert_eq!(state.as_str().parse::<RunState>(), Ok(state));
        }
        for kind in RunType::ALL {
            assert_eq!(kind.as_str().parse::<RunType>(), Ok(kind));
        }
        assert!("restarting".parse::<TaskState>().is_err());
    }

    #[test]
    fn a_transition_through_intermediate_states_needs_every_step() {
        let claim_from_none = Transition {
            from: &[None],
            via: &[Scheduled, Queued],
            to: Running,
        };
        assert!(claim_from_none.is_allowed());
        let skipping_a_step = Transition {
            from: &[None],
            via: &[],
            to: Running,
        };
        assert!(!skipping_a_step.is_allowed());
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
