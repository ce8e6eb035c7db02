-- The tries a task instance had before its current one (Airflow's task_instance_history), for
-- the run's Gantt chart. A try is kept when a retry starts over (up_for_retry → scheduled) or
-- a clear resets it, off the path of every task's end.
CREATE TABLE task_try (
    task_instance_id BIGINT NOT NULL REFERENCES task_instance (id) ON DELETE CASCADE,
    try_number       INTEGER NOT NULL,
    state            TEXT NOT NULL,
    queued_at        TIMESTAMPTZ,
    start_date       TIMESTAMPTZ,
    end_date         TIMESTAMPTZ,
    owner            TEXT,
    PRIMARY KEY (task_instance_id, try_number)
);
