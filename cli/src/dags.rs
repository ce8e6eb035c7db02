//! `updraft dags ...`: commands on DAG files. `validate`, `show` and `test` need no database;
//! other subcommands (list, trigger, pause, ...) join this enum.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use updraft_operators::Registry;
use updraft_orchestrator::dag::folder::{load_paths, resolve_dag};
use updraft_orchestrator::dag::schema::dag_schema_text;
use updraft_orchestrator::dag::tasks::TRIGGER_RULES;
use updraft_orchestrator::dag::{Dag, Schedule, TaskState, parse_logical_date};
use updraft_orchestrator::engine::local::{LocalRunOptions, LocalTaskResult, run_locally};

#[derive(Subcommand)]
pub enum DagsCommand {
    /// Check DAG files (or folders of them) and print every error as `file:line:col: error: ...`.
    Validate(ValidateArgs),
    /// Print a DAG's tasks and edges, or its graph in Graphviz dot.
    Show(ShowArgs),
    /// Run a DAG once in-process, in dependency order, without scheduler or database.
    Test(TestArgs),
    /// Print the JSON Schema of DAG files (built-in and plugin operators) for editors:
    /// `updraft dags schema > dags/schema.json`.
    Schema(DagsFolder),
    /// DAGs in the database, with paused state and import errors.
    List(crate::dag_runs::DbArgs),
    /// Create a manual run.
    Trigger(crate::dag_runs::TriggerArgs),
    /// Stop creating scheduled runs (running ones finish).
    Pause(crate::dag_runs::DagIdArgs),
    Unpause(crate::dag_runs::DagIdArgs),
    /// Print a run's state: queued, running, success or failed.
    State(crate::dag_runs::StateArgs),
    /// Create backfill runs for every interval between two dates.
    Backfill(crate::dag_runs::BackfillArgs),
}

#[derive(Args)]
pub struct DagsFolder {
    /// Where DAG files live.
    #[arg(
        long = "dags-folder",
        env = "UPDRAFT_DAGS_FOLDER",
        default_value = "dags"
    )]
    pub path: PathBuf,
    /// The operators DAG files may name: the built-in ones and these plugins'.
    #[command(flatten)]
    pub plugins: crate::plugins::PluginsFolder,
}

impl DagsFolder {
    async fn registry(&self, operators: &Registry) -> Registry {
        crate::plugins::registry_for_cli(&self.plugins.plugins_folder, operators).await
    }
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Files or folders; default the DAGs folder.
    paths: Vec<PathBuf>,
    #[command(flatten)]
    folder: DagsFolder,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Args)]
pub struct ShowArgs {
    /// A DAG file, or a dag_id in the DAGs folder.
    dag: String,
    /// Print Graphviz dot (`updraft dags show FILE --dot | dot -Tsvg > dag.svg`).
    #[arg(long)]
    dot: bool,
    #[command(flatten)]
    folder: DagsFolder,
}

#[derive(Args)]
pub struct TestArgs {
    /// A dag_id in the DAGs folder, or a DAG file.
    dag: String,
    /// The run's conf, a JSON object (overrides params of the same name).
    #[arg(long)]
    conf: Option<String>,
    /// The run's logical date (`2023-09-03`, `2023-09-03 10:00`, RFC 3339); default now.
    #[arg(long = "logical-date")]
    logical_date: Option<String>,
    #[command(flatten)]
    folder: DagsFolder,
}

/// Runs a `dags` subcommand; DAG files may name `operators` and the plugins' operators.
pub async fn run(command: DagsCommand, operators: &Registry) -> anyhow::Result<()> {
    match command {
        DagsCommand::Validate(args) => validate(args, operators).await,
        DagsCommand::Show(args) => show(args, operators).await,
        DagsCommand::Test(args) => test(args, operators).await,
        DagsCommand::Schema(folder) => {
            print!("{}", dag_schema_text(&folder.registry(operators).await));
            Ok(())
        }
        DagsCommand::List(args) => crate::dag_runs::list(args).await,
        DagsCommand::Trigger(args) => crate::dag_runs::trigger(args).await,
        DagsCommand::Pause(args) => crate::dag_runs::pause(args, true).await,
        DagsCommand::Unpause(args) => crate::dag_runs::pause(args, false).await,
        DagsCommand::State(args) => crate::dag_runs::state(args).await,
        DagsCommand::Backfill(args) => crate::dag_runs::backfill(args).await,
    }
}

/// Ends the process with status 1 after the output is flushed.
fn fail() -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(1)
}

async fn validate(args: ValidateArgs, operators: &Registry) -> anyhow::Result<()> {
    let registry = args.folder.registry(operators).await;
    let paths = if args.paths.is_empty() {
        vec![args.folder.path]
    } else {
        args.paths
    };
    let load = load_paths(&paths, &registry);
    let diagnostics: Vec<_> = load
        .errors
        .iter()
        .flat_map(|error| error.diagnostics.iter())
        .collect();
    match args.format {
        Format::Json => {
            let valid: Vec<Value> = load
                .dags
                .iter()
                .map(|loaded| json!({"dag_id": loaded.dag.dag_id, "path": loaded.path, "tasks": loaded.dag.tasks.len()}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"valid": valid, "errors": diagnostics}))?
            );
        }
        Format::Text => {
            for diagnostic in &diagnostics {
                println!("{diagnostic}");
            }
            println!(
                "{} DAG(s) valid, {} file(s) with {} error(s)",
                load.dags.len(),
                load.errors.len(),
                diagnostics.len()
            );
        }
    }
    if !load.errors.is_empty() {
        fail();
    }
    Ok(())
}

