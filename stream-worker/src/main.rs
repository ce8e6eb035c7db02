//! `stream-worker`: runs the stream definitions (default `streams/`) until SIGTERM/SIGINT;
//! `stream-worker dlq list|show --stream NAME` reads a stream's dead letters.
//! Connections the definitions name are read from `UPDRAFT_CONN_<ID>`, else from the database
//! of `DATABASE_URL` (decrypted with `UPDRAFT_SECRET_KEY`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args as ClapArgs, Parser, Subcommand};
use stream_worker::connections::{self, Lookup};
use stream_worker::replay::StartPoint;
use stream_worker::{Metrics, WorkerConfig};
use tokio_util::sync::CancellationToken;

// A record's decode allocates a few dozen small values (a VRL event many more), freed on other
// threads once written: mimalloc cut the worker's CPU per row by 1–3.5 µs against glibc's
// (BENCHMARKS.md, 2026-12-08).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kafka → Cassandra stream worker (at-least-once, dead letters, Prometheus metrics).
#[derive(Debug, Parser)]
#[command(name = "stream-worker", version)]
struct Args {
    /// Stream definition files or directories of `*.yaml` files.
    #[arg(
        long = "definitions",
        env = "STREAM_DEFINITIONS",
        value_delimiter = ',',
        default_value = "streams/",
        global = true
    )]
    definitions: Vec<PathBuf>,
    /// Kafka bootstrap servers (unless the definitions name a connection: `source.conn_id`).
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    kafka_bootstrap_servers: String,
    /// Cassandra contact points, comma-separated host:port (unless the definitions name a
    /// connection: `target.conn_id`).
    #[arg(
        long,
        env = "CASSANDRA_CONTACT_POINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:9042",
        global = true
    )]
    cassandra_contact_points: Vec<String>,
    /// The schema registry of Avro streams (`format: avro`) whose definition names none
    /// (`source.registry`).
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    schema_registry_url: String,
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A stream's dead letters (records it refused, with the reason in their headers).
    Dlq {
        #[command(subcommand)]
        action: DlqCommand,
    },
    /// Reads a stream's source topic again from a point into its tables, through the current
    /// definition (idempotent writes make it safe), and exits when done. The worker's consumer
    /// group and its offsets are not touched.
    Replay {
        /// The stream (its `name:`, or its file's stem).
        #[arg(long)]
        stream: String,
        /// An RFC 3339 time (each partition from its first record at or after it), or
        /// partition:offset pairs (`0:120,1:80`; partitions not named are not read).
        #[arg(long)]
        from: StartPoint,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// How many dead letters each partition of the stream's dead-letter topic holds.
    List {
        /// The stream (its `name:`, or its file's stem).
        #[arg(long)]
        stream: String,
    },
    /// The dead letters, oldest first: where each is, why it was refused, its bytes.
    Show {
        #[command(flatten)]
        letters: Letters,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Sends every dead letter of the stream back through the current definition (after fixing
    /// it), writing those that pass and dead-lettering the rest again; exits when done.
    Replay {
        #[command(flatten)]
        letters: Letters,
    },
}

/// Which dead letters `show` and `replay` take.
#[derive(Debug, ClapArgs)]
struct Letters {
    /// The stream (its `name:`, or its file's stem).
    #[arg(long)]
    stream: String,
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    partition: Option<i32>,
    /// From this offset of the dead-letter topic.
    #[arg(long)]
    offset: Option<i64>,
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
    if let Some(command) = args.command {
        let config = WorkerConfig {
            kafka_bootstrap_servers: args.kafka_bootstrap_servers,
            cassandra_contact_points: args.cassandra_contact_points,
            connections_per_host: args.connections_per_host,
            schema_registry_url: args.schema_registry_url,
            ..WorkerConfig::default()
        };
        return match command {
            Command::Dlq { action } => dead_letters(action, &streams, config).await,
            Command::Replay { stream, from } => replay(&stream, &from, &streams, config).await,
        };
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
        schema_registry_url: args.schema_registry_url,
        ..WorkerConfig::default()
    };
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {} for metrics", args.metrics_addr))?;
    tracing::info!(addr = %args.metrics_addr, "serving /metrics and /healthz");
    let api_config = Arc::new(std::sync::OnceLock::new());
    let router = stream_worker::metrics::router(metrics.clone()).merge(stream_worker::api::router(
        metrics.clone(),
        streams.clone(),
        api_config.clone(),
    ));
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
    let _ = api_config.set(config.clone());
    stream_worker::run(config, streams, metrics, shutdown).await?;
    tracing::info!("stream worker stopped cleanly");
    Ok(())
}

/// The stream named `name`, with `config` set from its connections; exits 2 for an unknown
/// stream or connection.
async fn stream_named<'s>(
    name: &str,
    streams: &'s [stream_worker::Stream],
    config: &mut WorkerConfig,
) -> anyhow::Result<&'s stream_worker::Stream> {
    let Some(stream) = streams.iter().find(|s| s.name == name) else {
        let known: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "no stream `{name}` in the definitions; they define: {}",
            known.join(", ")
        );
        std::process::exit(2);
    };
    let lookup = Lookup::from_env().context("UPDRAFT_SECRET_KEY")?;
    if let Err(error) = connections::apply(config, std::slice::from_ref(stream), &lookup).await {
        eprintln!("{error}");
        std::process::exit(2);
    }
    Ok(stream)
}

