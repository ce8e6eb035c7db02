//! The run engine: the path of a run, top to bottom.
//!
//! ```text
//! trigger.rs     manual / backfill / scheduled run          → dag_run (queued)
//! advance.rs     start within max_active_runs, decide        → task_instance none → scheduled
//!                (decide.rs: trigger rules), queue within       → queued
//!                max_active_tasks
//! executor/      claim (FOR UPDATE SKIP LOCKED)              → running
//!   try_run.rs   inputs (XCom, variables, params)
//! render.rs      templates rendered once per try
//! execute.rs     the operator, under execution_timeout
//!   ends.rs      end the try (batched with other ends)       → success | failed | up_for_retry
//! advance.rs     hand-off: decide downstream, claim them     → running, … run success | failed
//! scheduler/     the loop that drives it: NOTIFY events, and the sweep (due runs, retries,
//!                the reaper, stalled runs)
//! state_feed.rs  tells the UI which DAGs' tasks changed state (NOTIFY, at most every 100 ms)
//! batch.rs       the writers that batch ends and hand-off decisions into one statement
//! clear.rs       the user's clear and mark
//! local.rs       `updraft dags test`: the same decide, render and execute, states in memory
//! ```
//!
//! The rules (trigger rules, data intervals, params, the transition table) are pure and live
//! beside the DAG model in `crate::dag`; every statement lives in `crate::store`. The scheduler
//! starts the executor; both call `advance`, and neither calls the other.

pub mod advance;
pub(crate) mod batch;
pub mod clear;
pub mod decide;
pub mod execute;
pub mod executor;
pub mod local;
pub mod render;
pub mod scheduler;
pub mod state_feed;
pub mod trigger;

pub use scheduler::{Scheduler, SchedulerConfig};
