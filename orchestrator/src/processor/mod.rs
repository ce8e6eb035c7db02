//! The DAG processor: keeps the database's DAGs in step with the YAML files of the DAGs folder.
//!
//! Parsing is pure (`dag::load_folder`); this module only does the I/O around it: it scans at
//! start, then rescans on file events (with a periodic rescan as a safety net, since file events
//! can be missed on network filesystems), parsing again only the files whose size, times or
//! inode changed, and writes what changed (`sync.rs`). The operators DAG files may name come
//! from a shared registry that `plugins.rs` replaces when the plugins folder changes; then every
//! file is parsed again, and plugins that did not load are import errors too.

mod plugins;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use updraft_operators::{Registry, SharedRegistry};

use crate::dag::{ParseCache, load_folder_cached};

pub use plugins::PluginsWatcher;
pub use sync::SyncReport;

/// How often the folder is rescanned even without file events.
const RESCAN_INTERVAL: Duration = Duration::from_secs(30);
/// Editors save in several steps (write a temp file, rename): wait for the burst to end.
const EVENT_SETTLE: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("database error while syncing DAGs: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot watch the DAGs folder {folder}: {source}")]
    Watch {
        folder: PathBuf,
        source: notify::Error,
    },
}

pub struct DagProcessor {
    pool: PgPool,
    folder: PathBuf,
    registry: SharedRegistry,
    /// Parses kept between scans, with the registry they were made with: only changed files
    /// are parsed again, and every file when the operators changed.
    cache: Arc<Mutex<(Option<Arc<Registry>>, ParseCache)>>,
}

impl DagProcessor {
    /// `folder` is made absolute so that every process records the same file locations.
    pub fn new(pool: PgPool, folder: PathBuf, registry: impl Into<SharedRegistry>) -> DagProcessor {
        let folder = std::path::absolute(&folder).unwrap_or(folder);
        DagProcessor {
            pool,
            folder,
            registry: registry.into(),
            cache: Arc::default(),
        }
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Scans the folder now (parsing the files that changed) and writes what changed.
    pub async fn sync_once(&self) -> Result<SyncReport, ProcessorError> {
        let started = Instant::now();
        let folder = self.folder.clone();
        let registry = self.registry.current();
        let cache = Arc::clone(&self.cache);
        // Parsing is CPU work: keep it off the async workers.
        let parse_with = Arc::clone(&registry);
        let (load, parsed) = tokio::task::spawn_blocking(move || {
            let mut guard = cache.lock().unwrap_or_else(PoisonError::into_inner);
            let (parsed_with, cache) = &mut *guard;
            if !parsed_with
                .as_ref()
                .is_some_and(|last| Arc::ptr_eq(last, &parse_with))
            {
                *cache = ParseCache::default();
                *parsed_with = Some(Arc::clone(&parse_with));
            }
            let load = load_folder_cached(&folder, &parse_with, cache);
            (load, cache.parsed_last_scan())
        })
        .await
        .unwrap_or_default();
        let parse_time = started.elapsed();
        let plugins = registry.plugins_load();
        let mut report = sync::apply(&self.pool, &self.folder, &load, plugins).await?;
        report.parse_time = parse_time;
        report.parsed_files = parsed;
        report.total_time = started.elapsed();
        tracing::debug!(
            dags = report.dags,
            changed = report.changed.len(),
            import_errors = report.import_errors,
            deactivated = report.deactivated.len(),
            parse_ms = report.parse_time.as_millis() as u64,
            total_ms = report.total_time.as_millis() as u64,
            "DAG folder synced"
        );
        Ok(report)
    }

    /// Syncs, then keeps syncing on file events and every `RESCAN_INTERVAL` until cancelled.
    /// Database errors are logged and retried with backoff: the processor never gives up.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), ProcessorError> {
        let changed = Arc::new(Notify::new());
        let _watcher = self.watch(Arc::clone(&changed))?;
        let mut operators_changed = self.registry.subscribe();
        let mut retry_delay = Duration::from_millis(500);
        loop {
            let wait = match self.sync_once().await {
                Ok(report) => {
                    if report.parsed_files > 0 {
                        release_freed_memory();
                    }
                    retry_delay = Duration::from_millis(500);
                    RESCAN_INTERVAL
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = retry_delay.as_millis() as u64, "DAG sync failed");
                    let wait = retry_delay;
                    retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY);
                    wait
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = operators_changed.changed() => {}
                _ = changed.notified() => {
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(EVENT_SETTLE) => {}
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn watch(&self, changed: Arc<Notify>) -> Result<notify::RecommendedWatcher, ProcessorError> {
        let watch_error = |source| ProcessorError::Watch {
            folder: self.folder.clone(),
            source,
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = event.is_ok_and(|event| !event.kind.is_access());
                if relevant {
                    changed.notify_one();
                }
            })
            .map_err(watch_error)?;
        watcher
            .watch(&self.folder, RecursiveMode::Recursive)
            .map_err(watch_error)?;
        Ok(watcher)
    }
}

/// Parsing builds large temporaries (YAML trees, diagnostics) that are freed afterwards, but
/// glibc keeps their pages: hand them back so an idle process stays small.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives free heap pages back to the kernel; it touches no live
    // allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
