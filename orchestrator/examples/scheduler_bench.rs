//! Scheduler benchmark: empty-task DAGs through in-process schedulers on a fresh database.
//!
//! `cargo run --release -p updraft-orchestrator --example scheduler_bench -- RUNS SCHEDULERS MODE`
//! with MODE one of
//! - `e2e`: RUNS runs mixing a 10-task chain, a fan-out/fan-in of 10 and 100 parallel tasks,
//!   all triggered at once;
//! - `chain`: RUNS runs of the 10-task chain, all at once;
//! - `chain1`: RUNS runs of the 10-task chain, one after the other (a lone chain's hand-off);
//! - `limit`: the engine's own claim and end-of-try statements in a tight loop over RUNS runs of
//!   100 queued tasks, without decisions or hand-offs (what PostgreSQL can do here).
//!
//! `e2e` and `chain` are timed after one chain run that warms the engine up (not counted).
//!
//! Prints JSON: task instances per second, hand-off latency percentiles (downstream start_date
//! − latest upstream end_date, from the database), and the CPU time PostgreSQL and this process
//! spent per task instance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use updraft_orchestrator::dag::{Dag, RunState, TaskState};
use updraft_orchestrator::engine::advance::start_queued_runs;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::engine::{Scheduler, SchedulerConfig};
use updraft_orchestrator::metrics::HANDOFF;
use updraft_orchestrator::processor::DagProcessor;
use updraft_orchestrator::store::runs::DagRunRow;
use updraft_orchestrator::store::task_instances::{self, TryEnd};
use updraft_orchestrator::store::{DagCache, MIGRATOR, runs};

fn dags() -> Vec<(&'static str, String)> {
    let head = |id: &str| {
        format!(
            "dag_id: {id}\nschedule: null\nis_paused_upon_creation: false\nmax_active_runs: 1000\nmax_active_tasks: 10000\ntasks:\n"
        )
    };
    let mut chain = head("chain10");
    for i in 0..10 {
        let up = if i > 0 {
            format!("\n    upstream: [t{}]", i - 1)
        } else {
            String::new()
        };
        chain.push_str(&format!("  - id: t{i}\n    operator: empty{up}\n"));
    }
    let mut fan = head("fan");
    fan.push_str("  - id: start\n    operator: empty\n");
    for i in 0..8 {
        fan.push_str(&format!(
            "  - id: m{i}\n    operator: empty\n    upstream: [start]\n"
        ));
    }
    let all: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    fan.push_str(&format!(
        "  - id: end\n    operator: empty\n    upstream: [{}]\n",
        all.join(", ")
    ));
    let mut wide = head("wide100");
    for i in 0..100 {
        wide.push_str(&format!("  - id: w{i}\n    operator: empty\n"));
    }
    vec![("chain10", chain), ("fan", fan), ("wide100", wide)]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// CPU seconds (user + system) of this process, and of every PostgreSQL process of this
/// machine (backends, and the ones that ended, through the postmaster's children times).
fn cpu_seconds() -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let fields = |stat: &str| -> Option<(String, Vec<u64>)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<u64> = stat[close + 2..]
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        Some((comm, rest))
    };
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| fields(&stat))
        .map_or(0.0, |(_, f)| (f[11] + f[12]) as f64 / ticks);
    let mut postgres = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((comm, f)) = fields(&stat)
            && comm.starts_with("postgres")
            && f.len() > 14
        {
            postgres += (f[11] + f[12] + f[13] + f[14]) as f64 / ticks;
        }
    }
    (own, postgres)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let schedulers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mode = args.get(3).cloned().unwrap_or_else(|| "e2e".into());
    // Dropped when main returns.
    let database = testkit::TestDatabase::create("bench").await;
    let pool = updraft_orchestrator::store::connect(database.url(), 40).await?;
    MIGRATOR.run(&pool).await?;
    let folder = std::env::temp_dir().join(testkit::unique_name("bench_dags"));
    std::fs::create_dir_all(&folder)?;
    for (name, yaml) in dags() {
        std::fs::write(folder.join(format!("{name}.yaml")), yaml)?;
    }
    let registry = Arc::new(updraft_operators::builtin_registry());
    DagProcessor::new(pool.clone(), folder, Arc::clone(&registry))
        .sync_once()
        .await?;
    if mode == "limit" {
        return limit(&pool, runs).await;
    }
    let cancel = CancellationToken::new();
    let mut handles = Vec::new();
    for _ in 0..schedulers {
        let mut config = SchedulerConfig::from_env();
        config.parallelism = 64;
        let scheduler = Scheduler::new(pool.clone(), Arc::clone(&registry), config);
        handles.push(tokio::spawn(scheduler.run(cancel.clone())));
    }
    // Throughput is timed from a warm engine (its connections open, the DAGs cached), as a
    // long-running scheduler is: one chain run first, not counted.
    if mode != "chain1" {
        let warm_up = TriggerRequest {
            run_id: Some("warm_up".into()),
            ..Default::default()
        };
        let warm_up = trigger_run(&pool, "chain10", warm_up).await?;
        wait_finished(&pool, &[warm_up.id]).await?;
    }
    let (own_before, postgres_before) = cpu_seconds();
    let started = Instant::now();
    let mut created: Vec<DagRunRow> = Vec::new();
    for index in 0..runs {
        let dag_id = match mode.as_str() {
            // Chains only: hand-off without queueing behind wide DAGs.
            "chain" | "chain1" => "chain10",
            _ => ["chain10", "fan", "wide100"][index % 3],
        };
        let request = TriggerRequest {
            run_id: Some(format!("r{index}")),
            ..Default::default()
        };
        created.push(trigger_run(&pool, dag_id, request).await?);
        if mode == "chain1" {
            wait_finished(&pool, &[created[index].id]).await?;
        }
    }
    // How long the triggers took (one after the other, as the schedulers ran).
    let triggered_s = started.elapsed().as_secs_f64();
    let ids: Vec<i64> = created.iter().map(|run| run.id).collect();
    wait_finished(&pool, &ids).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let (own_after, postgres_after) = cpu_seconds();
    cancel.cancel();
    for handle in handles {
        let _ = handle.await;
    }
    let rows = task_instances::of_runs(&pool, &ids).await?;
    let tis = rows
        .iter()
        .filter(|row| row.state == TaskState::Success)
        .count();
    let handoff = handoffs(&pool, &created, &rows).await?;
    let cpu_ms = |seconds: f64| seconds * 1000.0 / tis.max(1) as f64;
    println!(
        "{}",
        json!({
            "mode": mode, "schedulers": schedulers, "runs": runs, "task_instances": tis,
            "elapsed_s": elapsed, "triggered_s": triggered_s, "ti_per_s": tis as f64 / elapsed,
            "handoff_ms": {"count": handoff.len(), "p50": percentile(&handoff, 0.5),
                "p95": percentile(&handoff, 0.95), "p99": percentile(&handoff, 0.99),
                "max": percentile(&handoff, 1.0)},
            // In the executor: from an operator's return to its downstream tasks claimed.
            "executor_handoff_ms": {"mean": HANDOFF.mean().map(|s| s * 1000.0),
                "p50_at_most": HANDOFF.quantile_bound(0.5).map(|s| s * 1000.0),
                "p99_at_most": HANDOFF.quantile_bound(0.99).map(|s| s * 1000.0)},
            "postgres_cpu_ms_per_ti": cpu_ms(postgres_after - postgres_before),
            "updraft_cpu_ms_per_ti": cpu_ms(own_after - own_before),
        })
    );
    Ok(())
}

