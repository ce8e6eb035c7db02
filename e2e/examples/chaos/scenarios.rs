//! The scenarios, each with a short size (CI) and a full one (`--full`, figures in
//! RELIABILITY.md).

use std::time::{Duration, Instant};

use crate::Row;
use crate::processes::{Dice, Process, binary, free_port, stack};
use crate::task_runs::{Cluster, Load, REAPER_THRESHOLD_MS};

pub const NAMES: &[&str] = &["kill-updraft", "restart-postgres", "kill-stream-worker"];

pub async fn run(name: &str, full: bool, seed: u64) -> Row {
    match name {
        "kill-updraft" => kill_updraft(full, seed).await,
        "restart-postgres" => restart_postgres(full).await,
        "kill-stream-worker" => kill_stream_worker(full, seed).await,
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
    let mut victims = Vec::new();
    for _ in 0..kills {
        // Pacing the faults, not waiting for a condition.
        tokio::time::sleep(Duration::from_secs_f64(every)).await;
        let victim = dice.below(cluster.processes.len());
        cluster.processes[victim].kill_and_restart();
        victims.push(cluster.processes[victim].name.clone());
    }
    let last_kill = Instant::now();
    let verdict = cluster.verdict(last_kill, settle_limit(&load)).await;
    let holds = verdict.holds();
    let outcome = verdict.describe();
    if !holds {
        eprintln!(
            "kill-updraft: logs kept in {}",
            cluster.keep_logs().display()
        );
    }
    Row {
        scenario: "kill-updraft",
        injected: format!(
            "{kills} × kill -9 of a random process of 3 `updraft scheduler` + 1 `updraft webserver`, every {every} s, restarted at once (reaper threshold {REAPER_THRESHOLD_MS} ms)"
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
        eprintln!(
            "restart-postgres: logs kept in {}",
            cluster.keep_logs().display()
        );
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
    let names = testkit::unique_name("chaos_sw");
    let topic = format!("{names}_topic");
    testkit::kafka::create_topic(&topic, 3).await;
    let payloads: Vec<Vec<u8>> = (0..records)
        .map(|index| record(index).to_string().into_bytes())
        .collect();
    testkit::kafka::produce(&topic, &payloads).await;

    let folder = tempfile::tempdir().expect("tempdir");
    let definition = folder.path().join("stream.yaml");
    let shipped =
        std::fs::read_to_string(crate::processes::workspace().join("streams/users_created.yaml"))
            .expect("the shipped definition");
    let text = shipped
        .replace("topic: users_created", &format!("topic: {topic}"))
        .replace("group: updraft-stream-worker", &format!("group: {names}"))
        .replace("keyspace: spark_streaming", &format!("keyspace: {names}"))
        .replace(
            "dead_letter_topic: users_created.dlq",
            &format!("dead_letter_topic: {topic}.dlq"),
        );
    std::fs::write(&definition, text).expect("definition");
    let env = [
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            testkit::kafka_bootstrap_servers(),
        ),
        (
            "CASSANDRA_CONTACT_POINTS",
            testkit::cassandra_contact_points(),
        ),
        ("RUST_LOG", "warn".to_string()),
    ];
    let metrics = format!("127.0.0.1:{}", free_port());
    let args = [
        "--definitions",
        &definition.display().to_string(),
        "--metrics-addr",
        &metrics,
        "--session-timeout-ms",
        "6000",
    ]
    .map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = folder.path().join("worker.log");
    let mut worker = Process::start("stream-worker", &binary("stream-worker"), &args, &env, &log);
    let session = testkit::cassandra::session().await;
    let table = format!("{names}.created_users");
    let mut dice = Dice::new(seed);
    let mut rows_at_kills = Vec::new();
    for _ in 0..kills {
        // Pacing the faults: 1 to 2 s apart.
        tokio::time::sleep(Duration::from_millis(1_000 + dice.below(1_000) as u64)).await;
        worker.kill_and_restart();
        rows_at_kills.push(testkit::cassandra::count_rows(&session, &table).await);
    }
    let last_kill = Instant::now();
    let mut rows = 0;
    while last_kill.elapsed() < Duration::from_secs(180) {
        rows = testkit::cassandra::count_rows(&session, &table).await;
        if rows >= records as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let caught_up = last_kill.elapsed();
    let dead_letters = testkit::kafka::record_count(&format!("{topic}.dlq"));
    worker.kill();
    // The primary key is the id: rows are distinct ids, and every id must be there.
    let holds = rows == records as i64 && dead_letters == 0;
    let mid_stream = rows_at_kills
        .iter()
        .filter(|rows| **rows < records as i64)
        .count();
    if !holds {
        eprintln!(
            "kill-stream-worker: log kept in {}",
            folder.keep().display()
        );
    } else {
        testkit::cassandra::drop_keyspace(&session, &names).await;
        testkit::kafka::delete_topic(&topic).await;
    }
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

/// A record of the seed's shape with a distinct id per index.
fn record(index: usize) -> serde_json::Value {
    serde_json::json!({
        "id": uuid::Uuid::from_u128(0xC4A0_5000_0000_0000_0000_0000_0000_0000 + index as u128).to_string(),
        "first_name": format!("First{index}"),
        "last_name": "Chaos",
        "gender": "female",
        "address": "1 Fault Street",
        "post_code": "00000",
        "email": format!("user{index}@example.com"),
        "username": format!("user{index}"),
        "dob": "1990-01-01T00:00:00.000Z",
        "registered_date": "2020-01-01T00:00:00.000Z",
        "phone": "000",
        "picture": "https://example.com/p.jpg",
    })
}
