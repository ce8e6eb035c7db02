//! Page timings with 1,000 DAGs and 100,000 task instances (ignored by default: it seeds a lot).
//!   CI=true cargo test -p updraft-web --release --test it perf:: -- --ignored --nocapture

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use sqlx::PgPool;
use tower::ServiceExt;
use updraft_orchestrator::dag::RunState;
use updraft_orchestrator::engine::advance::start_queued_runs;
use updraft_orchestrator::engine::clear::mark_run;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::{DagCache, dags, task_instances};
use updraft_web::users::{Role, create_user};
use updraft_web::{AppState, app};

const DAGS: usize = 1_000;
const RUNS_PER_DAG: i64 = 20;
const TASKS: i64 = 5;
/// DAGs seeded at once.
const SEEDERS: usize = 8;

fn dag_yaml(i: usize) -> String {
    format!(
        "dag_id: perf_{i:04}\nschedule: \"@daily\"\nstart_date: 2024-01-01\ntags: [perf, group{}]\ntasks:\n\
         \x20 - id: t1\n    operator: empty\n\
         \x20 - id: t2\n    operator: empty\n    upstream: [t1]\n\
         \x20 - id: t3\n    operator: empty\n    upstream: [t1]\n\
         \x20 - id: t4\n    operator: empty\n    upstream: [t2, t3]\n\
         \x20 - id: t5\n    operator: empty\n    upstream: [t4]\n",
        i % 10
    )
}

/// The DAG's runs `scheduled__1` to `scheduled__RUNS_PER_DAG`, a day apart, taken through the
/// engine: triggered, started (which creates their task instances), then marked success, or
/// failed every seventh (as a user marks a run). The DAG is unpaused only meanwhile.
async fn seed_runs(pool: &PgPool, dag_id: &str) {
    let first = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let mut run_ids = HashMap::new();
    for g in 1..=RUNS_PER_DAG {
        let request = TriggerRequest {
            run_id: Some(format!("scheduled__{g}")),
            logical_date: Some(first + chrono::Duration::days(g)),
            ..Default::default()
        };
        let run = trigger_run(pool, dag_id, request).await.unwrap();
        let state = if g % 7 == 0 {
            RunState::Failed
        } else {
            RunState::Success
        };
        run_ids.insert(run.id, (run.run_id, state));
    }
    dags::set_paused(pool, dag_id, false).await.unwrap();
    let cache = DagCache::new();
    // max_active_runs: the next runs start once the started ones are marked.
    loop {
        let started = start_queued_runs(pool, &cache, dag_id).await.unwrap();
        if started.is_empty() {
            break;
        }
        for id in started {
            let (run_id, state) = &run_ids[&id];
            mark_run(pool, dag_id, run_id, *state).await.unwrap();
        }
    }
    dags::set_paused(pool, dag_id, true).await.unwrap();
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 * p).ceil() as usize).saturating_sub(1);
    samples[index.min(samples.len() - 1)]
}

