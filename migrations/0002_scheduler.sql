-- Scheduler additions (additive only).

-- The DAG version for which next_dagrun* was last computed; NULL = compute again.
ALTER TABLE dag ADD COLUMN next_dagrun_checked_version BIGINT;

-- max_active_tasks counts a DAG's queued and running task instances.
CREATE INDEX task_instance_dag_active ON task_instance (dag_id, state)
    WHERE state IN ('scheduled', 'queued', 'running');

-- Moves a DAG's `scheduled` task instances to `queued`, oldest first, within max_active_tasks.
-- The advisory lock serialises this per DAG across processes so the limit holds.
CREATE FUNCTION updraft_queue_tasks(p_dag_id TEXT) RETURNS INTEGER AS $$
DECLARE
    v_limit  INTEGER;
    v_active INTEGER;
    v_queued INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('updraft_queue:' || p_dag_id));
    SELECT max_active_tasks INTO v_limit FROM dag WHERE dag_id = p_dag_id;
    v_limit := coalesce(v_limit, 16);
    SELECT count(*) INTO v_active FROM task_instance
        WHERE dag_id = p_dag_id AND state IN ('queued', 'running');
    IF v_active >= v_limit THEN
        RETURN 0;
    END IF;
    UPDATE task_instance SET state = 'queued', queued_at = now(), updated_at = now()
    WHERE id IN (SELECT id FROM task_instance
                 WHERE dag_id = p_dag_id AND state = 'scheduled'
                 ORDER BY id LIMIT v_limit - v_active);
    GET DIAGNOSTICS v_queued = ROW_COUNT;
    IF v_queued > 0 THEN
        PERFORM pg_notify('updraft_queued', p_dag_id);
    END IF;
    RETURN v_queued;
END
$$ LANGUAGE plpgsql;