/// `replay --stream NAME --from …`: exit 2 for an unknown stream, 1 when Kafka or Cassandra fails.
async fn replay(
    name: &str,
    from: &StartPoint,
    streams: &[stream_worker::Stream],
    mut config: WorkerConfig,
) -> anyhow::Result<()> {
    let stream = stream_named(name, streams, &mut config).await?;
    let replayed = stream_worker::replay::replay_source(&config, stream, from).await?;
    println!(
        "replayed {} record(s) of `{}` into stream `{}`: {} written, {} dropped by where/transform, \
         {} dead-lettered (on `{}`)",
        replayed.read,
        stream.topic,
        stream.name,
        replayed.written,
        replayed.dropped,
        replayed.dead_lettered,
        stream.dead_letter_topic
    );
    Ok(())
}

/// `dlq list`, `show` and `replay`: exit 2 for an unknown stream, 1 when Kafka (or, for a
/// replay, Cassandra) fails.
async fn dead_letters(
    action: DlqCommand,
    streams: &[stream_worker::Stream],
    mut config: WorkerConfig,
) -> anyhow::Result<()> {
    let name = match &action {
        DlqCommand::List { stream } => stream,
        DlqCommand::Show { letters, .. } | DlqCommand::Replay { letters } => &letters.stream,
    };
    let stream = stream_named(name, streams, &mut config).await?;
    let client = config.kafka_client();
    let topic = stream.dead_letter_topic.clone();
    match action {
        DlqCommand::List { .. } => {
            let partitions = tokio::task::spawn_blocking(move || {
                stream_worker::topic_range::partitions(&client, &topic)
            })
            .await?
            .with_context(|| format!("no dead letters to list for stream `{}`", stream.name))?;
            println!(
                "dead letters of stream `{}` (topic `{}`)",
                stream.name, stream.dead_letter_topic
            );
            println!(
                "{:>9}  {:>12}  {:>12}  {:>9}",
                "partition", "first", "next", "letters"
            );
            for p in &partitions {
                println!(
                    "{:>9}  {:>12}  {:>12}  {:>9}",
                    p.partition,
                    p.first,
                    p.next,
                    p.count()
                );
            }
            let total: i64 = partitions.iter().map(|p| p.count()).sum();
            println!("total {total}");
        }
        DlqCommand::Show { letters, limit } => {
            let Letters {
                partition, offset, ..
            } = letters;
            let letters = tokio::task::spawn_blocking(move || {
                stream_worker::topic_range::read(&client, &topic, partition, offset, limit)
            })
            .await?
            .with_context(|| format!("no dead letters to show for stream `{}`", stream.name))?;
            for letter in &letters {
                print_letter(&stream.dead_letter_topic, letter);
            }
            println!("{} dead letter(s)", letters.len());
        }
        DlqCommand::Replay { letters } => {
            let replayed =
                stream_worker::dlq::replay(&config, stream, letters.partition, letters.offset)
                    .await?;
            println!(
                "replayed {} dead letter(s) of stream `{}`: {} written, {} refused again (back on `{}`), \
                 {} dropped by where/transform, {} reference(s) skipped (their bytes are at their source offset)",
                replayed.read,
                stream.name,
                replayed.written,
                replayed.refused_again,
                stream.dead_letter_topic,
                replayed.dropped,
                replayed.references
            );
        }
    }
    Ok(())
}

/// Longest payload shown, in characters.
const SHOWN_PAYLOAD: usize = 2_000;

fn print_letter(topic: &str, letter: &stream_worker::topic_range::TopicRecord) {
    let at = letter
        .timestamp_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|at| at.to_rfc3339())
        .unwrap_or_default();
    println!(
        "{topic} partition {} offset {} {at}",
        letter.partition, letter.offset
    );
    for (key, value) in &letter.headers {
        println!("  {key}: {value}");
    }
    if let Some(key) = &letter.key {
        println!("  key: {}", String::from_utf8_lossy(key));
    }
    match &letter.payload {
        Some(payload) => {
            let text = String::from_utf8_lossy(payload);
            let shown: String = text.chars().take(SHOWN_PAYLOAD).collect();
            let cut = if shown.len() < text.len() {
                " …(cut)"
            } else {
                ""
            };
            println!("  payload ({} bytes): {shown}{cut}", payload.len());
        }
        None => println!("  payload: none"),
    }
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
