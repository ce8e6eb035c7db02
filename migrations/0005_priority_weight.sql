-- Airflow's priority weight (weight_rule `downstream`: the task plus every task below it),
-- stored when a run's task instances are created. Executors claim heavier tasks first, then
-- older runs: a run's next step no longer waits behind every leaf of older wide runs.
ALTER TABLE task_instance ADD COLUMN priority_weight INTEGER NOT NULL DEFAULT 1;

DROP INDEX task_instance_claim_order;
CREATE INDEX task_instance_claim_order ON task_instance (priority_weight DESC, dag_run_id, id)
    WHERE state = 'queued';