async fn wait_finished(pool: &PgPool, ids: &[i64]) -> anyhow::Result<()> {
    loop {
        let states = runs::states(pool, ids).await?;
        if states.iter().all(|state| state.is_finished()) {
            anyhow::ensure!(
                states.iter().all(|state| *state == RunState::Success),
                "a run failed"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Downstream start − max(upstream end), in ms, for every task with upstream tasks.
async fn handoffs(
    pool: &PgPool,
    created: &[DagRunRow],
    rows: &[task_instances::TaskInstanceRow],
) -> anyhow::Result<Vec<f64>> {
    let cache = DagCache::new();
    let mut by_run: HashMap<i64, HashMap<&str, Span>> = HashMap::new();
    for row in rows {
        by_run
            .entry(row.dag_run_id)
            .or_default()
            .insert(&row.task_id, (row.start_date, row.end_date));
    }
    let mut out = Vec::new();
    for run in created {
        let dag: Arc<Dag> = cache.get(pool, run.dag_version_id).await?;
        let Some(tasks) = by_run.get(&run.id) else {
            continue;
        };
        for task in &dag.tasks {
            let Some(latest_up) = task
                .upstream
                .iter()
                .filter_map(|u| tasks.get(u.as_str()).and_then(|t| t.1))
                .max()
            else {
                continue;
            };
            if let Some((Some(start), _)) = tasks.get(task.task_id.as_str()) {
                out.push((*start - latest_up).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// The store's ceiling: the engine's claim of 64 queued task instances and the end of those
/// tries (`store::task_instances::claim` and `end_tries`), repeated on one connection, with no
/// decision or hand-off.
async fn limit(pool: &PgPool, runs: usize) -> anyhow::Result<()> {
    let cache = DagCache::new();
    for index in 0..runs {
        let request = TriggerRequest {
            run_id: Some(format!("l{index}")),
            ..Default::default()
        };
        trigger_run(pool, "wide100", request).await?;
    }
    // Starting the runs queues their tasks; no executor runs here.
    start_queued_runs(pool, &cache, "wide100").await?;
    let (own_before, postgres_before) = cpu_seconds();
    let started = Instant::now();
    let mut done = 0usize;
    // One connection, as the engine's end writer holds one: no round trip to take it.
    let mut connection = pool.acquire().await?;
    loop {
        let claimed = task_instances::claim(&mut *connection, "bench", 64).await?;
        if claimed.is_empty() {
            break;
        }
        let ends: Vec<TryEnd> = claimed
            .iter()
            .map(|try_| TryEnd {
                task_instance_id: try_.id,
                state: TaskState::Success,
                rendered_config: None,
                next_retry_at: None,
                output: None,
                read_back: Vec::new(),
                decided_downstream: None,
            })
            .collect();
        task_instances::end_tries(&mut *connection, "bench", &ends).await?;
        done += claimed.len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (own_after, postgres_after) = cpu_seconds();
    let cpu_ms = |seconds: f64| seconds * 1000.0 / done.max(1) as f64;
    println!(
        "{}",
        json!({"mode": "limit", "task_instances": done, "elapsed_s": elapsed,
               "ti_per_s": done as f64 / elapsed,
               "postgres_cpu_ms_per_ti": cpu_ms(postgres_after - postgres_before),
               "updraft_cpu_ms_per_ti": cpu_ms(own_after - own_before)})
    );
    Ok(())
}
