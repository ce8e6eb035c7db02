//! The `updraft` command as a library: build your own `updraft` binary with your operators
//! registered beside the built-in ones, keeping every command.
//!
//! ```no_run
//! # use updraft::operators::{Operator, OperatorError, TaskContext};
//! # #[derive(Default)] struct Checksum;
//! # #[derive(serde::Deserialize, schemars::JsonSchema)] struct ChecksumConfig {}
//! # #[async_trait::async_trait]
//! # impl Operator for Checksum {
//! #     const NAME: &'static str = "checksum";
//! #     type Config = ChecksumConfig;
//! #     async fn execute(&self, _: ChecksumConfig, _: &TaskContext)
//! #         -> Result<serde_json::Value, OperatorError> { Ok(serde_json::Value::Null) }
//! # }
//! fn main() -> std::process::ExitCode {
//!     updraft::App::default().operator::<Checksum>().run()
//! }
//! ```
//!
//! `examples/custom-operator/` is a whole crate doing this; `docs/plugins.md` explains it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
pub use updraft_operators as operators;
use updraft_operators::{Operator, OperatorKind, Registry, builtin_registry};

mod audit;
mod dag_runs;
mod dags;
mod plugins;
mod secrets;
mod serve;

/// Updraft: declarative YAML DAGs, scheduled on PostgreSQL.
#[derive(Parser)]
#[command(name = "updraft", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: migrations, DAG processor, scheduler, executor, web server.
    Standalone(serve::StandaloneArgs),
    /// DAG processor, scheduler and executor (add as many as you like on one database).
    Scheduler(serve::SchedulerArgs),
    /// Web UI and REST API only (add as many as you like on one database).
    Webserver(serve::WebserverArgs),
    /// DAGs: files (validate, show, test) and the database (list, trigger, pause, ...).
    Dags {
        #[command(subcommand)]
        command: dags::DagsCommand,
    },
    /// Task instances.
    Tasks {
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// Web users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Connections: credentials and endpoints tasks name by id (`conn_id`).
    Connections {
        #[command(subcommand)]
        command: secrets::ConnectionsCommand,
    },
    /// Variables: values templates read with `var('key')`.
    Variables {
        #[command(subcommand)]
        command: secrets::VariablesCommand,
    },
    /// The key that encrypts stored secrets (UPDRAFT_SECRET_KEY).
    Secrets {
        #[command(subcommand)]
        command: secrets::SecretsCommand,
    },
    /// Operator plugins: programs in any language found in the plugins folder.
    Plugins {
        #[command(subcommand)]
        command: plugins::PluginsCommand,
    },
    /// Database maintenance.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Subcommand)]
enum TasksCommand {
    /// Run a finished task again (Airflow's Clear), optionally with its upstream and downstream tasks.
    Clear(dag_runs::ClearArgs),
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a web user.
    Create {
        #[arg(long)]
        username: String,
        /// admin, op or viewer.
        #[arg(long)]
        role: String,
        /// Read the password from stdin (otherwise it is asked for... on stdin as well).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: dag_runs::DbArgs,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply the schema migrations.
    Migrate {
        #[command(flatten)]
        db: dag_runs::DbArgs,
    },
}

/// The `updraft` command with the operators it knows: the built-in ones, those added here,
/// and (at run time) the plugins in the plugins folder.
pub struct App {
    operators: Registry,
}

impl Default for App {
    /// The built-in operators.
    fn default() -> Self {
        App {
            operators: builtin_registry(),
        }
    }
}

impl App {
    /// Adds an operator type (one with the name of a built-in replaces it).
    pub fn operator<O: Operator + Default>(self) -> Self {
        self.with_operator(O::default())
    }

    /// Adds an operator value, for one that needs set-up (a client, a pool).
    pub fn with_operator(mut self, operator: impl OperatorKind + 'static) -> Self {
        self.operators.register(operator);
        self
    }

    /// Parses the command line and runs the command, as the `updraft` binary does.
    pub fn run(self) -> ExitCode {
        map_large_blocks_apart();
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("Error: cannot start the async runtime: {error}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(run(Cli::parse().command, &self.operators)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("Error: {error:?}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Argon2 allocates 19 MiB for each password it hashes or checks. Once such a block is freed,
/// glibc raises its mmap threshold and keeps later ones in the heap, where their pages stay
/// resident after they are freed (idle RSS 53 MB instead of 34 with 1,000 DAGs). A fixed
/// threshold maps every block of 1 MiB or more on its own and unmaps it when freed.
fn map_large_blocks_apart() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called before any other thread exists; it changes an allocator setting only.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

async fn run(command: Command, operators: &Registry) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match command {
        Command::Standalone(args) => serve::standalone(args, operators).await?,
        Command::Scheduler(args) => serve::scheduler(args, operators).await?,
        Command::Webserver(args) => serve::webserver(args).await?,
        Command::Dags { command } => dags::run(command, operators).await?,
        Command::Connections { command } => secrets::connections(command).await?,
        Command::Variables { command } => secrets::variables(command).await?,
        Command::Secrets { command } => secrets::secrets(command).await?,
        Command::Plugins { command } => plugins::run(command, operators).await?,
        Command::Tasks {
            command: TasksCommand::Clear(args),
        } => dag_runs::clear(args).await?,
        Command::Users {
            command:
                UsersCommand::Create {
                    username,
                    role,
                    password_stdin,
                    db,
                },
        } => {
            let role: updraft_web::users::Role = role.parse()?;
            if !password_stdin {
                eprintln!("reading the password from stdin");
            }
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            let pool = db.pool().await?;
            updraft_web::users::create_user(&pool, &username, role, password).await?;
            println!("user `{username}` created");
        }
        Command::Db {
            command: DbCommand::Migrate { db },
        } => {
            let pool = db.pool().await?;
            updraft_orchestrator::store::MIGRATOR.run(&pool).await?;
            println!("migrations applied");
        }
    }
    Ok(())
}
