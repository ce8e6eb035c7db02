//! Throughput, ceiling and latency of the stream worker against the local Kafka and Cassandra.
//!
//! `cargo run --release -p stream-worker --example stream_bench -- [N] [--no-latency]`
//!
//! Throughput is measured so that the worker and the ceiling meet the same Cassandra:
//! 1. warm-up: N fresh rows through the plain driver loop (JIT, memtables), not counted;
//! 2. sweep: the plain loop at concurrencies 64..1024 picks the ceiling's best concurrency C
//!    (unless `BENCH_CONCURRENCY` fixes it), then its best shape at C (one task or two);
//! 3. rounds (`BENCH_ROUNDS`, 4): ceiling then worker, then worker then ceiling, and so on, each
//!    writing N rows into a *new* table of its own (no run meets a bigger table to compact than
//!    another) and starting once Cassandra has no compaction or flush left to run, all at
//!    concurrency C with the same connections per host. The ceiling writes pre-decoded rows
//!    (no Kafka, no JSON): an upper bound. The worker's clock runs from its first consumed
//!    record (after the group join) to its N-th written row. Medians are reported, and the
//!    ratio of the medians;
//!    Each round also runs the worker on the same records with a VRL transform of the seed
//!    record ([`SEED_TRANSFORM`]): its rate, its ratio to the ceiling and its cost against the
//!    plain worker (1 − transform/plain, median of the rounds), and on the same records in Avro
//!    (Confluent wire format, the schema from the registry): its rate, its ratio to the ceiling
//!    and to the plain (JSON) worker's (Avro/JSON, median of the rounds);
//!    After the rounds, one run writes each record to 3 tables (fan-out): rows/s and its ratio
//!    to the ceiling's median;
//! 4. the worker binary drains one round's backlog again in a new group: its peak RSS;
//! 5. latency: produces at a steady 2,000 records/s for 15 s and prints the p50/p99 of
//!    Kafka record timestamp → row written (histogram bucket upper bounds);
//! 6. deletes the topics and keyspaces it made, whether it succeeded or not.
//!
//! Env: KAFKA_BOOTSTRAP_SERVERS, CASSANDRA_CONTACT_POINTS, SCHEMA_REGISTRY_URL,
//! BENCH_CONCURRENCY (default: the ceiling's best), BENCH_CONNECTIONS (per host, 2),
//! BENCH_PARTITIONS (4), BENCH_ROUNDS (4).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use scylla::value::{CqlValue, MaybeUnset};
use stream_worker::{Metrics, Stream, WorkerConfig};
use tokio_util::sync::CancellationToken;

// The worker binary's allocator, as the worker runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 (clock ticks, 100/s).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The local Cassandra's pid (`BENCH_CASSANDRA_PID`, else found by its main class), to report
/// its CPU per row next to ours.
fn cassandra_pid() -> Option<String> {
    if let Ok(pid) = std::env::var("BENCH_CASSANDRA_PID") {
        return Some(pid);
    }
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains("CassandraDaemon")
                .then_some(name)
        })
}

/// CPU µs per row of this process and of Cassandra over one run.
struct CpuMeter {
    cassandra: Option<String>,
    own: f64,
    db: f64,
}

impl CpuMeter {
    fn start(cassandra: &Option<String>) -> Self {
        let db = cassandra.as_deref().map_or(0.0, cpu_secs);
        Self {
            cassandra: cassandra.clone(),
            own: cpu_secs("self"),
            db,
        }
    }

    fn per_row(&self, rows: usize) -> String {
        let db = self.cassandra.as_deref().map_or(0.0, cpu_secs);
        let rows = rows.max(1) as f64;
        format!(
            "CPU/row: bench process {:.1} µs, Cassandra {:.1} µs",
            (cpu_secs("self") - self.own) * 1e6 / rows,
            (db - self.db) * 1e6 / rows
        )
    }
}

fn record(i: usize) -> Vec<u8> {
    record_json(i).to_string().into_bytes()
}

