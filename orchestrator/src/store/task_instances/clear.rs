//! Airflow's clear and mark of task instances (the caller holds the run's lock).

use sqlx::PgConnection;

use super::{ANY_STATE_BUT_NONE, MARK_FAILED_FROM, MARK_SUCCESS_FROM, UNFINISHED};
use crate::dag::{RunState, TaskState};

/// A task instance a clear selects.
#[derive(Debug, Clone)]
pub struct Clearable {
    pub id: i64,
    pub task_id: String,
}

/// The task instances of a (locked) run among `task_ids` in one of `states`.
pub async fn clearable(
    conn: &mut PgConnection,
    dag_run_id: i64,
    task_ids: &[String],
    states: &[TaskState],
) -> Result<Vec<Clearable>, sqlx::Error> {
    sqlx::query_as!(
        Clearable,
        "SELECT id, task_id FROM task_instance
          WHERE dag_run_id = $1 AND task_id = ANY($2) AND state = ANY($3) ORDER BY id",
        dag_run_id,
        task_ids,
        states as _,
    )
    .fetch_all(conn)
    .await
}

/// Airflow's clear of task instances (by id): back to `none`, unclaimed, with `max_tries`
/// raised by each task's `retries` so their retries are available again.
pub async fn reset_for_clear(
    conn: &mut PgConnection,
    ids: &[i64],
    retries: &[i32],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        // The try being reset is kept in `task_try` (read before the update: one snapshot).
        "WITH kept AS (
             INSERT INTO task_try (task_instance_id, try_number, state, queued_at, start_date,
                                   end_date, owner)
             SELECT id, try_number, state, queued_at, start_date, end_date, owner
               FROM task_instance
              WHERE id = ANY($1) AND state = ANY($3) AND try_number > 0
             ON CONFLICT DO NOTHING)
         UPDATE task_instance t SET state = 'none', owner = NULL, heartbeat_at = NULL,
                next_retry_at = NULL, queued_at = NULL, end_date = NULL, duration = NULL,
                max_tries = t.try_number + c.retries, updated_at = now()
           FROM unnest($1::bigint[], $2::int[]) AS c(id, retries)
          WHERE t.id = c.id AND t.state = ANY($3)",
        ids,
        retries,
        ANY_STATE_BUT_NONE as _,
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Airflow's "mark run success/failed" for the unfinished task instances of a (locked) run:
/// success makes them all `success`; failed makes running tries `failed` and the rest
/// `skipped`. A running try loses its claim and is cancelled at its next heartbeat.
pub async fn mark_unfinished(
    conn: &mut PgConnection,
    dag_run_id: i64,
    run_state: RunState,
) -> Result<(), sqlx::Error> {
    match run_state {
        RunState::Success => {
            sqlx::query!(
                "UPDATE task_instance SET state = 'success', end_date = now(), owner = NULL,
                        updated_at = now()
                  WHERE dag_run_id = $1 AND state = ANY($2)",
                dag_run_id,
                UNFINISHED as _,
            )
            .execute(conn)
            .await?;
        }
        RunState::Failed => {
            sqlx::query!(
                "UPDATE task_instance SET state = CASE WHEN state = 'running' THEN 'failed'
                                                      ELSE 'skipped' END,
                        end_date = now(), owner = NULL, updated_at = now()
                  WHERE dag_run_id = $1 AND state = ANY($2)",
                dag_run_id,
                UNFINISHED as _,
            )
            .execute(conn)
            .await?;
        }
        RunState::Queued | RunState::Running => {}
    }
    Ok(())
}

/// Airflow's "mark success/failed" of one task instance of a (locked) run (`state` is
/// `success` or `failed`); its running try, if any, loses its claim. Returns the state it had (`None`: no such task instance); a task
/// already in `state` is left as it is.
pub async fn mark_one(
    conn: &mut PgConnection,
    dag_run_id: i64,
    task_id: &str,
    state: TaskState,
) -> Result<Option<TaskState>, sqlx::Error> {
    let from = sqlx::query_scalar!(
        r#"SELECT state AS "state: TaskState" FROM task_instance
            WHERE dag_run_id = $1 AND task_id = $2"#,
        dag_run_id,
        task_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let sources = match state {
        TaskState::Success => MARK_SUCCESS_FROM,
        TaskState::Failed => MARK_FAILED_FROM,
        // Not a user's mark: changes nothing.
        _ => &[],
    };
    if from.is_some_and(|from| from != state) {
        sqlx::query!(
            "UPDATE task_instance SET state = $3, end_date = now(), owner = NULL,
                    heartbeat_at = NULL, next_retry_at = NULL, updated_at = now()
              WHERE dag_run_id = $1 AND task_id = $2 AND state = ANY($4)",
            dag_run_id,
            task_id,
            state as _,
            sources as _,
        )
        .execute(conn)
        .await?;
    }
    Ok(from)
}
