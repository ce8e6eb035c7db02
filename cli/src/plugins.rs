//! `updraft plugins list|check`, and the registry every command that runs or checks DAGs uses:
//! the built-in operators and the plugins under the plugins folder.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use updraft_operators::Registry;
use updraft_operators::plugins::{self, Discovery};

#[derive(Args, Clone)]
pub struct PluginsFolder {
    /// Where operator plugins live (a folder per plugin, each with a `plugin.yaml`).
    #[arg(
        long = "plugins-folder",
        env = "UPDRAFT_PLUGINS_FOLDER",
        default_value = "plugins"
    )]
    pub plugins_folder: PathBuf,
}

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// The plugins found, their versions and operators (each plugin's `spec` is run).
    List(PluginsFolder),
    /// Like `list`, and exits 1 when a plugin does not load.
    Check(PluginsFolder),
}

/// `operators` (the built-in ones and the app's own) and every plugin that loads; the others
/// are in the discovery's errors (and the registry says why their operators are missing).
pub async fn registry(folder: &Path, operators: &Registry) -> (Registry, Discovery) {
    let mut registry = operators.clone();
    let discovery = plugins::discover(folder, &registry.names()).await;
    discovery.register(&mut registry);
    (registry, discovery)
}

/// [`registry`], telling stderr about each plugin that does not load.
pub async fn registry_for_cli(folder: &Path, operators: &Registry) -> Registry {
    let (registry, discovery) = registry(folder, operators).await;
    for error in &discovery.errors {
        eprintln!("plugin not loaded: {error}");
    }
    registry
}

pub async fn run(command: PluginsCommand, operators: &Registry) -> anyhow::Result<()> {
    let (PluginsCommand::List(folder) | PluginsCommand::Check(folder)) = &command;
    let (_, discovery) = registry(&folder.plugins_folder, operators).await;
    if discovery.plugins.is_empty() && discovery.errors.is_empty() {
        println!("no plugins in {}", folder.plugins_folder.display());
    }
    for plugin in &discovery.plugins {
        let manifest = &plugin.manifest;
        let operators: Vec<&str> = manifest.operators.iter().map(String::as_str).collect();
        println!(
            "{} {}  {}  operators: {}",
            manifest.name,
            manifest.version,
            manifest.folder.display(),
            operators.join(", ")
        );
    }
    for error in &discovery.errors {
        println!("NOT LOADED {error}");
    }
    if matches!(command, PluginsCommand::Check(_)) && !discovery.errors.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
