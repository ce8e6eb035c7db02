//! The consume loop: Kafka → decode → Cassandra (or dead letters) → commit what is done.
//!
//! Back-pressure: a record is taken from Kafka only with a write permit in hand (`concurrency`
//! permits). When no permit frees up for a while (Cassandra down or slow) the assigned
//! partitions are paused so librdkafka stops fetching too; nothing is buffered without bound.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use scylla::client::session::Session;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connections::{CassandraLogin, KafkaSettings, RegistryLogin};
use crate::dead_letter::{self, DeadLetters, SourceRecord};
use crate::decode::{Bound, Decoder, RecordError};
use crate::definition::Stream;
use crate::metrics::{Metrics, StreamMetrics};
use crate::offsets::{Generation, OffsetTracker};
use crate::schema::{self, SchemaError};
use crate::sink::{self, Sink, SinkError};

/// How the worker connects and how hard it pushes.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub kafka_bootstrap_servers: String,
    /// librdkafka settings for every client (SASL, SSL), from a Kafka connection.
    pub kafka_settings: KafkaSettings,
    pub cassandra_contact_points: Vec<String>,
    /// From a Cassandra connection with a login.
    pub cassandra_login: Option<CassandraLogin>,
    /// Writes (and dead-letter sends) in flight per stream.
    pub concurrency: usize,
    /// Replaces every definition's consumer group when set.
    pub group_override: Option<String>,
    /// Kafka consumer session timeout: how soon a dead worker's partitions move to others.
    pub session_timeout: Duration,
    pub commit_interval: Duration,
    pub progress_interval: Duration,
    /// How long shutdown and partition revocation wait for in-flight writes.
    pub drain_timeout: Duration,
    /// How long every permit must stay busy before partitions are paused.
    pub pause_after: Duration,
    pub connections_per_host: usize,
    /// The schema registry of Avro streams without `source.registry`.
    pub schema_registry_url: String,
    /// Its basic-auth login, from a registry connection (`source.registry_conn_id`).
    pub schema_registry_login: Option<RegistryLogin>,
}

impl WorkerConfig {
    /// The worker's schema registry, with the login of its connection.
    pub fn schema_registry(
        &self,
    ) -> Result<schema_registry::Registry, schema_registry::RegistryError> {
        let registry = schema_registry::Registry::new(&self.schema_registry_url)?;
        Ok(match self.schema_registry_login.clone() {
            Some(login) => registry.with_login(login.username, login.password),
            None => registry,
        })
    }

    /// A Kafka client's base settings: the brokers, then the connection's settings.
    pub fn kafka_client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.kafka_bootstrap_servers);
        for (name, value) in &self.kafka_settings.0 {
            client.set(name, value);
        }
        client
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            kafka_bootstrap_servers: "127.0.0.1:9092".into(),
            kafka_settings: KafkaSettings::default(),
            cassandra_contact_points: vec!["127.0.0.1:9042".into()],
            cassandra_login: None,
            concurrency: 256,
            group_override: None,
            session_timeout: Duration::from_secs(10),
            commit_interval: Duration::from_secs(1),
            progress_interval: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            pause_after: Duration::from_millis(500),
            connections_per_host: 2,
            schema_registry_url: "http://127.0.0.1:8081".into(),
            schema_registry_login: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("Kafka: cannot {what}: {source}")]
    Kafka {
        what: String,
        #[source]
        source: KafkaError,
    },
    #[error("stream task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Registry(#[from] schema_registry::RegistryError),
}

impl WorkerError {
    /// Whether retrying cannot help: a table or type that does not match its definition, a statement
    /// Cassandra refuses as invalid. Anything else (a node or broker away) passes.
    fn is_lasting(&self) -> bool {
        match self {
            WorkerError::Schema(
                SchemaError::Mismatch { .. } | SchemaError::TypeMismatch { .. },
            ) => true,
            WorkerError::Schema(SchemaError::Create { source, .. }) => sink::is_permanent(source),
            WorkerError::Registry(error) => !error.is_transient(),
            _ => false,
        }
    }
}

