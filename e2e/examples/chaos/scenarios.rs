//! The scenarios, each with a short size (CI) and a full one (`--full`, figures in
//! RELIABILITY.md).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::Row;
use crate::processes::{Dice, stack};
use crate::stream_rig::{Durability, StreamRig, record};
use crate::task_runs::{Cluster, Load, REAPER_THRESHOLD_MS};

/// Every scenario; the last two need the 3-node stack (`scripts/stack up --nodes 3`).
pub const NAMES: &[&str] = &[
    "kill-updraft",
    "restart-postgres",
    "kill-stream-worker",
    "kill-kafka-leader",
    "kill-cassandra",
];

pub async fn run(name: &str, full: bool, seed: u64) -> Row {
    match name {
        "kill-updraft" => kill_updraft(full, seed).await,
        "restart-postgres" => restart_postgres(full).await,
        "kill-stream-worker" => kill_stream_worker(full, seed).await,
        "kill-kafka-leader" => kill_kafka_leader(full).await,
        "kill-cassandra" => kill_cassandra(full).await,
        other => unreachable!("scenario {other} is not in NAMES"),
    }
}

/// After the last fault, how long the runs may take to finish (the promise: nothing stuck two
/// minutes after the last kill), plus the work still queued then.
fn settle_limit(load: &Load) -> Duration {
    let waves = load.runs.div_ceil(load.max_active_runs) as f64;
    Duration::from_secs(120) + Duration::from_secs_f64(waves * load.tasks as f64 * load.task_secs)
}

/// kill -9 of a random `updraft` process (3 schedulers, 1 webserver) every few seconds, each
/// started again at once, while chains of shell tasks run.
async fn kill_updraft(full: bool, seed: u64) -> Row {
    let (load, kills, every) = if full {
        (
            Load {
                runs: 50,
                tasks: 10,
                task_secs: 2.0,
                max_active_runs: 10,
            },
            20,
            3.0,
        )
    } else {
        (
            Load {
                runs: 10,
                tasks: 10,
                task_secs: 1.0,
                max_active_runs: 5,
            },
            6,
            3.0,
        )
    };
    let mut cluster = Cluster::start("chaos_kill", &load, 3, true).await;
    cluster.trigger(&load).await;
    cluster.wait_for_work().await;
    let mut dice = Dice::new(seed);
    let mut webserver_kills = 0;
    for _ in 0..kills {
        // Pacing the faults, not waiting for a condition.
        tokio::time::sleep(Duration::from_secs_f64(every)).await;
        let victim = dice.below(cluster.processes.len());
        cluster.processes[victim].kill_and_restart();
        webserver_kills += usize::from(cluster.processes[victim].name == "webserver");
    }
    let last_kill = Instant::now();
    let verdict = cluster.verdict(last_kill, settle_limit(&load)).await;
    let holds = verdict.holds();
    let outcome = verdict.describe();
    if !holds {
        cluster.keep_logs("kill-updraft");
    }
    Row {
        scenario: "kill-updraft",
        injected: format!(
            "{kills} × kill -9 of a random process of 3 `updraft scheduler` + 1 `updraft webserver` ({} of the schedulers), every {every} s, restarted at once (reaper threshold {REAPER_THRESHOLD_MS} ms)",
            kills - webserver_kills
        ),
        load: load.describe(),
        outcome,
        holds,
        seconds: 0.0,
    }
}

/// PostgreSQL killed (all its processes, SIGKILL) mid-load and started again; no `updraft`
/// process is restarted.
async fn restart_postgres(full: bool) -> Row {
    let (load, outage) = if full {
        (
            Load {
                runs: 30,
                tasks: 10,
                task_secs: 1.0,
                max_active_runs: 10,
            },
            20,
        )
    } else {
        (
            Load {
                runs: 10,
                tasks: 10,
                task_secs: 1.0,
                max_active_runs: 5,
            },
            5,
        )
    };
    let mut cluster = Cluster::start("chaos_pg", &load, 2, true).await;
    cluster.trigger(&load).await;
    cluster.wait_for_work().await;
    stack(&["kill", "postgres"]);
    // The outage's length is the fault itself.
    tokio::time::sleep(Duration::from_secs(outage)).await;
    stack(&["start", "postgres"]);
    let back = Instant::now();
    let verdict = cluster.verdict(back, settle_limit(&load)).await;
    let restarted: Vec<String> = cluster
        .processes
        .iter_mut()
        .filter_map(|process| (!process.is_alive()).then(|| process.name.clone()))
        .collect();
    let holds = verdict.holds() && restarted.is_empty();
    let mut outcome = verdict.describe();
    outcome.push_str(&format!("; processes that exited: {}", restarted.len()));
    if !holds {
        cluster.keep_logs("restart-postgres");
    }
    Row {
        scenario: "restart-postgres",
        injected: format!(
            "PostgreSQL killed (SIGKILL, every process), down {outage} s, started again"
        ),
        load: format!(
            "{}; 2 schedulers + 1 webserver, none restarted",
            load.describe()
        ),
        outcome,
        holds,
        seconds: 0.0,
    }
}

