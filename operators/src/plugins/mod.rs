//! External operator plugins, in any language: a folder with a `plugin.yaml` and a program
//! speaking a small JSON protocol (`spec`, `run <operator>`; see docs/plugins.md). Discovery
//! reads every plugin under the plugins folder; a broken one is reported with its file and
//! reason and the others still load.

mod manifest;
mod operator;
mod spec;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use manifest::{MANIFEST, Manifest};
pub use operator::{MAX_MESSAGE_BYTES, PluginOperator};

use crate::{OperatorKind, PluginsLoad, Registry};

/// Why a plugin was not loaded: its file (with a position when the YAML says) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub file: PathBuf,
    pub position: Option<(usize, usize)>,
    pub message: String,
    /// The operators the plugin's manifest names, when it could be read.
    pub operators: Vec<String>,
}

impl PluginError {
    fn at(file: &Path, message: String) -> Self {
        PluginError {
            file: file.to_path_buf(),
            position: None,
            message,
            operators: Vec::new(),
        }
    }

    fn at_position(file: &Path, line: usize, column: usize, message: String) -> Self {
        PluginError {
            position: Some((line, column)),
            ..PluginError::at(file, message)
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => {
                write!(
                    f,
                    "{}:{line}:{column}: {}",
                    self.file.display(),
                    self.message
                )
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// A loaded plugin.
pub struct Plugin {
    pub manifest: Manifest,
    pub operators: Vec<Arc<PluginOperator>>,
}

/// What the plugins folder holds: the plugins that load, and why the others do not.
#[derive(Default)]
pub struct Discovery {
    /// The folder searched, absolute.
    pub folder: PathBuf,
    pub plugins: Vec<Plugin>,
    pub errors: Vec<PluginError>,
}

impl Discovery {
    /// Adds every loaded plugin's operators to `registry`, and the reason of each broken
    /// plugin to the operators it names (a DAG naming one is told why it is missing).
    pub fn register(&self, registry: &mut Registry) {
        for plugin in &self.plugins {
            for operator in &plugin.operators {
                registry.register_shared(operator.clone() as Arc<dyn OperatorKind>);
            }
        }
        for error in &self.errors {
            for name in &error.operators {
                if registry.get(name).is_none() {
                    registry.mark_unavailable(name, error.to_string());
                }
            }
        }
        registry.set_plugins_load(PluginsLoad {
            folder: self.folder.clone(),
            errors: self
                .errors
                .iter()
                .map(|error| (error.file.clone(), error.to_string()))
                .collect(),
        });
    }

    /// What the plugins say about themselves (manifests, specs, errors): equal fingerprints
    /// mean nothing a DAG can see has changed.
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        for plugin in &self.plugins {
            text.push_str(&format!("{:?}\n", plugin.manifest));
            for operator in &plugin.operators {
                text.push_str(&operator.fingerprint());
                text.push('\n');
            }
        }
        for error in &self.errors {
            text.push_str(&format!("{error}\n"));
        }
        text
    }
}

/// Folders holding a `plugin.yaml` under `folder` (a plugin's own subfolders are not searched),
/// sorted, at most `depth` levels down.
fn plugin_folders(folder: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if folder.join(MANIFEST).is_file() {
        found.push(folder.to_path_buf());
        return;
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let mut children: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    children.sort();
    for child in children {
        plugin_folders(&child, depth - 1, found);
    }
}

/// Reads every plugin under `folder` (none when it does not exist) and asks each for its
/// `spec`. `taken` are the names already registered (the built-in operators): a plugin may not
/// reuse one, nor one of an earlier plugin.
pub async fn discover(folder: &Path, taken: &[&str]) -> Discovery {
    let mut found = Vec::new();
    plugin_folders(folder, 3, &mut found);
    let mut discovery = Discovery {
        folder: std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf()),
        ..Discovery::default()
    };
    let mut names: Vec<String> = taken.iter().map(|name| name.to_string()).collect();
    for plugin_folder in found {
        let file = plugin_folder.join(MANIFEST);
        let manifest = match manifest::read(&plugin_folder) {
            Ok(manifest) => manifest,
            Err(error) => {
                discovery.errors.push(error);
                continue;
            }
        };
        let refuse = |message: String| PluginError {
            operators: manifest.operators.clone(),
            ..PluginError::at(
                &file,
                format!(
                    "plugin `{}` (operators {}): {message}",
                    manifest.name,
                    manifest
                        .operators
                        .iter()
                        .map(|name| format!("`{name}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        };
        if let Some(name) = manifest.operators.iter().find(|name| names.contains(name)) {
            let error = refuse(format!("operator `{name}` is already defined"));
            discovery.errors.push(error);
            continue;
        }
        let specs = match spec::read(&manifest).await {
            Ok(specs) => specs,
            Err(message) => {
                discovery.errors.push(refuse(message));
                continue;
            }
        };
        let operators: Result<Vec<_>, String> = specs
            .into_iter()
            .map(|(name, spec)| PluginOperator::new(&manifest, &name, spec).map(Arc::new))
            .collect();
        match operators {
            Ok(operators) => {
                names.extend(manifest.operators.iter().cloned());
                discovery.plugins.push(Plugin {
                    manifest,
                    operators,
                });
            }
            Err(message) => discovery.errors.push(refuse(message)),
        }
    }
    discovery
}