/// Connects to Cassandra and creates the keyspaces, tables and topics, retrying with backoff
/// while Cassandra or Kafka is away: a restarting cluster is never a reason to exit. `None` when
/// stopped before that.
async fn prepare(
    config: &WorkerConfig,
    streams: &[Stream],
    shutdown: &CancellationToken,
) -> Result<Option<Arc<Session>>, WorkerError> {
    let mut delay = Duration::from_millis(250);
    loop {
        match prepare_once(config, streams).await {
            Ok(session) => return Ok(Some(session)),
            Err(error) if error.is_lasting() => return Err(error),
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "cannot start the streams yet");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

pub(crate) async fn prepare_once(
    config: &WorkerConfig,
    streams: &[Stream],
) -> Result<Arc<Session>, WorkerError> {
    let session = Arc::new(
        sink::connect(
            &config.cassandra_contact_points,
            config.cassandra_login.as_ref(),
            config.connections_per_host,
        )
        .await?,
    );
    for stream in streams {
        schema::ensure(&session, stream).await?;
    }
    let topics: Vec<String> = streams
        .iter()
        .flat_map(|s| [s.topic.clone(), s.dead_letter_topic.clone()])
        .collect();
    dead_letter::ensure_topics(&config.kafka_client(), &topics)
        .await
        .map_err(kafka("create topics"))?;
    Ok(session)
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> WorkerError {
    let what = what.into();
    move |source| WorkerError::Kafka { what, source }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs every stream until `shutdown` is cancelled, then drains and commits. Creates keyspaces,
/// tables and topics first and refuses to start when a table does not match its definition.
pub async fn run(
    config: WorkerConfig,
    streams: Vec<Stream>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let Some(session) = prepare(&config, &streams, &shutdown).await? else {
        return Ok(());
    };

    let mut tasks = JoinSet::new();
    for stream in streams {
        let task = run_stream(
            config.clone(),
            stream,
            session.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tasks.spawn(task);
    }
    metrics.set_ready(true);
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined
            .map_err(|e| WorkerError::Task(e.to_string()))
            .and_then(|r| r);
        if let Err(error) = result {
            // One failed stream stops the others: a half-running worker is hard to notice.
            shutdown.cancel();
            first_error.get_or_insert(error);
        }
    }
    metrics.set_ready(false);
    first_error.map_or(Ok(()), Err)
}

/// The consumer's callbacks: commit what is done before partitions go away, and record lag.
struct StreamContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    metrics: Arc<StreamMetrics>,
    drain_timeout: Duration,
}

impl ClientContext for StreamContext {
    fn stats(&self, statistics: Statistics) {
        let mut lag = BTreeMap::new();
        let assigned = self.metrics.assigned();
        for (topic, stats) in statistics.topics {
            for (partition, p) in stats.partitions {
                if assigned.contains(&(topic.clone(), partition)) && p.consumer_lag >= 0 {
                    lag.insert((topic.clone(), partition), p.consumer_lag);
                }
            }
        }
        self.metrics.set_lag(lag);
    }
}

impl ConsumerContext for StreamContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let parts: Vec<(String, i32)> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        // Give in-flight writes of these partitions a bounded time to finish, so the next owner
        // replays as little as possible. Runs on the polling task; writes run on other tasks.
        let deadline = Instant::now() + self.drain_timeout;
        while lock(&self.tracker).in_flight(Some(&parts)) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let commits = lock(&self.tracker).take_commits_for(&parts);
        if !commits.is_empty() {
            match consumer.commit(&to_list(&commits), CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(stream = %self.metrics.stream, ?commits, "committed before revoke")
                }
                Err(error) => {
                    tracing::warn!(stream = %self.metrics.stream, %error, "commit before revoke failed")
                }
            }
        }
        let mut tracker = lock(&self.tracker);
        for (topic, partition) in &parts {
            tracker.revoke(topic, *partition);
        }
        let mut assigned = self.metrics.assigned();
        assigned.retain(|p| !parts.contains(p));
        self.metrics.set_assigned(assigned);
        tracing::info!(stream = %self.metrics.stream, partitions = ?parts, "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let mut tracker = lock(&self.tracker);
                for element in list.elements() {
                    tracker.assign(element.topic(), element.partition());
                }
                drop(tracker);
                let assigned: BTreeSet<(String, i32)> = consumer
                    .assignment()
                    .map(|l| {
                        l.elements()
                            .iter()
                            .map(|e| (e.topic().to_string(), e.partition()))
                            .collect()
                    })
                    .unwrap_or_default();
                tracing::info!(stream = %self.metrics.stream, partitions = ?assigned, "partitions assigned");
                self.metrics.set_assigned(assigned);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(stream = %self.metrics.stream, %error, "rebalance error")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(stream = %self.metrics.stream, %error, "offset commit failed");
        }
    }
}