fn record_json(i: usize) -> serde_json::Value {
    const NAMES: [(&str, &str); 4] = [
        ("Zoë", "Müller"),
        ("Łukasz", "Wójcik"),
        ("José", "Muñoz"),
        ("Ольга", "Смирнова"),
    ];
    let (first, last) = NAMES[i % NAMES.len()];
    serde_json::json!({
        "id": uuid::Uuid::new_v4().to_string(), "first_name": first, "last_name": last,
        "gender": "female", "address": format!("{i} Rue de l'Église, Montréal, Québec, Canada"),
        "post_code": 10000 + i, "email": format!("user{i}@example.com"), "username": format!("user{i}"),
        "dob": "1987-03-14T09:26:53.589Z", "registered_date": "2015-06-01T12:00:00.000Z",
        "phone": "(555) 010-1234", "picture": "https://randomuser.me/api/portraits/med/women/1.jpg",
    })
}

const AVRO_SCHEMA: &str = include_str!("../../streams/examples/users_created.avsc");

/// The same record in Avro, framed with the registry's `schema_id`.
fn avro_record(i: usize, schema: &apache_avro::Schema, schema_id: u32) -> anyhow::Result<Vec<u8>> {
    let mut record = record_json(i);
    record["post_code"] = record["post_code"].to_string().into();
    let value = apache_avro::types::Value::from(record).resolve(schema)?;
    let datum = apache_avro::to_avro_datum(schema, value)?;
    Ok(schema_registry::frame(schema_id, &datum))
}

fn definition_text(topic: &str, keyspace: &str, group: &str) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../streams/users_created.yaml");
    Ok(std::fs::read_to_string(&path)?
        .replace("topic: users_created", &format!("topic: {topic}"))
        .replace("group: updraft-stream-worker", &format!("group: {group}"))
        .replace(
            "keyspace: spark_streaming",
            &format!("keyspace: {keyspace}"),
        )
        .replace(
            "dead_letter_topic: users_created.dlq",
            &format!("dead_letter_topic: {topic}.dlq"),
        )
        .replace("table: created_users", &format!("table: {topic}")))
}

/// A VRL transform of the seed record, as a team would write one: names trimmed, the email
/// lower-cased, the dates checked and written in one format. The columns stay the seed's.
const SEED_TRANSFORM: &str = r#"transform: |
  .first_name = strip_whitespace(string!(.first_name))
  .last_name = strip_whitespace(string!(.last_name))
  .email = downcase(string!(.email))
  .dob = format_timestamp!(parse_timestamp!(.dob, "%+"), "%+")
  .registered_date = format_timestamp!(parse_timestamp!(.registered_date, "%+"), "%+")
"#;

/// Fan-out: each record also goes to two tables keyed for other queries (3 rows a record).
const FAN_OUT_TABLES: &str = "  primary_key: [id]
  tables:
    - table: users_by_email
      primary_key: [email]
      columns: [email, id, first_name, last_name]
    - table: users_by_username
      primary_key: [username]
      columns: [username, id, email]
";

/// What the worker does with the seed's records in a run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Variant {
    Plain,
    Transform,
    FanOut,
    Avro,
}

/// The seed's definition for `topic` and `keyspace`, as `variant` changes it.
fn definition(topic: &str, keyspace: &str, variant: Variant) -> anyhow::Result<Stream> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../streams/users_created.yaml");
    let text = definition_text(topic, keyspace, &format!("{topic}_g"))?;
    let text = match variant {
        Variant::Plain => text,
        Variant::Transform => text + SEED_TRANSFORM,
        Variant::FanOut => text.replace("  primary_key: [id]\n", FAN_OUT_TABLES),
        Variant::Avro => text.replace("  start_offset:", "  format: avro\n  start_offset:"),
    };
    stream_worker::definition::parse(&path, &text).map_err(|errors| {
        anyhow::anyhow!("{}", stream_worker::definition::DefinitionErrors(errors))
    })
}

