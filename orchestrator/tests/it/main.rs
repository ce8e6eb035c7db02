//! The orchestrator's integration tests, one binary: the DAG parser and its schema, the processor
//! and the scheduler against the real PostgreSQL, `dags test` against the real Kafka.
//!   cargo test -p updraft-orchestrator --test it [<module>::]

mod architecture;
mod dag_parse;
mod dag_parse_fuzz;
mod dag_schema;
mod dag_user_automation;
mod engine_regressions;
mod failure_safety;
mod plugins_in_dags;
mod postgres_smoke;
mod processor;
mod publish_retry;
#[path = "../support/runs.rs"]
mod runs;
mod scheduler_limits;
mod scheduler_runs;
mod scheduler_scheduling;
mod scheduler_support;
mod secrets_in_tasks;
mod shell_injection;
mod store_tries;
mod trigger_dag;