fn to_list(commits: &[(String, i32, i64)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in commits {
        // Offsets come from records we received, so they are valid for the partition.
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    list
}

type Consumer_ = StreamConsumer<StreamContext>;

/// Records taken from the consumer's queue per wake-up of the consume loop, at most.
const BURST: usize = 64;

/// What a record's write task needs.
struct Shared {
    stream: Stream,
    decoder: Decoder,
    /// The stream's topic, shared by every record's `SourceRecord`.
    topic: Arc<str>,
    sink: Sink,
    dead_letters: DeadLetters,
    tracker: Arc<Mutex<OffsetTracker>>,
    metrics: Arc<StreamMetrics>,
}

async fn run_stream(
    config: WorkerConfig,
    stream: Stream,
    session: Arc<Session>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let metrics = metrics.stream(&stream.name);
    let sink = Sink::prepare(session, &stream, metrics.clone()).await?;
    let dead_letters = DeadLetters::new(
        config.kafka_client(),
        &stream.dead_letter_topic,
        metrics.clone(),
    )
    .map_err(kafka("create the dead-letter producer"))?;
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let context = StreamContext {
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        drain_timeout: config.drain_timeout,
    };
    let group = config
        .group_override
        .clone()
        .unwrap_or_else(|| stream.group.clone());
    let consumer: Consumer_ = config
        .kafka_client()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", stream.start_offset.as_kafka())
        .set(
            "session.timeout.ms",
            config.session_timeout.as_millis().to_string(),
        )
        .set("statistics.interval.ms", "5000")
        // Bound librdkafka's prefetch buffer (default 64 MiB per partition set).
        .set("queued.max.messages.kbytes", "8192")
        .set("queued.min.messages", "20000")
        // Once that buffer is full librdkafka waits this long before fetching again (default
        // 1 s): the buffer drains in ~0.3 s at full speed, so the default stalled the backlog.
        .set("fetch.queue.backoff.ms", "10")
        .create_with_context(context)
        .map_err(kafka("create the consumer"))?;
    consumer
        .subscribe(&[&stream.topic])
        .map_err(kafka(format!("subscribe to {}", stream.topic)))?;
    tracing::info!(stream = %stream.name, topic = %stream.topic, %group, keyspace = %stream.keyspace, tables = %stream.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(","), "stream started");

    let shared = Arc::new(Shared {
        topic: Arc::from(stream.topic.as_str()),
        decoder: Decoder::for_stream(&stream, &config)?,
        stream,
        sink,
        dead_letters,
        tracker,
        metrics,
    });
    let semaphore = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut commit_tick = tokio::time::interval(config.commit_interval);
    let mut progress = Progress::new(config.progress_interval);
    let mut paused = false;
    // One message stream and one cancellation future for the whole loop: `recv()` and
    // `cancelled()` per record would each register and unregister a waker under a lock.
    let mut messages = consumer.stream();
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);

    // When every permit is taken, wait for a batch of them: the loop then wakes once per
    // `batch` finished writes instead of once per write. Spare permits are held in `spare`.
    let batch = u32::try_from((config.concurrency / 16).clamp(1, 16)).unwrap_or(1);
    let mut spare: Option<OwnedSemaphorePermit> = None;

    'consume: loop {
        let permit = match take_permit(&mut spare, &semaphore) {
            Some(permit) => permit,
            None => {
                let pause_at = tokio::time::Instant::now() + config.pause_after;
                loop {
                    tokio::select! {
                        permits = semaphore.clone().acquire_many_owned(batch) => match permits {
                            Ok(mut permits) => match permits.split(1) {
                                Some(one) => {
                                    spare = Some(permits);
                                    break one;
                                }
                                None => continue,
                            },
                            Err(_) => break 'consume,
                        },
                        _ = &mut cancelled => break 'consume,
                        _ = commit_tick.tick() => commit(&consumer, &shared.tracker, CommitMode::Async),
                        _ = progress.tick() => progress.log(&shared.metrics, paused),
                        _ = tokio::time::sleep_until(pause_at), if !paused => {
                            paused = set_paused(&consumer, &shared, true);
                        }
                        // Paused: keep polling so rebalances and heartbeats are served. A record
                        // that was already fetched still gets written, after waiting for a permit.
                        Some(message) = messages.next(), if paused => {
                            let Ok(permit) = semaphore.clone().acquire_owned().await else { break 'consume };
                            spawn_writes(&shared, take(&shared, message, permit).into_iter().collect());
                        }
                    }
                }
            }
        };
        if paused {
            paused = set_paused(&consumer, &shared, false);
        }
        tokio::select! {
            biased;
            _ = &mut cancelled => break 'consume,
            _ = commit_tick.tick() => commit(&consumer, &shared.tracker, CommitMode::Async),
            _ = progress.tick() => progress.log(&shared.metrics, paused),
            Some(message) = messages.next() => {
                let mut burst: Vec<Taken> = take(&shared, message, permit).into_iter().collect();
                // Take what librdkafka already has queued without another trip through the
                // select: a backlog is consumed in bursts of up to BURST records.
                for _ in 1..BURST {
                    let Some(permit) = take_permit(&mut spare, &semaphore) else { break };
                    match messages.next().now_or_never() {
                        Some(Some(message)) => burst.extend(take(&shared, message, permit)),
                        _ => break,
                    }
                }
                spawn_writes(&shared, burst);
            }
        }
    }
    drop(messages);
    drop(spare); // or the drain below would wait for permits this loop holds

    // Shutdown: no more records; wait for in-flight writes, then commit synchronously.
    let in_flight = shared.metrics.in_flight();
    tracing::info!(stream = %shared.stream.name, in_flight, "stopping: draining in-flight writes");
    let all = u32::try_from(config.concurrency.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(config.drain_timeout, semaphore.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            stream = %shared.stream.name, in_flight = shared.metrics.in_flight(),
            "drain timed out; unfinished records stay uncommitted and will be replayed"
        );
    }
    commit(&consumer, &shared.tracker, CommitMode::Sync);
    progress.log(&shared.metrics, paused);
    consumer.unsubscribe();
    tracing::info!(stream = %shared.stream.name, "stream stopped");
    Ok(())
}

/// One write permit: from the batch held in `spare`, else a free one, else `None`.
fn take_permit(
    spare: &mut Option<OwnedSemaphorePermit>,
    semaphore: &Arc<Semaphore>,
) -> Option<OwnedSemaphorePermit> {
    if let Some(permits) = spare {
        if let Some(one) = permits.split(1) {
            return Some(one);
        }
        *spare = None;
    }
    semaphore.clone().try_acquire_owned().ok()
}

fn set_paused(consumer: &Consumer_, shared: &Shared, pause: bool) -> bool {
    let Ok(assignment) = consumer.assignment() else {
        return !pause;
    };
    let result = if pause {
        consumer.pause(&assignment)
    } else {
        consumer.resume(&assignment)
    };
    match result {
        Ok(()) => {
            let in_flight = shared.metrics.in_flight();
            if pause {
                tracing::warn!(stream = %shared.stream.name, in_flight, "all writes busy: pausing consumption");
            } else {
                tracing::info!(stream = %shared.stream.name, "resuming consumption");
            }
            pause
        }
        Err(error) => {
            tracing::warn!(stream = %shared.stream.name, %error, pause, "cannot pause/resume partitions");
            !pause
        }
    }
}

fn commit(consumer: &Consumer_, tracker: &Mutex<OffsetTracker>, mode: CommitMode) {
    let commits = lock(tracker).take_commits();
    if commits.is_empty() {
        return;
    }
    if let Err(error) = consumer.commit(&to_list(&commits), mode) {
        tracing::warn!(%error, "offset commit failed; will retry");
        lock(tracker).forget_commits(&commits);
    }
}

/// A record taken from Kafka, with its write permit, on its way to Cassandra.
struct Taken {
    record: SourceRecord,
    generation: Generation,
    record_millis: Option<i64>,
    timestamp_micros: i64,
    permit: OwnedSemaphorePermit,
}

/// Takes a consumed record into the offset tracker; `None` for a consume error (librdkafka
/// reconnects by itself: it is informational), whose permit is given back.
fn take(
    shared: &Shared,
    message: Result<BorrowedMessage<'_>, KafkaError>,
    permit: OwnedSemaphorePermit,
) -> Option<Taken> {
    let message = match message {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(stream = %shared.stream.name, %error, "Kafka consume error");
            return None;
        }
    };
    shared.metrics.consumed();
    let topic = if message.topic() == &*shared.topic {
        shared.topic.clone()
    } else {
        Arc::from(message.topic())
    };
    let record = SourceRecord {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
    };
    let generation = lock(&shared.tracker).start(&record.topic, record.partition, record.offset);
    // The Kafka record time is the write time: a replay never overwrites a newer row.
    let record_millis = message.timestamp().to_millis().filter(|ms| *ms >= 0);
    let timestamp_micros = record_millis.map_or_else(now_micros, |ms| ms.saturating_mul(1000));
    shared.metrics.add_in_flight(1);
    Some(Taken {
        record,
        generation,
        record_millis,
        timestamp_micros,
        permit,
    })
}

