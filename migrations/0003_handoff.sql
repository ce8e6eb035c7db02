-- Fast task-to-task hand-off: a try's end and its run's next step in two short statements
-- instead of eight, and the completing process claims the downstream tasks it queued itself.

-- Claim order: oldest run first, so a running run's next task does not queue behind a newer
-- run's wide fan-out.
CREATE INDEX task_instance_claim_order ON task_instance (dag_run_id, id) WHERE state = 'queued';

-- Step 1 of a hand-off: stores the try's end (only if the row is still ours) and returns the
-- run's task states, read after that write, ordered by id. No row: the try is no longer ours.
-- A retry wakes the schedulers (`updraft_tasks`) so one of them promotes it when due.
CREATE FUNCTION updraft_end_try(
    p_id BIGINT, p_owner TEXT, p_state TEXT, p_rendered JSONB, p_next_retry TIMESTAMPTZ,
    p_output JSONB)
RETURNS TABLE (id BIGINT, task_id TEXT, state TEXT) AS $$
DECLARE
    v_run BIGINT;
    v_dag TEXT;
BEGIN
    UPDATE task_instance t SET state = p_state, end_date = now(),
        duration = extract(epoch FROM now() - t.start_date), rendered_config = p_rendered,
        next_retry_at = p_next_retry, updated_at = now()
    WHERE t.id = p_id AND t.owner = p_owner AND t.state = 'running'
    RETURNING t.dag_run_id, t.dag_id INTO v_run, v_dag;
    IF v_run IS NULL THEN
        RETURN;
    END IF;
    IF p_output IS NOT NULL THEN
        INSERT INTO xcom (task_instance_id, key, value) VALUES (p_id, 'return_value', p_output)
        ON CONFLICT (task_instance_id, key) DO UPDATE SET value = EXCLUDED.value;
    END IF;
    IF p_state = 'up_for_retry' THEN
        PERFORM pg_notify('updraft_tasks', v_dag);
    END IF;
    RETURN QUERY SELECT t.id, t.task_id, t.state FROM task_instance t
        WHERE t.dag_run_id = v_run ORDER BY t.id;
END
$$ LANGUAGE plpgsql;

-- A state as trigger rules and run ends see it: finished states and `none` as they are, the
-- rest (scheduled, queued, running, up_for_retry) as 'pending'.
CREATE FUNCTION updraft_state_category(p_state TEXT) RETURNS TEXT AS $$
    SELECT CASE WHEN p_state IN ('none', 'success', 'failed', 'upstream_failed', 'skipped',
                                 'removed') THEN p_state ELSE 'pending' END
$$ LANGUAGE sql IMMUTABLE;

-- Step 2: applies the decisions the caller made from step 1's states, if they still hold now
-- that the run is locked (so they are the decisions one would make under the lock):
--   * the run is running (else kind 'gone');
--   * its `none` tasks are still `p_none_ids` (no other decision, clear or mark since);
--   * the upstream tasks of those, `p_up_ids`, are still in categories `p_up_cats` (a try
--     that ended concurrently may change a decision);
--   * without `p_finish`, one of `p_pending_ids` (unfinished after the decisions) still is
--     (else a concurrent end may have finished the run).
-- Otherwise it returns the run's current states (kind 'state') to decide again. Then it ends
-- the run (`p_finish`), queues the DAG's scheduled tasks within max_active_tasks (per-DAG
-- advisory lock, as updraft_queue_tasks), and claims up to `p_claim` of this run's queued
-- tasks for `p_owner` (kind 'claimed'). Kind 'queue': tasks wait for the slot the ended try
-- freed; the caller runs updraft_queue_tasks once this has committed.
CREATE FUNCTION updraft_advance_run(
    p_run BIGINT, p_none_ids BIGINT[], p_up_ids BIGINT[], p_up_cats TEXT[],
    p_pending_ids BIGINT[], p_ids BIGINT[], p_states TEXT[], p_finish TEXT, p_owner TEXT,
    p_claim INTEGER)
RETURNS TABLE (kind TEXT, id BIGINT, task_id TEXT, state TEXT, try_number INTEGER,
               max_tries INTEGER) AS $$