/// kill -9 of the stream worker every second or two during a backlog, started again each time:
/// every record lands, once per id.
async fn kill_stream_worker(full: bool, seed: u64) -> Row {
    let (records, kills) = if full { (100_000, 20) } else { (20_000, 5) };
    let rig = StreamRig::start("chaos_sw", &stack_durability()).await;
    produce(&rig.topic, 0..records).await;
    let mut rig = rig;
    let mut dice = Dice::new(seed);
    let mut mid_stream = 0;
    for _ in 0..kills {
        // Pacing the faults: 1 to 2 s apart.
        tokio::time::sleep(Duration::from_millis(1_000 + dice.below(1_000) as u64)).await;
        rig.worker.kill_and_restart();
        mid_stream += usize::from(rig.rows().await < records as i64);
    }
    let (rows, caught_up) = rig
        .wait_rows(records as i64, Duration::from_secs(180))
        .await;
    let dead_letters = rig.dead_letters();
    // The primary key is the id: rows are distinct ids, and every id must be there.
    let holds = rows == records as i64 && dead_letters == 0;
    rig.finish(holds, "kill-stream-worker").await;
    Row {
        scenario: "kill-stream-worker",
        injected: format!(
            "{kills} × kill -9 of `stream-worker` 1-2 s apart ({mid_stream} of them mid-backlog), restarted at once"
        ),
        load: format!("backlog of {records} records on 3 partitions"),
        outcome: format!(
            "{rows} rows for {records} distinct ids ({} lost), {dead_letters} dead letters; caught up {:.1} s after the last kill",
            records as i64 - rows,
            caught_up.as_secs_f64()
        ),
        holds,
        seconds: 0.0,
    }
}

/// How many nodes the running stack has (`scripts/stack up --nodes N`).
fn stack_nodes() -> u32 {
    std::env::var("UPDRAFT_STACK_NODES")
        .ok()
        .and_then(|nodes| nodes.parse().ok())
        .unwrap_or(1)
}

/// Three replicas and quorum writes on a 3-node stack, one replica otherwise.
fn stack_durability() -> Durability {
    if stack_nodes() >= 3 {
        Durability {
            topic_replicas: 3,
            keyspace_replicas: 3,
            consistency: "QUORUM",
        }
    } else {
        Durability {
            topic_replicas: 1,
            keyspace_replicas: 1,
            consistency: "LOCAL_ONE",
        }
    }
}

/// The row of a scenario that needs the 3-node stack, on a smaller one.
fn needs_three_nodes(scenario: &'static str) -> Option<Row> {
    (stack_nodes() < 3).then(|| Row {
        scenario,
        injected: "nothing".into(),
        load: "none".into(),
        outcome: "needs the 3-node stack: scripts/stack down; scripts/stack up --nodes 3".into(),
        holds: false,
        seconds: 0.0,
    })
}