/// A record taken and decoded: its row, or why it has none.
struct Decoded {
    taken: Taken,
    started: Instant,
    row: Result<Option<Vec<Bound>>, RecordError>,
}

/// Writes a burst of records on one task: one task per burst rather than per record (a task's
/// spawn, aligned allocation and scheduling cost more than the decode of a seed record). The
/// burst is decoded first, then its writes are sent together: one thread runs the decoder (a
/// VRL program, say) over every record with its code and data in its caches, and Cassandra
/// receives the burst's requests close together. Bursts run on the runtime's threads side by
/// side, so a transform's CPU still spreads over them and does not hold up the consume loop.
fn spawn_writes(shared: &Arc<Shared>, burst: Vec<Taken>) {
    if burst.is_empty() {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut decoded = Vec::with_capacity(burst.len());
        for taken in burst {
            let started = Instant::now();
            let row = shared
                .decoder
                .decode(&shared.stream, taken.record.payload.as_deref())
                .await;
            decoded.push(Decoded {
                taken,
                started,
                row,
            });
        }
        let mut writes: FuturesUnordered<_> = decoded
            .into_iter()
            .map(|decoded| write(&shared, decoded))
            .collect();
        while writes.next().await.is_some() {}
    });
}

/// Writes one decoded record (or dead-letters it), then marks its offset done.
async fn write(shared: &Shared, decoded: Decoded) {
    let Decoded {
        taken:
            Taken {
                record,
                generation,
                record_millis,
                timestamp_micros,
                permit,
            },
        started,
        row,
    } = decoded;
    let outcome = match row {
        Ok(Some(row)) => shared
            .sink
            .write(row, timestamp_micros)
            .await
            .map(|()| true),
        Ok(None) => Ok(false),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(false) => shared.metrics.dropped(),
        Ok(true) => {
            let end_to_end = record_millis.and_then(|ms| {
                let now = now_micros() / 1000;
                u64::try_from(now - ms).ok().map(Duration::from_millis)
            });
            shared.metrics.written(started.elapsed(), end_to_end);
        }
        Err(error) => shared.dead_letters.send(&record, &error).await,
    }
    lock(&shared.tracker).finish(&record.topic, record.partition, record.offset, generation);
    shared.metrics.add_in_flight(-1);
    drop(permit);
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The periodic one-line summary.
struct Progress {
    tick: tokio::time::Interval,
    last: Instant,
    last_written: u64,
}

impl Progress {
    fn new(every: Duration) -> Self {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            tick,
            last: Instant::now(),
            last_written: 0,
        }
    }

    async fn tick(&mut self) {
        self.tick.tick().await;
    }

    fn log(&mut self, metrics: &StreamMetrics, paused: bool) {
        let written = metrics.written_total();
        let seconds = self.last.elapsed().as_secs_f64().max(0.001);
        let rate = (written.saturating_sub(self.last_written)) as f64 / seconds;
        self.last = Instant::now();
        self.last_written = written;
        metrics.set_rate(rate);
        tracing::info!(
            stream = %metrics.stream,
            rate = format!("{rate:.0}/s"),
            consumed = metrics.consumed_total(),
            written,
            dead_lettered = metrics.dead_lettered_total(),
            retries = metrics.retries_total(),
            in_flight = metrics.in_flight(),
            lag = metrics.total_lag(),
            partitions = metrics.assigned().len(),
            paused,
            "progress"
        );
    }
}