DECLARE
    v_dag     TEXT;
    v_state   TEXT;
    v_limit   INTEGER;
    v_active  INTEGER;
    v_queued  INTEGER := 0;
    v_claimed INTEGER := 0;
    v_new     INTEGER;
    v_margin  INTEGER;
BEGIN
    IF cardinality(p_none_ids) = 0 AND cardinality(p_ids) = 0 AND p_finish IS NULL THEN
        -- Nothing to decide (a wide run's end): no run lock, so its many ends do not queue
        -- on it. The run ends when no task is pending; this reads after the caller's end
        -- committed, so of two ends at once at least one sees the other's: it then takes
        -- the locked path to end the run.
        SELECT r.dag_id, r.state INTO v_dag, v_state FROM dag_run r WHERE r.id = p_run;
        IF v_state IS DISTINCT FROM 'running' THEN
            RETURN QUERY SELECT 'gone'::text, NULL::bigint, NULL::text, NULL::text, NULL::int,
                NULL::int;
            RETURN;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM task_instance t WHERE t.id = ANY (p_pending_ids)
                       AND updraft_state_category(t.state) IN ('none', 'pending')) THEN
            RETURN QUERY SELECT 'state'::text, t.id, t.task_id, t.state, NULL::int, NULL::int
                FROM task_instance t WHERE t.dag_run_id = p_run ORDER BY t.id;
            RETURN;
        END IF;
        PERFORM pg_advisory_xact_lock_shared(hashtext('updraft_queue:' || v_dag));
        IF EXISTS (SELECT 1 FROM task_instance t
                   WHERE t.dag_id = v_dag AND t.state = 'scheduled') THEN
            RETURN QUERY SELECT 'queue'::text, NULL::bigint, NULL::text, NULL::text,
                NULL::int, NULL::int;
        END IF;
        RETURN;
    END IF;
    SELECT r.dag_id, r.state INTO v_dag, v_state FROM dag_run r WHERE r.id = p_run FOR UPDATE;
    IF v_state IS DISTINCT FROM 'running' THEN
        RETURN QUERY SELECT 'gone'::text, NULL::bigint, NULL::text, NULL::text, NULL::int,
            NULL::int;
        RETURN;
    END IF;
    IF (SELECT coalesce(array_agg(t.id ORDER BY t.id), '{}') FROM task_instance t
        WHERE t.dag_run_id = p_run AND t.state = 'none') IS DISTINCT FROM p_none_ids
       OR EXISTS (SELECT 1 FROM unnest(p_up_ids, p_up_cats) AS u(id, cat)
                  LEFT JOIN task_instance t ON t.id = u.id
                  WHERE updraft_state_category(t.state) IS DISTINCT FROM u.cat)
       OR (p_finish IS NULL AND NOT EXISTS (
              SELECT 1 FROM task_instance t WHERE t.id = ANY (p_pending_ids)
              AND updraft_state_category(t.state) IN ('none', 'pending'))) THEN
        RETURN QUERY SELECT 'state'::text, t.id, t.task_id, t.state, NULL::int, NULL::int
            FROM task_instance t WHERE t.dag_run_id = p_run ORDER BY t.id;
        RETURN;
    END IF;
    IF cardinality(p_ids) > 0 THEN
        UPDATE task_instance t SET state = d.state, updated_at = now(),
            end_date = CASE WHEN d.state = 'scheduled' THEN NULL ELSE now() END
        FROM unnest(p_ids, p_states) AS d(id, state)
        WHERE t.id = d.id AND t.state = 'none';
    END IF;
    IF p_finish IS NOT NULL THEN
        UPDATE dag_run r SET state = p_finish, end_date = now(), updated_at = now()
            WHERE r.id = p_run AND r.state = 'running';
        PERFORM pg_notify('updraft_runs', v_dag);
    END IF;
    v_new := (SELECT count(*) FROM unnest(p_states) AS d(state) WHERE d.state = 'scheduled');
    SELECT d.max_active_tasks INTO v_limit FROM dag d WHERE d.dag_id = v_dag;
    v_limit := coalesce(v_limit, 16);
    -- Far below max_active_tasks, hand-offs of the same DAG need not queue one at a time:
    -- under the shared lock (which excludes every exclusive queuer) each adds at most 8
    -- tasks, and at most max_connections - 1 others can be adding unseen, so a count with
    -- that margin keeps the limit exact.
    v_margin := current_setting('max_connections')::int * 8;
    IF v_new BETWEEN 1 AND 8 AND v_limit > v_margin + v_new THEN
        PERFORM pg_advisory_xact_lock_shared(hashtext('updraft_queue:' || v_dag));
        SELECT count(*) INTO v_active FROM task_instance t
            WHERE t.dag_id = v_dag AND t.state IN ('queued', 'running');
        IF v_active + v_new + v_margin <= v_limit THEN
            UPDATE task_instance t SET state = 'queued', queued_at = now(), updated_at = now()
            WHERE t.id = ANY (p_ids) AND t.state = 'scheduled';
            GET DIAGNOSTICS v_queued = ROW_COUNT;
        ELSE
            -- Near the limit after all: queue exactly once this commits.
            RETURN QUERY SELECT 'queue'::text, NULL::bigint, NULL::text, NULL::text,
                NULL::int, NULL::int;
        END IF;
    ELSIF v_new > 0 THEN
        -- Queue what this step scheduled (and older scheduled tasks first, as
        -- updraft_queue_tasks), serialised per DAG so max_active_tasks holds.
        PERFORM pg_advisory_xact_lock(hashtext('updraft_queue:' || v_dag));
        SELECT count(*) INTO v_active FROM task_instance t
            WHERE t.dag_id = v_dag AND t.state IN ('queued', 'running');
        IF v_active < v_limit THEN
            UPDATE task_instance t SET state = 'queued', queued_at = now(), updated_at = now()
            WHERE t.id IN (SELECT s.id FROM task_instance s
                           WHERE s.dag_id = v_dag AND s.state = 'scheduled'
                           ORDER BY s.id LIMIT v_limit - v_active);
            GET DIAGNOSTICS v_queued = ROW_COUNT;
        END IF;
    ELSE
        -- Nothing new, but the ended try freed a slot: tasks waiting for one must be queued.
        -- The shared lock waits for a queuer that may not have counted that end yet, so its
        -- leftovers are visible here; the caller then queues them (kind 'queue').
        PERFORM pg_advisory_xact_lock_shared(hashtext('updraft_queue:' || v_dag));
        IF EXISTS (SELECT 1 FROM task_instance t
                   WHERE t.dag_id = v_dag AND t.state = 'scheduled') THEN
            RETURN QUERY SELECT 'queue'::text, NULL::bigint, NULL::text, NULL::text,
                NULL::int, NULL::int;
        END IF;
    END IF;
    IF v_queued > 0 AND p_claim > 0 THEN
        RETURN QUERY
        WITH picked AS MATERIALIZED (
            SELECT s.id FROM task_instance s WHERE s.dag_run_id = p_run AND s.state = 'queued'
            ORDER BY s.id LIMIT p_claim FOR UPDATE SKIP LOCKED)
        UPDATE task_instance t SET state = 'running', owner = p_owner, heartbeat_at = now(),
            try_number = t.try_number + 1, start_date = now(), end_date = NULL, duration = NULL,
            next_retry_at = NULL, updated_at = now()
        FROM picked p WHERE t.id = p.id AND t.state = 'queued'
        RETURNING 'claimed'::text, t.id, t.task_id, t.state, t.try_number, t.max_tries;
        GET DIAGNOSTICS v_claimed = ROW_COUNT;
    END IF;
    IF v_queued > v_claimed THEN
        PERFORM pg_notify('updraft_queued', v_dag);
    END IF;
END
$$ LANGUAGE plpgsql;

-- These run thousands of times a second with plans cached per connection; a plan made while
-- task_instance was small (a sequential scan) would be kept as it grows. Every query here
-- has an index path, so never scan the table.
ALTER FUNCTION updraft_end_try(BIGINT, TEXT, TEXT, JSONB, TIMESTAMPTZ, JSONB)
    SET enable_seqscan = off;
ALTER FUNCTION updraft_advance_run(BIGINT, BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[],
    TEXT[], TEXT, TEXT, INTEGER) SET enable_seqscan = off;
ALTER FUNCTION updraft_queue_tasks(TEXT) SET enable_seqscan = off;
