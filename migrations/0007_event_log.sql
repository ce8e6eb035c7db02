-- The audit log (Airflow's `log` table, read by GET /api/v1/eventLogs): one row per state change
-- made by a person through the UI, the REST API or the CLI: who, what, on which DAG/run/task,
-- when, and from where.
CREATE TABLE event_log (
    id           BIGSERIAL PRIMARY KEY,
    logged_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    event        TEXT NOT NULL,
    owner        TEXT NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('ui', 'api', 'cli')),
    remote_addr  TEXT,
    dag_id       TEXT,
    run_id       TEXT,
    task_id      TEXT,
    extra        JSONB
);

-- Lists go by id (the primary key); this serves the filter by DAG.
CREATE INDEX event_log_by_dag ON event_log (dag_id, id);
