//! DAGs: the YAML format, its parser and validator, and the validated model.

pub mod folder;
pub mod model;
pub mod parse;

pub use folder::{FolderLoad, ImportError, LoadedDag, load_file, load_folder};
pub use model::{Dag, Param, ParamType, RetryPolicy, Schedule, Task, TaskGraph, TriggerRule};
pub use parse::{Diagnostic, parse_dag};