fn load(dag: &str, folder: &DagsFolder, registry: &Registry) -> Dag {
    match resolve_dag(dag, &folder.path, registry) {
        Ok(loaded) => loaded.dag,
        Err(messages) => {
            for message in messages {
                println!("{message}");
            }
            fail()
        }
    }
}

async fn show(args: ShowArgs, operators: &Registry) -> anyhow::Result<()> {
    let dag = load(
        &args.dag,
        &args.folder,
        &args.folder.registry(operators).await,
    );
    if args.dot {
        print!("{}", dot(&dag));
        return Ok(());
    }
    println!("dag_id:    {}", dag.dag_id);
    if let Some(description) = &dag.description {
        println!("about:     {description}");
    }
    let schedule = match &dag.schedule {
        Schedule::Cron {
            expression,
            seconds_form,
        } => format!("{expression} (cron: {seconds_form})"),
        other => other.as_written().unwrap_or("manual only").to_string(),
    };
    println!("schedule:  {schedule}, timezone {}", dag.timezone);
    if let Some(start) = dag.start_date {
        println!("start:     {}", start.to_rfc3339());
    }
    if let Some(end) = dag.end_date {
        println!("end:       {}", end.to_rfc3339());
    }
    println!(
        "catchup:   {}   max_active_runs: {}   owner: {}",
        dag.catchup, dag.max_active_runs, dag.owner
    );
    println!("tasks ({}), in dependency order:", dag.tasks.len());
    for task_id in dag.topological_order() {
        let Some(task) = dag.task(task_id) else {
            continue;
        };
        let upstream = if task.upstream.is_empty() {
            String::new()
        } else {
            format!(" <- {}", task.upstream.join(", "))
        };
        let rule = TRIGGER_RULES
            .iter()
            .find(|(_, rule)| *rule == task.trigger_rule)
            .map_or("?", |(name, _)| *name);
        println!("  {task_id} [{}] {rule}{upstream}", task.operator);
    }
    println!("edges:");
    for task in &dag.tasks {
        for upstream in &task.upstream {
            println!("  {upstream} -> {}", task.task_id);
        }
    }
    Ok(())
}

fn dot(dag: &Dag) -> String {
    let escape = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let quote = |text: &str| format!("\"{}\"", escape(text));
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
        quote(&dag.dag_id)
    );
    for task in &dag.tasks {
        let (id, operator) = (escape(&task.task_id), escape(&task.operator));
        out.push_str(&format!("  \"{id}\" [label=\"{id}\\n{operator}\"];\n"));
    }
    for task in &dag.tasks {
        for upstream in &task.upstream {
            out.push_str(&format!(
                "  {} -> {};\n",
                quote(upstream),
                quote(&task.task_id)
            ));
        }
    }
    out.push_str("}\n");
    out
}

async fn test(args: TestArgs, operators: &Registry) -> anyhow::Result<()> {
    let registry = args.folder.registry(operators).await;
    let dag = load(&args.dag, &args.folder, &registry);
    let conf: Map<String, Value> = match &args.conf {
        Some(text) => serde_json::from_str(text).context("--conf must be a JSON object")?,
        None => Map::new(),
    };
    let mut options = LocalRunOptions::new(conf);
    if let Some(text) = &args.logical_date {
        options.logical_date = parse_logical_date(text)
            .map_err(|message| anyhow::anyhow!("--logical-date: {message}"))?;
    }
    options.on_task_done = Box::new(print_result);
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });
    println!("testing DAG `{}` ({} tasks)", dag.dag_id, dag.tasks.len());
    let run = run_locally(&dag, &registry, options, cancel).await?;
    let failed = run
        .tasks
        .iter()
        .filter(|task| matches!(task.state, TaskState::Failed | TaskState::UpstreamFailed))
        .count();
    println!(
        "run {}: {} task(s), {failed} failed or upstream_failed",
        run.run_id,
        run.tasks.len()
    );
    if !run.succeeded() {
        fail();
    }
    Ok(())
}

fn print_result(result: &LocalTaskResult) {
    let detail = match (&result.output, &result.error) {
        (_, Some(error)) => format!("error: {error}"),
        (Some(output), None) => format!("output: {}", excerpt(&output.to_string(), 2000)),
        (None, None) => String::new(),
    };
    println!(
        "== {} {} in {:.2}s {detail}",
        result.task_id,
        result.state,
        result.duration.as_secs_f64()
    );
    let _ = std::io::stdout().flush();
}

fn excerpt(text: &str, max_chars: usize) -> String {
    updraft_operators::fields::excerpt(text, max_chars)
}
