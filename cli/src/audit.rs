//! The audit log from the command line: who ran a command that changed state (the operating
//! system's user), recorded like a change made in the UI or through the API.

use serde_json::Value;
use sqlx::PgPool;
use updraft_orchestrator::store::event_log::{self, NewEvent, Source};

/// What a command changed: a DAG, one of its runs, one of its tasks; none for connections and
/// variables.
#[derive(Default, Clone, Copy)]
pub struct Target<'a> {
    pub dag_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
}

/// Records `event`; the change is made already, so a failure only warns.
pub async fn record(pool: &PgPool, event: &str, target: Target<'_>, extra: Option<Value>) {
    let owner = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let new = NewEvent {
        event,
        owner: &owner,
        source: Source::Cli,
        remote_addr: None,
        dag_id: target.dag_id,
        run_id: target.run_id,
        task_id: target.task_id,
        extra,
    };
    if let Err(error) = event_log::record(pool, &new).await {
        eprintln!("warning: the change is made but the audit log did not record it: {error}");
    }
}
