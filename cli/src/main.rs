use clap::{Parser, Subcommand};

mod dags;

/// Updraft: declarative YAML DAGs, scheduled on PostgreSQL.
#[derive(Parser)]
#[command(name = "updraft", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// DAG files: validate, show, test.
    Dags {
        #[command(subcommand)]
        command: dags::DagsCommand,
    },
    /// Database maintenance.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply the schema migrations.
    Migrate {
        #[arg(long, env = "DATABASE_URL", default_value = "postgres://updraft:updraft@127.0.0.1:5432/updraft")]
        database_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    match Cli::parse().command {
        Command::Dags { command } => dags::run(command).await?,
        Command::Db { command: DbCommand::Migrate { database_url } } => {
            let pool = sqlx::PgPool::connect(&database_url).await?;
            updraft_orchestrator::store::MIGRATOR.run(&pool).await?;
            println!("migrations applied");
        }
    }
    Ok(())
}