#[tokio::test]
#[ignore]
async fn page_timings_at_scale() {
    if !testkit::require_postgres() {
        return;
    }
    let database = testkit::TestDatabase::create("web_perf").await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(database.url())
        .await
        .unwrap();
    updraft_orchestrator::store::MIGRATOR
        .run(&pool)
        .await
        .unwrap();
    create_user(
        &pool,
        "admin",
        Role::Admin,
        &crate::common::password("admin"),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..DAGS {
        std::fs::write(dir.path().join(format!("perf_{i:04}.yaml")), dag_yaml(i)).unwrap();
    }
    let started = Instant::now();
    updraft_orchestrator::processor::DagProcessor::new(
        pool.clone(),
        dir.path().to_path_buf(),
        Arc::new(updraft_operators::builtin_registry()),
    )
    .sync_once()
    .await
    .unwrap();
    println!("processor loaded {DAGS} DAGs in {:?}", started.elapsed());
    let started = Instant::now();
    let mut seeders = tokio::task::JoinSet::new();
    for seeder in 0..SEEDERS {
        let pool = pool.clone();
        seeders.spawn(async move {
            for i in (seeder..DAGS).step_by(SEEDERS) {
                seed_runs(&pool, &format!("perf_{i:04}")).await;
            }
        });
    }
    while let Some(seeded) = seeders.join_next().await {
        seeded.unwrap();
    }
    let by_state = task_instances::count_by_state(&pool).await.unwrap();
    let tis: i64 = by_state.iter().map(|states| states.count).sum();
    assert_eq!(tis, DAGS as i64 * RUNS_PER_DAG * TASKS);
    println!("seeded {tis} task instances in {:?}", started.elapsed());

    let router = app(AppState::new(pool.clone(), dir.path().to_path_buf()));
    let auth = crate::common::basic("admin");
    let get = |uri: String| {
        let router = router.clone();
        let auth = auth.clone();
        async move {
            let started = Instant::now();
            let response = router
                .oneshot(
                    Request::get(&uri)
                        .header(header::AUTHORIZATION, auth)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = response.status();
            let _ = response.into_body().collect().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{uri}");
            started.elapsed()
        }
    };
    let _ = get("/dags".into()).await; // warm the Basic cache and the pool
    type UriOf = Box<dyn Fn(usize) -> String>;
    let pages: Vec<(&str, UriOf)> = vec![
        (
            "DAG list",
            Box::new(|i| format!("/dags?page={}", i % 20 + 1)),
        ),
        (
            "DAG list search",
            Box::new(|i| format!("/dags?q=perf_0{}&tag=group{}", i % 10, i % 10)),
        ),
        (
            "DAG page (graph+grid)",
            Box::new(|i| format!("/dags/perf_{:04}", (i * 37) % DAGS)),
        ),
        (
            "run page",
            Box::new(|i| {
                format!(
                    "/dags/perf_{:04}/runs/scheduled__{}",
                    (i * 13) % DAGS,
                    i % 20 + 1
                )
            }),
        ),
        (
            "API dags",
            Box::new(|i| format!("/api/v1/dags?limit=100&offset={}", (i % 10) * 100)),
        ),
        (
            "API dagRuns ~",
            Box::new(|i| format!("/api/v1/dags/~/dagRuns?limit=100&offset={}", i * 100)),
        ),
        (
            "API taskInstances ~",
            Box::new(|i| {
                format!(
                    "/api/v1/dags/~/dagRuns/~/taskInstances?limit=100&offset={}",
                    i * 100
                )
            }),
        ),
    ];
    for (name, uri) in &pages {
        let mut samples = Vec::new();
        for i in 0..100 {
            samples.push(get(uri(i)).await);
        }
        let p50 = percentile(&mut samples, 0.50);
        let p95 = percentile(&mut samples, 0.95);
        println!(
            "{name:<24} p50 {:>7.1} ms   p95 {:>7.1} ms",
            p50.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3
        );
        assert!(p95 < Duration::from_millis(1000), "{name} is far too slow");
    }

    // POST dagRuns under load: 16 concurrent clients.
    let total = 2_000;
    let started = Instant::now();
    let mut handles = Vec::new();
    for client in 0..16 {
        let router = router.clone();
        let auth = auth.clone();
        handles.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            for n in 0..total / 16 {
                let body =
                    format!(r#"{{"dag_run_id": "load_{client}_{n}", "conf": {{"n": {n}}}}}"#);
                let dag = format!("/api/v1/dags/perf_{:04}/dagRuns", (client * 61 + n) % DAGS);
                let t = Instant::now();
                let response = router
                    .clone()
                    .oneshot(
                        Request::post(&dag)
                            .header(header::AUTHORIZATION, &auth)
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Body::from(body))
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                samples.push(t.elapsed());
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for handle in handles {
        samples.extend(handle.await.unwrap());
    }
    let elapsed = started.elapsed();
    let p50 = percentile(&mut samples, 0.50);
    let p99 = percentile(&mut samples, 0.99);
    println!(
        "POST dagRuns: {} in {:.2} s = {:.0}/s, p50 {:.1} ms, p99 {:.1} ms (16 concurrent, in-process)",
        samples.len(),
        elapsed.as_secs_f64(),
        samples.len() as f64 / elapsed.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}
