-- Updraft's run store. States are TEXT with CHECK constraints; the allowed transitions live in
-- orchestrator/src/store/state.rs. Timestamps are timestamptz (UTC).

-- A DAG as last parsed from its file. `is_active` goes false when the file disappears.
CREATE TABLE dag (
    dag_id                     TEXT PRIMARY KEY,
    fileloc                    TEXT NOT NULL,
    source_hash                TEXT NOT NULL,
    is_paused                  BOOLEAN NOT NULL,
    is_active                  BOOLEAN NOT NULL DEFAULT TRUE,
    description                TEXT,
    schedule                   TEXT,                 -- as written; NULL = manual runs only
    timezone                   TEXT NOT NULL DEFAULT 'UTC',
    owners                     TEXT NOT NULL DEFAULT '',
    tags                       TEXT[] NOT NULL DEFAULT '{}',
    max_active_runs            INTEGER NOT NULL DEFAULT 16,
    max_active_tasks           INTEGER NOT NULL DEFAULT 16,
    latest_version_id          BIGINT,
    -- The next scheduled run: its logical date, data interval, and when it may be created.
    next_dagrun                TIMESTAMPTZ,
    next_dagrun_interval_start TIMESTAMPTZ,
    next_dagrun_interval_end   TIMESTAMPTZ,
    next_dagrun_create_after   TIMESTAMPTZ,
    last_parsed_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at                 TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dag_schedulable ON dag (next_dagrun_create_after) WHERE is_active AND NOT is_paused;

-- Every distinct parsed form of a DAG; runs point at the version they started with.
CREATE TABLE dag_version (
    id             BIGSERIAL PRIMARY KEY,
    dag_id         TEXT NOT NULL REFERENCES dag (dag_id) ON DELETE CASCADE,
    version_number INTEGER NOT NULL,
    source_hash    TEXT NOT NULL,
    snapshot       JSONB NOT NULL,       -- Dag::snapshot()
    source         TEXT NOT NULL,        -- the YAML as read
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (dag_id, version_number),
    UNIQUE (dag_id, source_hash)
);
ALTER TABLE dag ADD CONSTRAINT dag_latest_version_fk
    FOREIGN KEY (latest_version_id) REFERENCES dag_version (id) DEFERRABLE INITIALLY DEFERRED;

-- Files that failed to parse; the row is removed when the file is fixed or deleted.
CREATE TABLE import_error (
    id          BIGSERIAL PRIMARY KEY,
    fileloc     TEXT NOT NULL UNIQUE,
    source_hash TEXT NOT NULL,
    message     TEXT NOT NULL,           -- one diagnostic per line, each with file:line:col
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE dag_run (
    id                  BIGSERIAL PRIMARY KEY,
    dag_id              TEXT NOT NULL REFERENCES dag (dag_id) ON DELETE CASCADE,
    run_id              TEXT NOT NULL,
    run_type            TEXT NOT NULL CHECK (run_type IN ('scheduled', 'manual', 'backfill')),
    logical_date        TIMESTAMPTZ NOT NULL,
    data_interval_start TIMESTAMPTZ NOT NULL,
    data_interval_end   TIMESTAMPTZ NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('queued', 'running', 'success', 'failed')),
    conf                JSONB NOT NULL DEFAULT '{}',
    note                TEXT,
    dag_version_id      BIGINT NOT NULL REFERENCES dag_version (id),
    queued_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    start_date          TIMESTAMPTZ,
    end_date            TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (dag_id, run_id),
    -- As in Airflow: one run per logical date, which also stops two schedulers creating the same run.
    UNIQUE (dag_id, logical_date)
);
CREATE INDEX dag_run_unfinished ON dag_run (dag_id, state) WHERE state IN ('queued', 'running');
CREATE INDEX dag_run_recent ON dag_run (dag_id, logical_date DESC);

CREATE TABLE task_instance (
    id               BIGSERIAL PRIMARY KEY,
    dag_run_id       BIGINT NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    dag_id           TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    operator         TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'none' CHECK (state IN (
                         'none', 'scheduled', 'queued', 'running', 'success', 'failed',
                         'up_for_retry', 'upstream_failed', 'skipped', 'removed')),
    try_number       INTEGER NOT NULL DEFAULT 0,   -- the try running or last run; 0 = never ran
    max_tries        INTEGER NOT NULL DEFAULT 0,   -- retries, as in Airflow (tries = retries + 1)
    owner            TEXT,                          -- the process that claimed the running try
    heartbeat_at     TIMESTAMPTZ,
    next_retry_at    TIMESTAMPTZ,
    queued_at        TIMESTAMPTZ,
    start_date       TIMESTAMPTZ,
    end_date         TIMESTAMPTZ,
    duration         DOUBLE PRECISION,              -- seconds
    rendered_config  JSONB,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (dag_run_id, task_id)
);
CREATE INDEX task_instance_claimable ON task_instance (queued_at) WHERE state = 'queued';
CREATE INDEX task_instance_running ON task_instance (heartbeat_at) WHERE state = 'running';
CREATE INDEX task_instance_retry ON task_instance (next_retry_at) WHERE state = 'up_for_retry';
CREATE INDEX task_instance_by_dag ON task_instance (dag_id, run_id);

CREATE TABLE xcom (
    task_instance_id BIGINT NOT NULL REFERENCES task_instance (id) ON DELETE CASCADE,
    key              TEXT NOT NULL,       -- 'return_value' for an operator's output
    value            JSONB NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (task_instance_id, key)
);

CREATE TABLE task_log (
    id               BIGSERIAL PRIMARY KEY,
    task_instance_id BIGINT NOT NULL REFERENCES task_instance (id) ON DELETE CASCADE,
    try_number       INTEGER NOT NULL,
    logged_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    line             TEXT NOT NULL
);
CREATE INDEX task_log_by_try ON task_log (task_instance_id, try_number, id);

CREATE TABLE variable (
    key         TEXT PRIMARY KEY,
    val         TEXT NOT NULL,
    description TEXT
);

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,          -- argon2 PHC string
    role          TEXT NOT NULL CHECK (role IN ('admin', 'op', 'viewer')),
    active        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- UI sessions: the cookie carries a random token; only its hash is stored.
CREATE TABLE web_session (
    token_hash  TEXT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Live scheduler processes, for /health and for diagnosing who owns what.
CREATE TABLE scheduler_process (
    id           TEXT PRIMARY KEY,       -- hostname:pid:random
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
