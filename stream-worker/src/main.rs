//! `stream-worker`: runs the stream definitions (default `streams/`) until SIGTERM/SIGINT.
//! Connections the definitions name are read from `UPDRAFT_CONN_<ID>`, else from the database
//! of `DATABASE_URL` (decrypted with `UPDRAFT_SECRET_KEY`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use stream_worker::connections::{self, Lookup};
use stream_worker::{Metrics, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// Kafka → Cassandra stream worker (at-least-once, dead letters, Prometheus metrics).
#[derive(Debug, Parser)]
#[command(name = "stream-worker", version)]
struct Args {
    /// Stream definition files or directories of `*.yaml` files.
    #[arg(
        long = "definitions",
        env = "STREAM_DEFINITIONS",
        value_delimiter = ',',
        default_value = "streams/"
    )]
    definitions: Vec<PathBuf>,
    /// Kafka bootstrap servers (unless the definitions name a connection: `source.conn_id`).
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    kafka_bootstrap_servers: String,
    /// Cassandra contact points, comma-separated host:port (unless the definitions name a
    /// connection: `target.conn_id`).
    #[arg(
        long,
        env = "CASSANDRA_CONTACT_POINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:9042"
    )]
    cassandra_contact_points: Vec<String>,
    /// Writes in flight per stream.
    #[arg(long, env = "STREAM_WORKER_CONCURRENCY", default_value_t = 256)]
    concurrency: usize,
    /// Address of the /metrics and /healthz HTTP server.
    #[arg(
        long,
        env = "STREAM_WORKER_METRICS_ADDR",
        default_value = "127.0.0.1:9108"
    )]
    metrics_addr: SocketAddr,
    /// Consumer group for every stream, instead of each definition's `source.group`.
    #[arg(long, env = "STREAM_WORKER_GROUP")]
    group: Option<String>,
    /// Kafka session timeout in ms: how soon partitions of a dead worker move to the others.
    #[arg(
        long,
        env = "STREAM_WORKER_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    session_timeout_ms: u64,
    /// Seconds between progress lines.
    #[arg(long, env = "STREAM_WORKER_PROGRESS_SECS", default_value_t = 10)]
    progress_secs: u64,
    /// Seconds to wait for in-flight writes on shutdown.
    #[arg(long, env = "STREAM_WORKER_DRAIN_SECS", default_value_t = 30)]
    drain_secs: u64,
    /// Cassandra connections per node.
    #[arg(long, env = "STREAM_WORKER_CONNECTIONS_PER_HOST", default_value_t = 2)]
    connections_per_host: usize,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "STREAM_WORKER_LOG_JSON")]
    log_json: bool,
    /// Only check the definitions and exit.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init();
    }

    let streams = match stream_worker::load_definitions(&args.definitions) {
        Ok(streams) => streams,
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(2);
        }
    };
    if args.check {
        println!("{} stream definition(s) OK", streams.len());
        return Ok(());
    }

    let mut config = WorkerConfig {
        kafka_bootstrap_servers: args.kafka_bootstrap_servers,
        cassandra_contact_points: args.cassandra_contact_points,
        concurrency: args.concurrency,
        group_override: args.group,
        session_timeout: Duration::from_millis(args.session_timeout_ms),
        progress_interval: Duration::from_secs(args.progress_secs.max(1)),
        drain_timeout: Duration::from_secs(args.drain_secs),
        connections_per_host: args.connections_per_host,
        ..WorkerConfig::default()
    };
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {} for metrics", args.metrics_addr))?;
    tracing::info!(addr = %args.metrics_addr, "serving /metrics and /healthz");
    let router = stream_worker::metrics::router(metrics.clone());
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let lookup = Lookup::from_env().context("UPDRAFT_SECRET_KEY")?;
    match connections::apply_when_reachable(&mut config, &streams, &lookup, &shutdown).await {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    }
    stream_worker::run(config, streams, metrics, shutdown).await?;
    tracing::info!("stream worker stopped cleanly");
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    shutdown.cancel();
}