/// The worker binary's peak RSS (VmHWM) while it drains the same backlog in a new consumer
/// group: the in-process figure above includes the bench's own payloads.
async fn binary_rss(
    figures: &mut serde_json::Map<String, serde_json::Value>,
    topic: &str,
    keyspace: &str,
    config: &WorkerConfig,
    n: usize,
) -> anyhow::Result<()> {
    let binary = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("stream-worker"))
        .context("target folder")?;
    if !binary.exists() {
        println!("{} is not built: binary RSS not measured", binary.display());
        return Ok(());
    }
    let file = std::env::temp_dir().join(format!("{topic}_rss.yaml"));
    std::fs::write(
        &file,
        definition_text(topic, keyspace, &format!("{topic}_rss"))?,
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(&binary)
        .arg("--definitions")
        .arg(&file)
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--concurrency")
        .arg(config.concurrency.to_string())
        .arg("--connections-per-host")
        .arg(config.connections_per_host.to_string())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("worker pid")?;
    let started = Instant::now();
    while written_by(port).await.unwrap_or(0) < n as u64 {
        anyhow::ensure!(child.try_wait()?.is_none(), "the worker binary exited");
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the worker binary is too slow"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb: u64 = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    child.kill().await?;
    println!(
        "worker binary: peak RSS {} MB draining {n} records",
        hwm_kb / 1024
    );
    figures.insert(
        "worker_rss_mb".into(),
        ((hwm_kb as f64 / 1024.0 * 10.0).round() / 10.0).into(),
    );
    Ok(())
}

/// `updraft_stream_records_written_total` from the worker's /metrics, over plain HTTP/1.0.
async fn written_by(port: u16) -> Option<u64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut connection = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    connection
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    connection.read_to_string(&mut body).await.ok()?;
    body.lines()
        .filter(|line| line.starts_with("updraft_stream_records_written_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .max()
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for result in admin.create_topics(&[new], &AdminOptions::new()).await? {
        result.map_err(|(t, code)| anyhow::anyhow!("create topic {t}: {code}"))?;
    }
    Ok(())
}

fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .create()?)
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    payloads: &[Vec<u8>],
) -> anyhow::Result<()> {
    for chunk in payloads.chunks(50_000) {
        let mut pending = Vec::with_capacity(chunk.len());
        for payload in chunk {
            let record: FutureRecord<'_, (), [u8]> =
                FutureRecord::to(topic).payload(payload.as_slice());
            pending.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow::anyhow!("queue: {e}"))?,
            );
        }
        for delivery in pending {
            delivery
                .await?
                .map_err(|(e, _)| anyhow::anyhow!("deliver: {e}"))?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(env_or("RUST_LOG", "warn"))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(200_000);
    let latency = !args.iter().any(|a| a == "--no-latency");
    let latency_only = args.iter().any(|a| a == "--latency-only");
    let bootstrap = env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092");
    let contact_points: Vec<String> = env_or("CASSANDRA_CONTACT_POINTS", "127.0.0.1:9042")
        .split(',')
        .map(str::to_string)
        .collect();
    // Throughput replaces it with the ceiling's best unless BENCH_CONCURRENCY is set.
    let concurrency: usize = env_or("BENCH_CONCURRENCY", "256").parse()?;
    let connections: usize = env_or("BENCH_CONNECTIONS", "2").parse()?;
    let partitions: i32 = env_or("BENCH_PARTITIONS", "4").parse()?;
    let config = WorkerConfig {
        kafka_bootstrap_servers: bootstrap.clone(),
        cassandra_contact_points: contact_points.clone(),
        concurrency,
        connections_per_host: connections,
        progress_interval: Duration::from_secs(5),
        schema_registry_url: env_or("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081"),
        ..WorkerConfig::default()
    };

    // The last line is JSON for `scripts/bench`.
    let mut figures = serde_json::Map::new();
    figures.insert("bench".into(), "stream".into());
    figures.insert("records".into(), n.into());
    let measured = async {
        let mut config = config;
        if !latency_only {
            config = throughput(
                &mut figures,
                n,
                &bootstrap,
                &contact_points,
                &config,
                partitions,
            )
            .await?;
        }
        if latency {
            steady_latency(&mut figures, &bootstrap, config, partitions).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = clean_up(&bootstrap, &contact_points).await {
        println!("could not delete this run's topics and keyspaces: {error:#}");
    }
    measured?;
    println!("{}", serde_json::Value::Object(figures));
    Ok(())
}

/// Deletes the topics and keyspaces this run made (their names hold its pid, see [`unique`]):
/// a full run leaves gigabytes that no later run reads.
async fn clean_up(bootstrap: &str, contact_points: &[String]) -> anyhow::Result<()> {
    let mark = format!("_{}_", std::process::id());
    let admin = admin(bootstrap)?;
    let metadata = tokio::task::block_in_place(|| {
        admin.inner().fetch_metadata(None, Duration::from_secs(10))
    })?;
    let topics: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|topic| topic.name())
        .filter(|name| name.contains(&mark))
        .collect();
    if !topics.is_empty() {
        admin.delete_topics(&topics, &AdminOptions::new()).await?;
    }
    let session = stream_worker::sink::connect(contact_points, None, 1).await?;
    let keyspaces = session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await?
        .into_rows_result()?;
    for keyspace in keyspaces.rows::<(String,)>()? {
        let (keyspace,) = keyspace?;
        if keyspace.contains(&mark) {
            session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
                .await?;
        }
    }
    Ok(())
}

type Row = Vec<MaybeUnset<Option<CqlValue>>>;

/// Waits (up to 3 minutes) until Cassandra runs no compaction and no memtable flush, so that
/// each timed run starts from the same quiet node instead of paying for the previous run's
/// writes: read from its virtual tables, as `nodetool compactionstats` would.
async fn settle(session: &scylla::client::session::Session) -> anyhow::Result<()> {
    const POOLS: [&str; 3] = [
        "CompactionExecutor",
        "MemtableFlushWriter",
        "MemtablePostFlush",
    ];
    let started = Instant::now();
    loop {
        let pools = session
            .query_unpaged(
                "SELECT name, active_tasks, pending_tasks FROM system_views.thread_pools",
                (),
            )
            .await?
            .into_rows_result()?;
        let mut busy = 0i64;
        for pool in pools.rows::<(String, i32, i32)>()? {
            let (name, active, pending) = pool?;
            if POOLS.contains(&name.as_str()) {
                busy += i64::from(active) + i64::from(pending);
            }
        }
        let elapsed = started.elapsed();
        if busy == 0 || elapsed > Duration::from_secs(180) {
            if elapsed > Duration::from_millis(500) {
                println!(
                    "  (waited {:.0} s for Cassandra's compactions)",
                    elapsed.as_secs_f64()
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

/// The plain driver loop: one prepared insert per row, `concurrency` in flight, no Kafka and no
/// decoding in the timed part (the rows are decoded beforehand).
struct Ceiling {
    session: Arc<scylla::client::session::Session>,
    insert: Arc<scylla::statement::prepared::PreparedStatement>,
    stream: Stream,
    cassandra: Option<String>,
}

impl Ceiling {
    /// The loop, writing into a new table of `keyspace`.
    async fn in_new_table(
        session: Arc<scylla::client::session::Session>,
        keyspace: &str,
    ) -> anyhow::Result<Self> {
        let stream = definition(&unique("ceiling"), keyspace, Variant::Plain)?;
        stream_worker::schema::ensure(&session, &stream).await?;
        let mut insert = session
            .prepare(stream_worker::sink::insert_cql(&stream, &stream.tables[0]))
            .await?;
        insert.set_is_idempotent(true);
        Ok(Ceiling {
            session,
            insert: Arc::new(insert),
            stream,
            cassandra: cassandra_pid(),
        })
    }

    /// `n` fresh rows (new ids), decoded from seed-shaped JSON before the clock starts.
    fn rows(&self, n: usize) -> anyhow::Result<Vec<Row>> {
        (0..n)
            .map(|i| {
                stream_worker::decode::decode(&self.stream, Some(&record(i)))?
                    .ok_or_else(|| anyhow::anyhow!("the bench stream drops no record"))
            })
            .collect()
    }

    /// Writes `rows` with `concurrency` requests in flight, split over `tasks` tasks (one task
    /// polls every request itself; two let both runtime threads issue requests, which holds up
    /// better when other processes take CPU).
    async fn run(&self, rows: Vec<Row>, concurrency: usize, tasks: usize) -> anyhow::Result<f64> {
        let n = rows.len();
        let tasks = tasks.max(1);
        let mut chunks: Vec<Vec<Row>> = (0..tasks)
            .map(|_| Vec::with_capacity(n / tasks + 1))
            .collect();
        for (i, row) in rows.into_iter().enumerate() {
            chunks[i % tasks].push(row);
        }
        let meter = CpuMeter::start(&self.cassandra);
        let started = Instant::now();
        let mut running = tokio::task::JoinSet::new();
        for chunk in chunks {
            let (session, insert) = (self.session.clone(), self.insert.clone());
            running.spawn(async move {
                futures::stream::iter(chunk)
                    .map(|mut row| {
                        let (session, insert) = (session.clone(), insert.clone());
                        async move {
                            row.push(MaybeUnset::Set(Some(CqlValue::BigInt(
                                1_700_000_000_000_000,
                            ))));
                            session.execute_unpaged(&insert, &row).await.is_err()
                        }
                    })
                    .buffer_unordered((concurrency / tasks).max(1))
                    .filter(|failed| futures::future::ready(*failed))
                    .count()
                    .await
            });
        }
        let mut failures = 0;
        while let Some(count) = running.join_next().await {
            failures += count?;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        if failures > 0 {
            println!("ceiling: {failures} writes failed");
        }
        println!(
            "  ceiling at {concurrency} ({tasks} task(s)): {rate:.0} rows/s; {}",
            meter.per_row(n)
        );
        Ok(rate)
    }
}

/// One worker run over a backlog of `n` records already in `topic`; rows/s from its first
/// consumed record to its n-th written row (the consumer-group join is not throughput).
async fn worker_run(
    config: &WorkerConfig,
    topic: &str,
    keyspace: &str,
    variant: Variant,
    n: usize,
) -> anyhow::Result<f64> {
    let stream = definition(topic, keyspace, variant)?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(stream_worker::run(
        config.clone(),
        vec![stream.clone()],
        metrics.clone(),
        shutdown.clone(),
    ));
    let stats = metrics.stream(&stream.name);
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.consumed_total() == 0 {
        anyhow::ensure!(!worker.is_finished(), "worker stopped early");
        anyhow::ensure!(Instant::now() < deadline, "the worker consumed nothing");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let meter = CpuMeter::start(&cassandra_pid());
    let started = Instant::now();
    while stats.written_total() < n as u64 {
        anyhow::ensure!(!worker.is_finished(), "worker stopped early");
        anyhow::ensure!(Instant::now() < deadline, "the worker is too slow");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "  worker{} at {}: {rate:.0} rows/s; {}",
        match variant {
            Variant::Plain => "",
            Variant::Transform => " (transform)",
            Variant::FanOut => " (fan-out to 3 tables)",
            Variant::Avro => " (Avro)",
        },
        config.concurrency,
        meter.per_row(n)
    );
    shutdown.cancel();
    worker.await?.context("worker")?;
    Ok(rate)
}

async fn throughput(
    figures: &mut serde_json::Map<String, serde_json::Value>,
    n: usize,
    bootstrap: &str,
    contact_points: &[String],
    config: &WorkerConfig,
    partitions: i32,
) -> anyhow::Result<WorkerConfig> {
    let rounds: usize = env_or("BENCH_ROUNDS", "4").parse()?;
    // Every timed run writes into a table of its own (a worker run's is named after its
    // topic): no run meets a bigger table, with more to compact, than another.
    let keyspace = unique("bench");
    let session = Arc::new(
        stream_worker::sink::connect(contact_points, None, config.connections_per_host).await?,
    );
    let mut ceiling = Ceiling::in_new_table(session, &keyspace).await?;

    // 1. Warm-up, 2. the ceiling's best concurrency.
    let sweep_rows = (n / 2).clamp(1, 100_000);
    let rate = ceiling.run(ceiling.rows(n.min(200_000))?, 256, 1).await?;
    println!("warm-up: {rate:.0} rows/s (not counted)");
    let concurrency = match std::env::var("BENCH_CONCURRENCY")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(fixed) => fixed.parse()?,
        None => {
            let mut best = (0.0f64, 256usize);
            for c in [64, 128, 256, 512, 1024] {
                let rate = ceiling.run(ceiling.rows(sweep_rows)?, c, 1).await?;
                if rate > best.0 {
                    best = (rate, c);
                }
            }
            best.1
        }
    };
    // The loop's best shape at that concurrency: one task or two.
    let one = ceiling
        .run(ceiling.rows(sweep_rows)?, concurrency, 1)
        .await?;
    let two = ceiling
        .run(ceiling.rows(sweep_rows)?, concurrency, 2)
        .await?;
    let tasks = if two > one { 2 } else { 1 };
    let config = WorkerConfig {
        concurrency,
        ..config.clone()
    };

    // The Avro runs' schema, registered once under a subject of this bench.
    let registry = schema_registry::Registry::new(&config.schema_registry_url)?;
    let avro_schema = apache_avro::Schema::parse_str(AVRO_SCHEMA)?;
    let schema_id = registry
        .register(
            &schema_registry::value_subject(&unique("bench_avro")),
            AVRO_SCHEMA,
        )
        .await
        .context("register the Avro schema (is the schema registry up?)")?;

    // 3. Rounds at the same concurrency and connections, alternating which runs first.
    let (mut ceilings, mut workers, mut transforms, mut avros) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last_topic = String::new();
    for round in 1..=rounds {
        let payloads: Vec<Vec<u8>> = (0..n).map(record).collect();
        let (topic, transform_topic) = (unique("bench"), unique("bench_vrl"));
        for topic in [&topic, &transform_topic] {
            create_topic(bootstrap, topic, partitions).await?;
            produce(&producer(bootstrap)?, topic, &payloads).await?;
        }
        drop(payloads);
        let avro_topic = unique("bench_avro");
        let payloads = (0..n)
            .map(|i| avro_record(i, &avro_schema, schema_id))
            .collect::<anyhow::Result<Vec<_>>>()?;
        create_topic(bootstrap, &avro_topic, partitions).await?;
        produce(&producer(bootstrap)?, &avro_topic, &payloads).await?;
        drop(payloads);
        // Swap the order every round: a later run meets the flushes and compactions the
        // earlier ones' writes set off.
        let (mut ceiling_rate, mut worker_rate, mut transform_rate, mut avro_rate) =
            (0.0, 0.0, 0.0, 0.0);
        let order: [u8; 4] = if round % 2 == 1 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
        };
        for run in order {
            if run == 0 {
                ceiling = Ceiling::in_new_table(ceiling.session.clone(), &keyspace).await?;
            }
            settle(&ceiling.session).await?;
            match run {
                0 => ceiling_rate = ceiling.run(ceiling.rows(n)?, concurrency, tasks).await?,
                1 => {
                    worker_rate = worker_run(&config, &topic, &keyspace, Variant::Plain, n).await?
                }
                2 => {
                    avro_rate =
                        worker_run(&config, &avro_topic, &keyspace, Variant::Avro, n).await?
                }
                _ => {
                    transform_rate =
                        worker_run(&config, &transform_topic, &keyspace, Variant::Transform, n)
                            .await?;
                }
            }
        }
        println!(
            "round {round}: ceiling {ceiling_rate:.0} rows/s, worker {worker_rate:.0} rows/s \
             ({:.0}%), in Avro {avro_rate:.0} rows/s ({:.0}%), with a transform \
             {transform_rate:.0} rows/s ({:.0}%), concurrency {concurrency}, {} connections/host, \
             {partitions} partitions",
            100.0 * worker_rate / ceiling_rate,
            100.0 * avro_rate / ceiling_rate,
            100.0 * transform_rate / ceiling_rate,
            config.connections_per_host
        );
        ceilings.push(ceiling_rate);
        workers.push(worker_rate);
        transforms.push(transform_rate);
        avros.push(avro_rate);
        last_topic = topic;
    }
    let avro_rate = median(&avros);
    figures.insert("avro_rows_per_s".into(), avro_rate.round().into());
    figures.insert(
        "avro_ratio".into(),
        ((avro_rate / median(&ceilings) * 1000.0).round() / 1000.0).into(),
    );
    // Avro against JSON: the rounds' pairs, as for the transform's cost.
    let avro_vs_json: Vec<f64> = avros.iter().zip(&workers).map(|(a, w)| a / w).collect();
    figures.insert(
        "avro_vs_json".into(),
        ((median(&avro_vs_json) * 1000.0).round() / 1000.0).into(),
    );
    figures.insert(
        "avro_runs".into(),
        avros.iter().map(|r| r.round()).collect::<Vec<_>>().into(),
    );
    let transform_rate = median(&transforms);
    figures.insert("transform_rows_per_s".into(), transform_rate.round().into());
    figures.insert(
        "transform_ratio".into(),
        ((transform_rate / median(&ceilings) * 1000.0).round() / 1000.0).into(),
    );
    // What the transform costs: 1 − its rate over the plain worker's, from the rounds' pairs.
    let costs: Vec<f64> = transforms
        .iter()
        .zip(&workers)
        .map(|(t, w)| 1.0 - t / w)
        .collect();
    figures.insert(
        "transform_cost".into(),
        ((median(&costs) * 1000.0).round() / 1000.0).into(),
    );
    figures.insert(
        "transform_runs".into(),
        transforms
            .iter()
            .map(|r| r.round())
            .collect::<Vec<_>>()
            .into(),
    );
    let (worker_rate, ceiling_rate) = (median(&workers), median(&ceilings));
    let round = |v: &[f64]| v.iter().map(|r| r.round()).collect::<Vec<_>>();
    figures.insert("worker_rows_per_s".into(), worker_rate.round().into());
    figures.insert("ceiling_rows_per_s".into(), ceiling_rate.round().into());
    figures.insert(
        "ratio".into(),
        ((worker_rate / ceiling_rate * 1000.0).round() / 1000.0).into(),
    );
    // Each round pairs two neighbouring runs, so its ratio is the least disturbed by a load
    // change on a shared machine.
    let ratios: Vec<f64> = workers.iter().zip(&ceilings).map(|(w, c)| w / c).collect();
    figures.insert(
        "round_ratio_median".into(),
        ((median(&ratios) * 1000.0).round() / 1000.0).into(),
    );
    figures.insert("worker_runs".into(), round(&workers).into());
    figures.insert("ceiling_runs".into(), round(&ceilings).into());
    figures.insert("concurrency".into(), concurrency.into());
    figures.insert("ceiling_tasks".into(), tasks.into());
    figures.insert(
        "connections_per_host".into(),
        config.connections_per_host.into(),
    );
    println!(
        "median of {rounds}: worker {worker_rate:.0} rows/s, ceiling {ceiling_rate:.0} rows/s; \
         worker/ceiling = {:.0}% (median of the rounds' ratios {:.0}%); bench process VmHWM {} MB",
        100.0 * worker_rate / ceiling_rate,
        100.0 * median(&ratios),
        status_kb("VmHWM:") / 1024
    );
    // Fan-out: one more run, the records written to 3 tables; rows/s against the ceiling's.
    let fan_topic = unique("bench_fan");
    create_topic(bootstrap, &fan_topic, partitions).await?;
    let payloads: Vec<Vec<u8>> = (0..n).map(record).collect();
    produce(&producer(bootstrap)?, &fan_topic, &payloads).await?;
    drop(payloads);
    settle(&ceiling.session).await?;
    let fan_rows = 3.0 * worker_run(&config, &fan_topic, &keyspace, Variant::FanOut, n).await?;
    figures.insert("fan_out_rows_per_s".into(), fan_rows.round().into());
    figures.insert(
        "fan_out_ratio".into(),
        ((fan_rows / ceiling_rate * 1000.0).round() / 1000.0).into(),
    );
    println!(
        "fan-out to 3 tables: {fan_rows:.0} rows/s ({:.0}% of the ceiling)",
        100.0 * fan_rows / ceiling_rate
    );
    // 4. The worker binary's RSS on the same backlog.
    if !last_topic.is_empty() {
        binary_rss(figures, &last_topic, &keyspace, &config, n).await?;
    }
    Ok(config)
}

/// 3. End-to-end latency at a steady 2,000 records/s.
async fn steady_latency(
    figures: &mut serde_json::Map<String, serde_json::Value>,
    bootstrap: &str,
    config: WorkerConfig,
    partitions: i32,
) -> anyhow::Result<()> {
    let bootstrap = bootstrap.to_string();
    {
        let topic = unique("bench_lat");
        create_topic(&bootstrap, &topic, partitions).await?;
        let stream = definition(&topic, &topic, Variant::Plain)?;
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(stream_worker::run(
            config,
            vec![stream.clone()],
            metrics.clone(),
            shutdown.clone(),
        ));
        let stats = metrics.stream(&stream.name);
        while stats.assigned().len() < partitions as usize {
            anyhow::ensure!(!worker.is_finished(), "worker stopped early");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let producer = producer(&bootstrap)?;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let total = 30_000;
        let mut pending = Vec::with_capacity(total);
        for i in 0..total {
            if i % 20 == 0 {
                tick.tick().await;
            }
            let payload = record(i);
            let message: FutureRecord<'_, (), [u8]> =
                FutureRecord::to(&topic).payload(payload.as_slice());
            pending.push(
                producer
                    .send_result(message)
                    .map_err(|(e, _)| anyhow::anyhow!("queue: {e}"))?,
            );
        }
        for delivery in pending {
            delivery
                .await?
                .map_err(|(e, _)| anyhow::anyhow!("deliver: {e}"))?;
        }
        while stats.written_total() < total as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ms = |h: &stream_worker::metrics::Histogram, q: f64| {
            h.quantile(q)
                .map_or("n/a".to_string(), |s| format!("≤{:.1} ms", s * 1e3))
        };
        let upper_ms = |q: f64| {
            stats
                .end_to_end
                .quantile(q)
                .map(|s| (s * 1e4).round() / 10.0)
        };
        figures.insert(
            "latency_ms".into(),
            serde_json::json!({"p50": upper_ms(0.5), "p99": upper_ms(0.99), "records": total,
                               "note": "histogram bucket upper bounds, produce → row written"}),
        );
        for (what, histogram) in [
            ("produce → row written", &stats.end_to_end),
            ("received → row written", &stats.write_latency),
        ] {
            println!(
                "latency at 2000 records/s, {what} ({total} records): p50 {} p90 {} p99 {} p99.9 {}",
                ms(histogram, 0.5),
                ms(histogram, 0.9),
                ms(histogram, 0.99),
                ms(histogram, 0.999)
            );
        }
        shutdown.cancel();
        worker.await?.context("worker")?;
    }
    Ok(())
}
