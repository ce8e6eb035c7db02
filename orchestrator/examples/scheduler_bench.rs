//! Scheduler benchmark: empty-task DAGs through in-process schedulers on a fresh database.
//!
//! `cargo run --release -p updraft-orchestrator --example scheduler_bench -- [RUNS] [SCHEDULERS] [e2e|limit]`
//! Prints JSON: task instances per second and handoff latency percentiles (downstream
//! start_date − max(upstream end_date), from the database). `limit` runs only the claim and
//! completion statements in a tight loop (the store's ceiling).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use updraft_orchestrator::executor::{CLAIM_SQL, Claimed};
use updraft_orchestrator::processor::DagProcessor;
use updraft_orchestrator::scheduler::{Scheduler, SchedulerConfig};
use updraft_orchestrator::store::runs::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::{DagCache, MIGRATOR};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let schedulers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mode = args.get(3).cloned().unwrap_or_else(|| "e2e".into());
    // Dropped when main returns.
    let database = testkit::TestDatabase::create("bench").await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(40)
        .connect(database.url())
        .await?;
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
    let started = Instant::now();
    for index in 0..runs {
        // `chain` mode: chains only, to measure hand-off without queueing behind wide DAGs.
        let dag_id = if mode == "chain" {
            "chain10"
        } else {
            ["chain10", "fan", "wide100"][index % 3]
        };
        let request = TriggerRequest {
            run_id: Some(format!("r{index}")),
            ..Default::default()
        };
        trigger_run(&pool, dag_id, request).await?;
    }
    loop {
        let unfinished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM dag_run WHERE state IN ('queued', 'running')")
                .fetch_one(&pool)
                .await?;
        if unfinished == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    cancel.cancel();
    for handle in handles {
        let _ = handle.await;
    }
    let tis: i64 = sqlx::query_scalar("SELECT count(*) FROM task_instance WHERE state = 'success'")
        .fetch_one(&pool)
        .await?;
    let handoff = handoffs(&pool).await?;
    let first_to_last: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(end_date) - min(start_date))::float8 FROM task_instance",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "{}",
        json!({
            "mode": mode, "schedulers": schedulers, "runs": runs, "task_instances": tis,
            "elapsed_s": elapsed, "ti_per_s": tis as f64 / elapsed,
            "ti_per_s_db_span": tis as f64 / first_to_last,
            "handoff_ms": {"count": handoff.len(), "p50": percentile(&handoff, 0.5),
                "p95": percentile(&handoff, 0.95), "p99": percentile(&handoff, 0.99),
                "max": percentile(&handoff, 1.0)},
        })
    );
    Ok(())
}

type Span = (DateTime<Utc>, DateTime<Utc>);
type TiRow = (i64, String, DateTime<Utc>, DateTime<Utc>, i64);

/// Downstream start − max(upstream end), in ms, for every task with upstream tasks.
async fn handoffs(pool: &PgPool) -> anyhow::Result<Vec<f64>> {
    let cache = DagCache::new();
    let rows: Vec<TiRow> = sqlx::query_as(
        "SELECT t.dag_run_id, t.task_id, t.start_date, t.end_date, r.dag_version_id \
         FROM task_instance t JOIN dag_run r ON r.id = t.dag_run_id",
    )
    .fetch_all(pool)
    .await?;
    let mut by_run: HashMap<i64, HashMap<String, Span>> = HashMap::new();
    let mut versions = HashMap::new();
    for (run, task, start, end, version) in rows {
        by_run.entry(run).or_default().insert(task, (start, end));
        versions.insert(run, version);
    }
    let mut out = Vec::new();
    for (run, tasks) in &by_run {
        let dag = cache.get(pool, versions[run]).await?;
        for task in &dag.tasks {
            let Some(latest_up) = task
                .upstream
                .iter()
                .filter_map(|u| tasks.get(u).map(|t| t.1))
                .max()
            else {
                continue;
            };
            if let Some((start, _)) = tasks.get(&task.task_id) {
                out.push((*start - latest_up).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// The store's ceiling: claim 64 queued rows, complete each, repeat.
async fn limit(pool: &PgPool, runs: usize) -> anyhow::Result<()> {
    for index in 0..runs {
        let request = TriggerRequest {
            run_id: Some(format!("l{index}")),
            ..Default::default()
        };
        let run = trigger_run(pool, "wide100", request).await?;
        let dag = DagCache::new();
        let dag = dag.get(pool, run.dag_version_id).await?;
        sqlx::query("UPDATE dag_run SET state = 'running' WHERE id = $1")
            .bind(run.id)
            .execute(pool)
            .await?;
        let ids: Vec<&str> = dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
        sqlx::query(
            "INSERT INTO task_instance (dag_run_id, dag_id, run_id, task_id, operator, state, queued_at) \
             SELECT $1, 'wide100', $2, t, 'empty', 'queued', now() FROM unnest($3::text[]) t",
        )
        .bind(run.id)
        .bind(&run.run_id)
        .bind(&ids)
        .execute(pool)
        .await?;
    }
    let started = Instant::now();
    let mut done = 0usize;
    loop {
        let claimed: Vec<Claimed> = sqlx::query_as(CLAIM_SQL)
            .bind("bench")
            .bind(64i64)
            .fetch_all(pool)
            .await?;
        if claimed.is_empty() {
            break;
        }
        let tasks = claimed.iter().map(|c| {
            sqlx::query(
                "UPDATE task_instance SET state = 'success', end_date = now(), \
                 duration = extract(epoch FROM now() - start_date), updated_at = now() \
                 WHERE id = $1 AND owner = $2 AND state = 'running'",
            )
            .bind(c.id)
            .bind("bench")
            .execute(pool)
        });
        for result in futures::future::join_all(tasks).await {
            result?;
        }
        done += claimed.len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"mode": "limit", "task_instances": done, "elapsed_s": elapsed, "ti_per_s": done as f64 / elapsed})
    );
    Ok(())
}
