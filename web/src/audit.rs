//! The audit log's writer for the UI and the API: each handler that changes state records who
//! did what, on what, and from where, once the change is made.

use serde_json::{Value, json};
use sqlx::PgPool;
use updraft_orchestrator::store::event_log::{self, NewEvent};

use crate::auth::CurrentUser;

/// What a change was made to.
#[derive(Debug, Default, Clone, Copy)]
pub struct Target<'a> {
    pub dag_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn dag(dag_id: &'a str) -> Self {
        Target {
            dag_id: Some(dag_id),
            ..Target::default()
        }
    }

    pub fn run(dag_id: &'a str, run_id: &'a str) -> Self {
        Target {
            run_id: Some(run_id),
            ..Target::dag(dag_id)
        }
    }

    pub fn task(dag_id: &'a str, run_id: &'a str, task_id: &'a str) -> Self {
        Target {
            task_id: Some(task_id),
            ..Target::run(dag_id, run_id)
        }
    }
}

/// Records `event` by `user`. The change is already made: a failure to record it is logged,
/// not returned to the user as if the change had failed.
pub async fn record(
    pool: &PgPool,
    user: &CurrentUser,
    event: &str,
    target: Target<'_>,
    extra: Option<Value>,
) {
    let new = NewEvent {
        event,
        owner: &user.user.username,
        source: user.origin.source,
        remote_addr: user.origin.remote_addr.as_deref(),
        dag_id: target.dag_id,
        run_id: target.run_id,
        task_id: target.task_id,
        extra,
    };
    if let Err(error) = event_log::record(pool, &new).await {
        tracing::error!(%error, event, user = %user.user.username, "cannot record an audit event");
    }
}

/// Records a change to the connection `conn_id` (`connection_create`, `_update`, `_delete`).
pub async fn connection(pool: &PgPool, user: &CurrentUser, event: &str, conn_id: &str) {
    let extra = json!({ "conn_id": conn_id });
    record(pool, user, event, Target::default(), Some(extra)).await;
}

/// Records a change to the variable `key` (`variable_set`, `variable_delete`).
pub async fn variable(pool: &PgPool, user: &CurrentUser, event: &str, key: &str) {
    record(
        pool,
        user,
        event,
        Target::default(),
        Some(json!({ "key": key })),
    )
    .await;
}
