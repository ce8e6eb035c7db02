//! `updraft standalone`, `updraft scheduler` and `updraft webserver`: long-running processes,
//! any number of each on one database. Start-up applies the migrations; a database that is away
//! is retried with backoff, never a reason to exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use updraft_operators::Registry;
use updraft_orchestrator::engine::{Scheduler, SchedulerConfig};
use updraft_orchestrator::processor::{DagProcessor, PluginsWatcher};
use updraft_orchestrator::store::MIGRATOR;

use crate::dag_runs::DbArgs;

#[derive(Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    db: DbArgs,
    #[arg(long, env = "UPDRAFT_DAGS_FOLDER", default_value = "dags")]
    dags_folder: PathBuf,
    #[command(flatten)]
    plugins: crate::plugins::PluginsFolder,
    /// Tries running at once in this process.
    #[arg(long, env = "UPDRAFT_PARALLELISM", default_value_t = 32)]
    parallelism: usize,
    /// Do not parse the DAGs folder (another process does).
    #[arg(long)]
    no_processor: bool,
}

#[derive(Args)]
pub struct StandaloneArgs {
    #[command(flatten)]
    scheduler: SchedulerArgs,
    /// Web server address.
    #[arg(long, env = "UPDRAFT_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
}

#[derive(Args)]
pub struct WebserverArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The DAG files the UI shows and edits (the schedulers' folder, shared).
    #[arg(long, env = "UPDRAFT_DAGS_FOLDER", default_value = "dags")]
    dags_folder: PathBuf,
    /// Web server address.
    #[arg(long, env = "UPDRAFT_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
}

/// Connections of a web server's pool.
const WEB_POOL_SIZE: u32 = 16;

/// Connects and migrates, retrying with backoff until the database answers; `None` when
/// stopped (SIGTERM) before that.
pub async fn connect_and_migrate(
    url: &str,
    max_connections: u32,
    cancel: &CancellationToken,
) -> Option<PgPool> {
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = async {
            // One plain connection first: it fails at once, where the pool would keep trying
            // for its whole acquire timeout before saying anything.
            sqlx::Connection::close(<sqlx::PgConnection as sqlx::Connection>::connect(url).await?)
                .await?;
            let pool = updraft_orchestrator::store::connect(url, max_connections).await?;
            MIGRATOR.run(&pool).await?;
            anyhow::Ok(pool)
        };
        match attempt.await {
            Ok(pool) => return Some(pool),
            Err(error) => {
                tracing::warn!(error = %error, retry_in = ?delay, "database not ready");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Cancelled on SIGTERM or Ctrl-C.
fn shutdown_token() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot handle SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping: no new claims; running tries get the grace period");
        token.cancel();
    });
    cancel
}

async fn spawn_components(
    pool: &PgPool,
    args: &SchedulerArgs,
    operators: &Registry,
    cancel: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let folder = args.plugins.plugins_folder.clone();
    let (plugins, registry) = PluginsWatcher::start(folder, operators.clone()).await;
    let mut tasks = vec![tokio::spawn(plugins.run(cancel.clone()))];
    if !args.no_processor {
        let processor = DagProcessor::new(pool.clone(), args.dags_folder.clone(), registry.clone());
        let token = cancel.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = processor.run(token).await {
                tracing::error!(%error, "DAG processor stopped");
            }
        }));
    }
    let mut config = SchedulerConfig::from_env();
    config.parallelism = args.parallelism.max(1);
    tracing::info!(owner = %config.owner, parallelism = config.parallelism, "scheduler starting");
    let scheduler = Scheduler::new(pool.clone(), registry, config);
    let token = cancel.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(error) = scheduler.run(token).await {
            tracing::error!(%error, "scheduler stopped");
        }
    }));
    tasks
}

fn pool_size(args: &SchedulerArgs) -> u32 {
    u32::try_from(args.parallelism).unwrap_or(64).clamp(4, 64) + 8
}

/// A key that is set must be usable: better to refuse to start than to fail every task that
/// reads a secret. No key is allowed, and said.
fn check_secret_key() -> anyhow::Result<()> {
    let cipher = updraft_secrets::Cipher::from_env()?;
    if !cipher.has_key() {
        tracing::warn!(
            "UPDRAFT_SECRET_KEY is not set: connections cannot store passwords or extras, and variables are stored unencrypted (make a key with `updraft secrets generate-key`)"
        );
    }
    Ok(())
}

pub async fn scheduler(args: SchedulerArgs, operators: &Registry) -> anyhow::Result<()> {
    check_secret_key()?;
    let cancel = shutdown_token();
    let Some(pool) = connect_and_migrate(&args.db.database_url, pool_size(&args), &cancel).await
    else {
        return Ok(());
    };
    for task in spawn_components(&pool, &args, operators, &cancel).await {
        let _ = task.await;
    }
    Ok(())
}

pub async fn standalone(args: StandaloneArgs, operators: &Registry) -> anyhow::Result<()> {
    check_secret_key()?;
    let cancel = shutdown_token();
    let url = &args.scheduler.db.database_url;
    let Some(pool) = connect_and_migrate(url, pool_size(&args.scheduler), &cancel).await else {
        return Ok(());
    };
    let mut tasks = spawn_components(&pool, &args.scheduler, operators, &cancel).await;
    let folder = args.scheduler.dags_folder.clone();
    tasks.push(spawn_web(&pool, args.bind, folder, &cancel).await?);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// The UI and REST API alone: no DAG parsing, no scheduling, no tries.
pub async fn webserver(args: WebserverArgs) -> anyhow::Result<()> {
    let cancel = shutdown_token();
    let url = &args.db.database_url;
    let Some(pool) = connect_and_migrate(url, WEB_POOL_SIZE, &cancel).await else {
        return Ok(());
    };
    let _ = spawn_web(&pool, args.bind, args.dags_folder, &cancel)
        .await?
        .await;
    Ok(())
}

/// Creates `admin` on an empty database (printing a generated password once), then serves.
async fn spawn_web(
    pool: &PgPool,
    bind: SocketAddr,
    dags_folder: PathBuf,
    cancel: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if let Some(password) = updraft_web::users::ensure_admin(pool).await? {
        println!("Created user `admin` with password: {password}");
        println!("(shown once; set UPDRAFT_ADMIN_PASSWORD to choose it)");
    }
    let web = updraft_web::serve(pool.clone(), bind, dags_folder, cancel.clone());
    Ok(tokio::spawn(async move {
        if let Err(error) = web.await {
            tracing::error!(%error, "web server stopped");
        }
    }))
}