/// Publishes the records of `indexes` in 10 slices over about 3 s, in the background.
fn produce_paced(topic: &str, indexes: std::ops::Range<usize>) -> tokio::task::JoinHandle<()> {
    let topic = topic.to_string();
    tokio::spawn(async move {
        let slice = indexes.len().div_ceil(10);
        let mut start = indexes.start;
        while start < indexes.end {
            let end = (start + slice).min(indexes.end);
            produce(&topic, start..end).await;
            start = end;
            // Pacing the publication, so the faults land mid-stream.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// Publishes the records of `indexes` and waits for every acknowledgement.
async fn produce(topic: &str, indexes: std::ops::Range<usize>) {
    let payloads: Vec<Vec<u8>> = indexes
        .map(|index| record(index).to_string().into_bytes())
        .collect();
    testkit::kafka::produce(topic, &payloads).await;
}

/// The leader broker of partition 0 killed mid-publish (idempotent producer, acks=all) while
/// the stream worker consumes, started again later: every record published and landed.
async fn kill_kafka_leader(full: bool) -> Row {
    if let Some(row) = needs_three_nodes("kill-kafka-leader") {
        return row;
    }
    let records = if full { 50_000 } else { 10_000 };
    let rig = StreamRig::start("chaos_kl", &stack_durability()).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", testkit::kafka_bootstrap_servers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let slices = 20;
    let mut deliveries = Vec::with_capacity(records);
    let mut killed = None;
    for slice in 0..slices {
        for index in (slice * records / slices)..((slice + 1) * records / slices) {
            let payload = record(index).to_string();
            let key = index.to_string();
            let sent =
                producer.send_result(FutureRecord::to(&rig.topic).key(&key).payload(&payload));
            deliveries.push(sent.map_err(|(error, _)| error));
        }
        if slice == slices / 3 {
            let leader =
                testkit::kafka::leader_of(&rig.topic, 0).expect("partition 0 has a leader");
            stack(&["kill", &format!("kafka:{leader}")]);
            killed = Some(leader);
        }
        if slice == 2 * slices / 3
            && let Some(leader) = killed
        {
            stack(&["start", &format!("kafka:{leader}")]);
        }
        // Pacing the publication, so the kill lands mid-publish.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut failed = 0;
    for delivery in deliveries {
        match delivery {
            Ok(future) => failed += usize::from(!matches!(future.await, Ok(Ok(_)))),
            Err(_) => failed += 1,
        }
    }
    let published = testkit::kafka::record_count(&rig.topic);
    let (rows, caught_up) = rig
        .wait_rows(records as i64, Duration::from_secs(180))
        .await;
    let dead_letters = rig.dead_letters();
    let holds = failed == 0 && rows == records as i64 && dead_letters == 0;
    rig.finish(holds, "kill-kafka-leader").await;
    Row {
        scenario: "kill-kafka-leader",
        injected: format!(
            "kill -9 of broker {} (leader of partition 0) mid-publish and mid-stream after a third of the records, started again after two thirds",
            killed.unwrap_or_default()
        ),
        load: format!(
            "{records} records published (idempotent, acks=all; RF 3, min ISR 2) and streamed"
        ),
        outcome: format!(
            "{failed} publish failures, {published} records on the topic ({} duplicates), {rows} rows for {records} ids ({} lost), {dead_letters} dead letters; caught up {:.1} s after publishing",
            published.saturating_sub(records),
            records as i64 - rows,
            caught_up.as_secs_f64()
        ),
        holds,
        seconds: 0.0,
    }
}

/// One Cassandra node killed mid-stream (writes at QUORUM continue), then the whole ring
/// killed and started again mid-stream: every record lands once the ring is back.
async fn kill_cassandra(full: bool) -> Row {
    if let Some(row) = needs_three_nodes("kill-cassandra") {
        return row;
    }
    let records = if full { 50_000 } else { 10_000 };
    let rig = StreamRig::start("chaos_cn", &stack_durability()).await;
    let publishing = produce_paced(&rig.topic, 0..records);
    // Mid-stream: the worker is writing, records still arriving.
    rig.wait_rows(1, Duration::from_secs(60)).await;
    let at_kill = rig.rows().await;
    stack(&["kill", "cassandra:3"]);
    publishing.await.expect("publishing");
    let (while_down, _) = rig
        .wait_rows(records as i64, Duration::from_secs(180))
        .await;
    stack(&["start", "cassandra:3"]);

    let publishing = produce_paced(&rig.topic, records..2 * records);
    rig.wait_rows(records as i64 + 1, Duration::from_secs(60))
        .await;
    stack(&["kill", "cassandra:1", "cassandra:2", "cassandra:3"]);
    let ring_down = Instant::now();
    publishing.await.expect("publishing");
    stack(&["start", "cassandra:1", "cassandra:2", "cassandra:3"]);
    let ring_back = ring_down.elapsed();
    let (rows, caught_up) = rig
        .wait_rows(2 * records as i64, Duration::from_secs(240))
        .await;
    let dead_letters = rig.dead_letters();
    let holds = while_down == records as i64 && rows == 2 * records as i64 && dead_letters == 0;
    rig.finish(holds, "kill-cassandra").await;
    Row {
        scenario: "kill-cassandra",
        injected: format!(
            "kill -9 of node 3 of 3 mid-stream; later all 3 nodes killed mid-stream and started again ({:.0} s down)",
            ring_back.as_secs_f64()
        ),
        load: format!("2 × {records} records, RF 3, writes at QUORUM"),
        outcome: format!(
            "node down: {} of {records} rows written after the kill, {while_down} in all; ring restarted: {rows} rows for {} ids ({} lost), {dead_letters} dead letters, caught up {:.1} s after the ring was back",
            while_down - at_kill,
            2 * records,
            2 * records as i64 - rows,
            caught_up.as_secs_f64()
        ),
        holds,
        seconds: 0.0,
    }
}
