//! Keeps the operators in step with the plugins folder: on file events (and every
//! `RESCAN_INTERVAL` as a safety net) it reads the plugins again and, when what they declare
//! changed, replaces the shared registry. The processor then parses every DAG file again; tries
//! already running keep the operators they started with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use updraft_operators::plugins::{self, Discovery};
use updraft_operators::{Registry, SharedRegistry};

/// How often the plugins are read again even without file events.
const RESCAN_INTERVAL: Duration = Duration::from_secs(60);
/// A plugin is copied in several files: wait for the burst of events to end.
const EVENT_SETTLE: Duration = Duration::from_millis(300);

pub struct PluginsWatcher {
    folder: PathBuf,
    /// The operators that do not come from the folder (built-in, the app's own).
    base: Registry,
    shared: SharedRegistry,
    /// What the plugins declared when last read; `None` before the first read.
    fingerprint: Option<String>,
}

impl PluginsWatcher {
    /// Reads the plugins under `folder` once; the registry it returns (the `base` operators and
    /// the plugins') is the one the watcher replaces when they change.
    pub async fn start(folder: PathBuf, base: Registry) -> (PluginsWatcher, SharedRegistry) {
        let shared = SharedRegistry::from(base.clone());
        let mut watcher = PluginsWatcher {
            folder,
            base,
            shared: shared.clone(),
            fingerprint: None,
        };
        watcher.rescan().await;
        (watcher, shared)
    }

    /// Reads the plugins again; replaces the registry and returns true when they changed.
    pub async fn rescan(&mut self) -> bool {
        let discovery = plugins::discover(&self.folder, &self.base.names()).await;
        let fingerprint = discovery.fingerprint();
        if self.fingerprint.as_ref() == Some(&fingerprint) {
            return false;
        }
        if self.fingerprint.is_some() {
            tracing::info!(folder = %self.folder.display(), "plugins changed: reloading operators");
        }
        report(&discovery);
        let mut registry = self.base.clone();
        discovery.register(&mut registry);
        self.shared.replace(registry);
        self.fingerprint = Some(fingerprint);
        true
    }

    /// Rescans on file events and every `RESCAN_INTERVAL` until cancelled. A folder that cannot
    /// be watched (it does not exist yet) is still rescanned on the interval.
    pub async fn run(mut self, cancel: CancellationToken) {
        let changed = Arc::new(Notify::new());
        let _watcher = self.watch(Arc::clone(&changed));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = changed.notified() => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(EVENT_SETTLE) => {}
                    }
                }
                _ = tokio::time::sleep(RESCAN_INTERVAL) => {}
            }
            self.rescan().await;
        }
    }

    fn watch(&self, changed: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|event| !event.kind.is_access()) {
                    changed.notify_one();
                }
            })
            .ok()?;
        match watcher.watch(&self.folder, RecursiveMode::Recursive) {
            Ok(()) => Some(watcher),
            Err(error) => {
                tracing::info!(folder = %self.folder.display(), %error, "plugins folder not watched; read again every minute");
                None
            }
        }
    }
}

fn report(discovery: &Discovery) {
    for plugin in &discovery.plugins {
        let manifest = &plugin.manifest;
        tracing::info!(plugin = %manifest.name, version = %manifest.version, operators = ?manifest.operators, "plugin loaded");
    }
    for error in &discovery.errors {
        tracing::error!(%error, "plugin not loaded");
    }
}
