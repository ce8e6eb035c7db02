//! Parse + validate 1,000 generated DAG files of 10 tasks each (best of 3 `load_folder` runs),
//! then, from a cold start on a fresh database, the time until the DAG processor has made every
//! DAG visible. Prints one JSON line for `scripts/bench`.
//! Run: `cargo run --release -p updraft-orchestrator --example parse_bench [FILES]`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use updraft_orchestrator::dag::load_folder;
use updraft_orchestrator::processor::DagProcessor;

/// A realistic file: schedule, params, default args, a chain with fan-in, templates.
fn dag_file(index: usize, tasks: usize) -> String {
    let mut text = format!(
        "dag_id: bench_{index}\ndescription: generated DAG {index}\nschedule: \"{} 3 * * *\"\n\
         timezone: Europe/Paris\nstart_date: 2024-01-01\ncatchup: false\ntags: [bench]\n\
         params:\n  results: {{default: 10, type: integer}}\n\
         default_args:\n  owner: bench\n  retries: 2\n  retry_delay: 30s\n  execution_timeout: 5m\ntasks:\n",
        index % 60
    );
    for task in 0..tasks {
        let upstream = if task == 0 {
            String::new()
        } else {
            format!("\n    upstream: [t{}]", task - 1)
        };
        match task % 3 {
            0 => writeln!(text, "  - id: t{task}\n    operator: empty{upstream}"),
            1 => writeln!(
                text,
                "  - id: t{task}\n    operator: shell{upstream}\n    command: \"echo {{{{ ds }}}} {{{{ params.results }}}} {task}\"\n    env: {{RUN: \"{{{{ run_id }}}}\"}}"
            ),
            _ => writeln!(
                text,
                "  - id: t{task}\n    operator: http{upstream}\n    url: \"{{{{ var('base_url', 'http://127.0.0.1:8080') }}}}/items/{task}\"\n    query: {{day: \"{{{{ ds }}}}\"}}\n    timeout: 10s\n    retries: 1"
            ),
        }
        .expect("writing to a String");
    }
    text
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: usize = std::env::args()
        .nth(1)
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(1_000);
    let tasks = 10;
    let dir = std::env::temp_dir().join(format!("updraft-parse-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for index in 0..files {
        std::fs::write(
            dir.join(format!("bench_{index:04}.yaml")),
            dag_file(index, tasks),
        )?;
    }
    let registry = Arc::new(updraft_operators::builtin_registry());
    let mut timings = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let load = load_folder(&dir, &registry);
        let elapsed = started.elapsed();
        if let Some(error) = load.errors.first() {
            return Err(format!("{}: {:?}", error.path.display(), error.diagnostics).into());
        }
        assert_eq!(load.dags.len(), files);
        timings.push(elapsed.as_secs_f64());
    }
    let parse_s = timings.iter().copied().fold(f64::INFINITY, f64::min);

    // Cold start: a new database, a new pool, one processor pass, then count what is visible.
    let database = testkit::TestDatabase::create("bench_parse").await;
    let started = Instant::now();
    let pool = sqlx::PgPool::connect(database.url()).await?;
    updraft_orchestrator::store::MIGRATOR.run(&pool).await?;
    let processor = DagProcessor::new(pool.clone(), dir.clone(), registry);
    processor.sync_once().await?;
    let visible = updraft_orchestrator::store::dags::list(&pool)
        .await?
        .iter()
        .filter(|dag| dag.is_active)
        .count();
    let db_visible_s = started.elapsed().as_secs_f64();
    assert_eq!(visible, files, "not every DAG is visible");
    std::fs::remove_dir_all(&dir)?;
    println!(
        "{}",
        serde_json::json!({
            "bench": "parse", "files": files, "tasks_per_dag": tasks,
            "parse_s": parse_s, "parse_runs_s": timings, "db_visible_s": db_visible_s,
        })
    );
    Ok(())
}
