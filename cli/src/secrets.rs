//! `updraft connections|variables|secrets`: Airflow's verbs and JSON file formats.
//! Connection passwords and extras are encrypted with `UPDRAFT_SECRET_KEY` by the store; these
//! commands never print a password except into an export file the user asked for.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use updraft_orchestrator::store::connections;
use updraft_orchestrator::store::variables::{self, Variable};
use updraft_secrets::{Cipher, Connection};

use crate::audit::{self, Target};
use crate::dag_runs::DbArgs;

#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// Store a connection: from a URI (`--conn-uri`), Airflow's JSON (`--conn-json`) or fields.
    Add(Box<AddConnection>),
    /// One connection as JSON (the password shown as ***).
    Get {
        conn_id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Every stored connection: id, type, host, port, login, schema.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    Delete {
        conn_id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Store the connections of a JSON file (`{"conn_id": {"conn_type": ..., ...}}`, or a list
    /// of objects with `conn_id`), as `export` writes it. Existing ids are skipped unless
    /// `--overwrite`.
    Import {
        file: PathBuf,
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write every connection, passwords included, to a JSON file (`-`: stdout).
    Export {
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Args)]
pub struct AddConnection {
    conn_id: String,
    /// `conn-type://login:password@host:port/schema?param=value`
    #[arg(long, conflicts_with_all = ["conn_json", "conn_type"])]
    conn_uri: Option<String>,
    /// Airflow's JSON form: `{"conn_type": "http", "host": ..., "extra": {...}}`
    #[arg(long, conflicts_with = "conn_type")]
    conn_json: Option<String>,
    #[arg(long)]
    conn_type: Option<String>,
    #[arg(long)]
    conn_host: Option<String>,
    #[arg(long)]
    conn_port: Option<u16>,
    #[arg(long)]
    conn_login: Option<String>,
    /// Prefer `--conn-password-stdin`: a command line is visible to other users.
    #[arg(long)]
    conn_password: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    conn_password_stdin: bool,
    #[arg(long)]
    conn_schema: Option<String>,
    /// A JSON object.
    #[arg(long)]
    conn_extra: Option<String>,
    #[arg(long)]
    conn_description: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Subcommand)]
pub enum VariablesCommand {
    /// Create or replace a variable (encrypted when UPDRAFT_SECRET_KEY is set).
    Set {
        key: String,
        value: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A variable's value; `--default` when it is not set (else an error).
    Get {
        key: String,
        #[arg(long)]
        default: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Every variable's key.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    Delete {
        key: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set the variables of a JSON object file (`{"key": value}`; values that are not strings
    /// are stored as their JSON text), as `export` writes it.
    Import {
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write every variable to a JSON object file (`-`: stdout); values that are JSON text are
    /// written as JSON.
    Export {
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Print a new key for UPDRAFT_SECRET_KEY.
    GenerateKey,
    /// Re-encrypt every stored secret with the first key of UPDRAFT_SECRET_KEY (put the new
    /// key first and the old one after it, comma-separated; then drop the old one).
    Rotate {
        #[command(flatten)]
        db: DbArgs,
    },
}

fn cipher() -> anyhow::Result<Cipher> {
    Ok(Cipher::from_env()?)
}

fn read_file(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        return std::io::read_to_string(std::io::stdin()).context("cannot read stdin");
    }
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn write_file(file: &PathBuf, text: &str) -> anyhow::Result<()> {
    if file.as_os_str() == "-" {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(file, format!("{text}\n"))
        .with_context(|| format!("cannot write {}", file.display()))
}

/// A connection as `get` shows it: every field, the password as `***`.
fn shown(connection: &Connection) -> Value {
    let mut value = serde_json::to_value(connection).unwrap_or(Value::Null);
    if let Some(fields) = value.as_object_mut()
        && connection.password.is_some()
    {
        fields.insert("password".into(), Value::from("***"));
    }
    value
}

fn checked(connection: Connection) -> anyhow::Result<Connection> {
    Connection::validate_conn_id(&connection.conn_id)?;
    connection.check_conn_type()?;
    connection.extra_dejson()?;
    Ok(connection)
}

fn from_fields(args: AddConnection) -> anyhow::Result<Connection> {
    let AddConnection {
        conn_id,
        conn_uri,
        conn_json,
        conn_type,
        conn_host,
        conn_port,
        conn_login,
        conn_password,
        conn_password_stdin,
        conn_schema,
        conn_extra,
        conn_description,
        ..
    } = args;
    let password = if conn_password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        conn_password
    };
    let mut connection = match (conn_uri, conn_json, conn_type) {
        (Some(uri), _, _) => Connection::from_uri(&conn_id, &uri)?,
        (None, Some(json), _) => Connection::from_json(&conn_id, &json)?,
        (None, None, Some(conn_type)) => Connection {
            conn_id,
            conn_type,
            ..Connection::default()
        },
        (None, None, None) => bail!("give --conn-uri, --conn-json or --conn-type"),
    };
    let set = |field: &mut Option<String>, value: Option<String>| {
        if value.is_some() {
            *field = value;
        }
    };
    set(&mut connection.host, conn_host);
    set(&mut connection.login, conn_login);
    set(&mut connection.password, password);
    set(&mut connection.schema, conn_schema);
    set(&mut connection.extra, conn_extra);
    set(&mut connection.description, conn_description);
    if conn_port.is_some() {
        connection.port = conn_port;
    }
    checked(connection)
}

pub async fn connections(command: ConnectionsCommand) -> anyhow::Result<()> {
    match command {
        ConnectionsCommand::Add(args) => {
            let pool = args.db.pool().await?;
            let connection = from_fields(*args)?;
            connections::insert(&pool, &cipher()?, &connection).await?;
            let extra = json!({"conn_id": connection.conn_id});
            audit::record(&pool, "connection_create", Target::default(), Some(extra)).await;
            println!("connection `{}` added", connection.conn_id);
        }
        ConnectionsCommand::Get { conn_id, db } => {
            let pool = db.pool().await?;
            let Some(connection) = connections::get(&pool, &cipher()?, &conn_id).await? else {
                bail!("connection `{conn_id}` not found");
            };
            println!("{}", serde_json::to_string_pretty(&shown(&connection))?);
        }
        ConnectionsCommand::List { db } => {
            let pool = db.pool().await?;
            println!("conn_id\tconn_type\thost\tport\tlogin\tschema");
            for connection in connections::all(&pool, &cipher()?).await? {
                let text = |field: &Option<String>| field.clone().unwrap_or_default();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    connection.conn_id,
                    connection.conn_type,
                    text(&connection.host),
                    connection.port.map(|p| p.to_string()).unwrap_or_default(),
                    text(&connection.login),
                    text(&connection.schema),
                );
            }
        }
        ConnectionsCommand::Delete { conn_id, db } => {
            let pool = db.pool().await?;
            if !connections::delete(&pool, &conn_id).await? {
                bail!("connection `{conn_id}` not found");
            }
            let extra = json!({"conn_id": conn_id});
            audit::record(&pool, "connection_delete", Target::default(), Some(extra)).await;
            println!("connection `{conn_id}` deleted");
        }
        ConnectionsCommand::Import {
            file,
            overwrite,
            db,
        } => {
            let pool = db.pool().await?;
            let cipher = cipher()?;
            let extra = json!({"file": file.display().to_string(), "overwrite": overwrite});
            audit::record(&pool, "connections_import", Target::default(), Some(extra)).await;
            for connection in parse_connections_file(&read_file(&file)?)? {
                let id = connection.conn_id.clone();
                match connections::insert(&pool, &cipher, &connection).await {
                    Ok(()) => println!("connection `{id}` added"),
                    Err(connections::SecretStoreError::DuplicateConnection(_)) if overwrite => {
                        connections::update(&pool, &cipher, &connection).await?;
                        println!("connection `{id}` overwritten");
                    }
                    Err(connections::SecretStoreError::DuplicateConnection(_)) => {
                        println!("connection `{id}` exists: skipped (--overwrite replaces it)")
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        }
        ConnectionsCommand::Export { file, db } => {
            let pool = db.pool().await?;
            let mut out = Map::new();
            for connection in connections::all(&pool, &cipher()?).await? {
                let mut fields = serde_json::to_value(&connection)?;
                if let Some(fields) = fields.as_object_mut() {
                    fields.remove("conn_id");
                }
                out.insert(connection.conn_id, fields);
            }
            write_file(&file, &serde_json::to_string_pretty(&out)?)?;
        }
    }
    Ok(())
}

/// Airflow's connections file: an object keyed by conn_id (each value a JSON connection, or a
/// URI string), or a list of objects with a `conn_id`.
fn parse_connections_file(text: &str) -> anyhow::Result<Vec<Connection>> {
    let value: Value = serde_json::from_str(text).context("the file is not JSON")?;
    let entries: Vec<(String, Value)> = match value {
        Value::Object(entries) => entries.into_iter().collect(),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, mut item)| {
                let id = item
                    .as_object_mut()
                    .and_then(|fields| fields.remove("conn_id"))
                    .and_then(|id| id.as_str().map(str::to_string))
                    .with_context(|| format!("item {index}: no `conn_id`"))?;
                Ok((id, item))
            })
            .collect::<anyhow::Result<_>>()?,
        _ => bail!("expected an object keyed by conn_id, or a list of connections"),
    };
    entries
        .into_iter()
        .map(|(id, fields)| {
            let connection = match &fields {
                Value::String(uri) => Connection::from_uri(&id, uri),
                other => Connection::from_json(&id, &other.to_string()),
            }
            .with_context(|| format!("connection `{id}`"))?;
            checked(connection).with_context(|| format!("connection `{id}`"))
        })
        .collect()
}

pub async fn variables(command: VariablesCommand) -> anyhow::Result<()> {
    match command {
        VariablesCommand::Set {
            key,
            value,
            description,
            db,
        } => {
            let pool = db.pool().await?;
            let variable = Variable {
                key,
                value,
                description,
            };
            variables::set(&pool, &cipher()?, &variable).await?;
            let extra = json!({"key": variable.key});
            audit::record(&pool, "variable_set", Target::default(), Some(extra)).await;
            println!("variable `{}` set", variable.key);
        }
        VariablesCommand::Get { key, default, db } => {
            let pool = db.pool().await?;
            match (variables::get(&pool, &cipher()?, &key).await?, default) {
                (Some(variable), _) => println!("{}", variable.value),
                (None, Some(default)) => println!("{default}"),
                (None, None) => bail!("variable `{key}` is not set"),
            }
        }
        VariablesCommand::List { db } => {
            let pool = db.pool().await?;
            for key in variables::all(&pool, &cipher()?).await?.keys() {
                println!("{key}");
            }
        }
        VariablesCommand::Delete { key, db } => {
            let pool = db.pool().await?;
            if !variables::delete(&pool, &key).await? {
                bail!("variable `{key}` is not set");
            }
            let extra = json!({"key": key});
            audit::record(&pool, "variable_delete", Target::default(), Some(extra)).await;
            println!("variable `{key}` deleted");
        }
        VariablesCommand::Import { file, db } => {
            let pool = db.pool().await?;
            let cipher = cipher()?;
            let text = read_file(&file)?;
            let Value::Object(entries) =
                serde_json::from_str(&text).context("the file is not JSON")?
            else {
                bail!("expected a JSON object of variables");
            };
            for (key, value) in entries {
                let value = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                let variable = Variable {
                    key,
                    value,
                    description: None,
                };
                variables::set(&pool, &cipher, &variable).await?;
            }
            let extra = json!({"file": file.display().to_string()});
            audit::record(&pool, "variables_import", Target::default(), Some(extra)).await;
            println!("variables imported");
        }
        VariablesCommand::Export { file, db } => {
            let pool = db.pool().await?;
            let all: BTreeMap<String, String> = variables::all(&pool, &cipher()?).await?;
            let out: Map<String, Value> = all
                .into_iter()
                .map(|(key, value)| {
                    let json = serde_json::from_str::<Value>(&value)
                        .ok()
                        .filter(|parsed| !parsed.is_string());
                    (key, json.unwrap_or(Value::String(value)))
                })
                .collect();
            write_file(&file, &serde_json::to_string_pretty(&out)?)?;
        }
    }
    Ok(())
}

pub async fn secrets(command: SecretsCommand) -> anyhow::Result<()> {
    match command {
        SecretsCommand::GenerateKey => println!("{}", Cipher::generate_key()),
        SecretsCommand::Rotate { db } => {
            let pool = db.pool().await?;
            let rotated = connections::rotate(&pool, &cipher()?).await?;
            audit::record(&pool, "secrets_rotate", Target::default(), None).await;
            println!(
                "re-encrypted {} connections and {} variables",
                rotated.connections, rotated.variables
            );
        }
    }
    Ok(())
}
