//! Updraft's orchestrator: YAML file → parsed `Dag` (`dag/`) → DAG processor (`processor/`) →
//! `DagRun` → task instances claimed → operator executes → state stored (`engine/`), all state
//! in PostgreSQL (`store/`).

pub mod dag;
pub mod engine;
pub mod metrics;
pub mod processor;
pub mod store;
