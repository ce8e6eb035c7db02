//! Updraft's orchestrator: YAML file → parsed `Dag` → `DagRun` → task instances claimed →
//! operator executes → state stored.

pub mod dag;
pub mod processor;
pub mod store;
pub mod task_runner;
