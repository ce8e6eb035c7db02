-- A task instance changes state by an update that cannot be HOT (`state` is in the partial
-- indexes' predicates), so each change adds an entry to every full index of the table: the
-- run engine's ends and claims pay for each one. Lookups by DAG and run go through dag_run's
-- (dag_id, run_id) to task_instance's (dag_run_id, task_id) instead of this index.
DROP INDEX task_instance_by_dag;
