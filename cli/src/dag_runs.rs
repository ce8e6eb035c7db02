//! `updraft dags list|trigger|pause|unpause|state|backfill` and `updraft tasks clear`:
//! commands on the database, through the orchestrator's store API.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use updraft_orchestrator::dag::{RunState, parse_logical_date};
use updraft_orchestrator::engine::clear::{ClearRequest, clear_task_instances};
use updraft_orchestrator::engine::trigger::{TriggerRequest, create_backfill, trigger_run};
use updraft_orchestrator::store::{connections, dags, import_errors, runs};
use updraft_secrets::Cipher;

use crate::audit::{self, Target};

pub const DEFAULT_DATABASE_URL: &str = "postgres://updraft:updraft@127.0.0.1:5432/updraft";

#[derive(Args, Clone)]
pub struct DbArgs {
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
}

impl DbArgs {
    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        updraft_orchestrator::store::connect(&self.database_url, 4)
            .await
            .with_context(|| "cannot connect to the database (DATABASE_URL)")
    }
}

#[derive(Args)]
pub struct DagIdArgs {
    dag_id: String,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Args)]
pub struct TriggerArgs {
    dag_id: String,
    /// The run's conf, a JSON object (validated against the DAG's params).
    #[arg(long)]
    conf: Option<String>,
    #[arg(long)]
    run_id: Option<String>,
    /// Logical date (default now).
    #[arg(long)]
    logical_date: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Args)]
pub struct StateArgs {
    dag_id: String,
    run_id: String,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Args)]
pub struct BackfillArgs {
    dag_id: String,
    #[arg(long)]
    start: String,
    #[arg(long)]
    end: String,
    /// Wait until every backfill run has finished (a scheduler must be running).
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Args)]
pub struct ClearArgs {
    dag_id: String,
    run_id: String,
    task_id: String,
    /// Also clear every task upstream of TASK_ID.
    #[arg(long)]
    upstream: bool,
    /// Also clear every task downstream of TASK_ID.
    #[arg(long)]
    downstream: bool,
    #[command(flatten)]
    db: DbArgs,
}

pub async fn list(args: DbArgs) -> anyhow::Result<()> {
    let pool = args.pool().await?;
    println!(
        "{:<32} {:<8} {:<20} next run",
        "dag_id", "paused", "schedule"
    );
    for dag in dags::list(&pool).await? {
        let schedule = dag.schedule.unwrap_or_else(|| "None".into());
        let next = dag.next_dagrun.map(|n| n.to_rfc3339()).unwrap_or_default();
        let inactive = if dag.is_active { "" } else { " (file gone)" };
        let (dag_id, paused) = (dag.dag_id, dag.is_paused);
        println!("{dag_id:<32} {paused:<8} {schedule:<20} {next}{inactive}");
    }
    let errors = import_errors::all(&pool).await?;
    if !errors.is_empty() {
        // A secret an error quotes (a password pasted into a DAG file) is shown as ***.
        let masker = connections::known_secrets(&pool, &Cipher::from_env()?).await?;
        masker.add_environment();
        println!("\nimport errors:");
        for error in errors {
            println!(
                "{}:\n  {}",
                error.fileloc,
                masker.mask(&error.message).replace('\n', "\n  ")
            );
        }
    }
    Ok(())
}

pub async fn trigger(args: TriggerArgs) -> anyhow::Result<()> {
    let conf: Map<String, Value> = match &args.conf {
        Some(text) => serde_json::from_str(text).context("--conf must be a JSON object")?,
        None => Map::new(),
    };
    let logical_date = args
        .logical_date
        .as_deref()
        .map(parse_logical_date)
        .transpose()
        .map_err(|message| anyhow::anyhow!("--logical-date: {message}"))?;
    let pool = args.db.pool().await?;
    let request = TriggerRequest {
        run_id: args.run_id,
        logical_date,
        conf,
        note: None,
    };
    let run = trigger_run(&pool, &args.dag_id, request).await?;
    let target = Target {
        dag_id: Some(&args.dag_id),
        run_id: Some(&run.run_id),
        task_id: None,
    };
    audit::record(&pool, "trigger", target, None).await;
    println!("{}", run.run_id);
    Ok(())
}

pub async fn pause(args: DagIdArgs, paused: bool) -> anyhow::Result<()> {
    let pool = args.db.pool().await?;
    if !dags::set_paused(&pool, &args.dag_id, paused).await? {
        bail!("DAG `{}` not found", args.dag_id);
    }
    let event = if paused { "pause" } else { "unpause" };
    let target = Target {
        dag_id: Some(&args.dag_id),
        ..Target::default()
    };
    audit::record(&pool, event, target, None).await;
    println!(
        "{} {}",
        args.dag_id,
        if paused { "paused" } else { "unpaused" }
    );
    Ok(())
}

pub async fn state(args: StateArgs) -> anyhow::Result<()> {
    let pool = args.db.pool().await?;
    match runs::get(&pool, &args.dag_id, &args.run_id).await? {
        Some(run) => {
            println!("{}", run.state);
            Ok(())
        }
        None => bail!("run {}/{} not found", args.dag_id, args.run_id),
    }
}

pub async fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let start = parse_logical_date(&args.start).map_err(|m| anyhow::anyhow!("--start: {m}"))?;
    let end = parse_logical_date(&args.end).map_err(|m| anyhow::anyhow!("--end: {m}"))?;
    if end < start {
        bail!("--end is before --start");
    }
    let pool = args.db.pool().await?;
    let created = create_backfill(&pool, &args.dag_id, start, end).await?;
    let target = Target {
        dag_id: Some(&args.dag_id),
        ..Target::default()
    };
    let extra = json!({"start": start, "end": end, "runs": created.len()});
    audit::record(&pool, "backfill", target, Some(extra)).await;
    for run in &created {
        println!("{}", run.run_id);
    }
    println!("{} backfill run(s) created", created.len());
    if args.wait {
        let ids: Vec<i64> = created.iter().map(|run| run.id).collect();
        let states = loop {
            let states = runs::states(&pool, &ids).await?;
            if states.iter().all(|state| state.is_finished()) {
                break states;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        let failed = states.iter().filter(|s| **s == RunState::Failed).count();
        if failed > 0 {
            bail!("{failed} backfill run(s) failed");
        }
    }
    Ok(())
}

pub async fn clear(args: ClearArgs) -> anyhow::Result<()> {
    let pool = args.db.pool().await?;
    let request = ClearRequest {
        dag_id: &args.dag_id,
        run_id: Some(&args.run_id),
        task_ids: std::slice::from_ref(&args.task_id),
        include_upstream: args.upstream,
        include_downstream: args.downstream,
        only_failed: false,
        dry_run: false,
        reset_dag_runs: true,
    };
    let cleared = clear_task_instances(&pool, &request).await?;
    let target = Target {
        dag_id: Some(&args.dag_id),
        run_id: Some(&args.run_id),
        task_id: Some(&args.task_id),
    };
    let extra = json!({
        "include_upstream": args.upstream,
        "include_downstream": args.downstream,
        "cleared": cleared.len(),
    });
    audit::record(&pool, "clear", target, Some(extra)).await;
    for task in &cleared {
        println!("cleared {}/{}/{}", task.dag_id, task.run_id, task.task_id);
    }
    if cleared.is_empty() {
        bail!("nothing to clear (unknown task, or it has not run yet)");
    }
    Ok(())
}
