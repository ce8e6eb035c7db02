//! The `updraft` command's integration tests, one binary: `updraft scheduler` processes on a
//! database of their own each (outages, SIGTERM, SIGKILL, a DAG file deleted mid-run).
//!   cargo test -p updraft-cli --test it [<module>::]

mod common;
mod dag_removed;
mod db_outage;
mod graceful_stop;
mod killed_shell;
mod plugins;
mod roles;
#[path = "../../../orchestrator/tests/support/runs.rs"]
mod runs;
mod scheduler_processes;
mod secrets;
