//! DAGs: the YAML format, its parser and validator, the validated model, and the pure rules
//! that run it (states, trigger rules, schedules and data intervals, params). Nothing here
//! touches the database, the network or an operator: the run engine (`crate::engine`) does.

pub mod folder;
pub mod model;
pub mod params;
pub mod parse;
mod reader;
pub mod schema;
pub mod secret_lookup;
pub mod state;
pub mod tasks;
pub mod template;
pub mod timetable;
pub mod trigger_rules;
pub mod values;
pub mod yaml;

pub use folder::{
    FolderLoad, ImportError, LoadedDag, ParseCache, load_file, load_folder, load_folder_cached,
};
pub use model::{Dag, Param, ParamType, RetryPolicy, Schedule, Task, TaskGraph, TriggerRule};
pub use parse::{Diagnostic, parse_dag};
pub use state::{RunState, RunType, TaskState, Transition};

/// `--logical-date` and API dates: a date as in DAG files (`2023-09-03`, `2023-09-03 10:00`,
/// RFC 3339), UTC unless it has an offset.
pub fn parse_logical_date(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    values::parse_date(text, chrono_tz::Tz::UTC)
}
