//! DAGs: the YAML format, its parser and validator, and the validated model.

pub mod folder;
pub mod local_run;
pub mod model;
pub mod parse;
mod reader;
pub mod schema;
pub mod tasks;
pub mod template;
pub mod values;
pub mod yaml;

pub use folder::{FolderLoad, ImportError, LoadedDag, load_file, load_folder};
pub use model::{Dag, Param, ParamType, RetryPolicy, Schedule, Task, TaskGraph, TriggerRule};
pub use parse::{Diagnostic, parse_dag};
