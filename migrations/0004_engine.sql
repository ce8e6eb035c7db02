-- One run engine: the scheduling rules live in Rust (orchestrator/src/dag, orchestrator/src/engine)
-- and the store's statements only apply them, so the plpgsql copies of those rules go.
DROP FUNCTION updraft_advance_run(BIGINT, BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[],
    TEXT, TEXT, INTEGER);
DROP FUNCTION updraft_end_try(BIGINT, TEXT, TEXT, JSONB, TIMESTAMPTZ, JSONB);
DROP FUNCTION updraft_state_category(TEXT);
DROP FUNCTION updraft_queue_tasks(TEXT);

-- How many of a running run's task instances are not finished. Every statement that finishes
-- task instances of a running run lowers it in the same statement, so the ends of one run are
-- serialised on this row: the one that brings it to zero ends the run, and each end can tell
-- whether another end committed after the states it read.
ALTER TABLE dag_run ADD COLUMN unfinished_tasks INTEGER NOT NULL DEFAULT 0;
-- Room on each page for those updates to stay HOT (the column is in no index).
ALTER TABLE dag_run SET (fillfactor = 70);
UPDATE dag_run r SET unfinished_tasks = (
    SELECT count(*) FROM task_instance t WHERE t.dag_run_id = r.id
       AND t.state IN ('none', 'scheduled', 'queued', 'running', 'up_for_retry'))
 WHERE r.state = 'running';

-- Raised by every clear of the run (Airflow's `clear_number`): a decision taken from the states
-- before a clear is never applied after it.
ALTER TABLE dag_run ADD COLUMN clear_number INTEGER NOT NULL DEFAULT 0;

-- Defaults are the DAG model's (`Dag::default`): every row is written with explicit values.
ALTER TABLE dag ALTER COLUMN max_active_runs DROP DEFAULT;
ALTER TABLE dag ALTER COLUMN max_active_tasks DROP DEFAULT;

-- Task instances waiting for a max_active_tasks slot: a tiny index, so a try's end can ask
-- cheaply whether its DAG has any.
CREATE INDEX task_instance_waiting ON task_instance (dag_id, id) WHERE state = 'scheduled';
-- Claims use task_instance_claim_order; this one only cost every queued task an index entry.
DROP INDEX task_instance_claimable;

-- A process's liveness is its scheduler_process row's heartbeat, refreshed by the process;
-- task_instance.heartbeat_at is now when the running try was claimed, and the reaper takes the
-- tries of processes whose heartbeat stopped. The tries a process owns, for the reaper and
-- for the process's own check: the predicate names heartbeat_at, which those statements do
-- (a claim always sets it) and the end of a try does not, so ending tries by key can never be
-- planned as a scan of every running try.
DROP INDEX task_instance_running;
CREATE INDEX task_instance_owned ON task_instance (owner)
    WHERE state = 'running' AND heartbeat_at IS NOT NULL;
