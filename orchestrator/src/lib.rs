//! Updraft's orchestrator: YAML file → parsed `Dag` → `DagRun` → task instances claimed →
//! operator executes → state stored.

pub mod dag;
pub mod executor;
pub mod metrics;
pub mod processor;
pub mod scheduler;
pub mod store;
pub mod task_runner;
