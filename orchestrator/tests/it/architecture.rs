//! The walls of `shared/ARCHITECTURE.md` and `docs/engine.md`, held against the source: the
//! store is the only place that speaks SQL (but for the stream worker's one read of a
//! connection), the DAG model touches no I/O, the engine's modules import each other without a
//! cycle, and each rule that once lived twice lives once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the orchestrator sits in the workspace")
        .to_path_buf()
}

/// Every file under `dir` ending in `extension`, skipping build output and dependencies.
fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules" | ".git" | ".stack") {
                    pending.push(path);
                }
            } else if name.ends_with(extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Code lines (not comments) of `file` that contain any of `needles`, as `path:line: text`.
fn offending(file: &Path, needles: &[&str]) -> Vec<String> {
    offending_where(file, |line| {
        needles.iter().any(|needle| line.contains(needle))
    })
}

fn offending_where(file: &Path, matches: impl Fn(&str) -> bool) -> Vec<String> {
    read(file)
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//") && matches(line))
        .map(|(number, line)| format!("{}:{}: {}", relative(file), number + 1, line.trim()))
        .collect()
}

#[test]
fn only_the_store_speaks_sql() {
    let store = workspace().join("orchestrator/src/store");
    // Creating and dropping test databases is server administration, not the run store.
    let administration = workspace().join("testkit/src/database.rs");
    // The stream worker reads one `connection` row, read-only, without depending on the
    // orchestrator crate (a wall of its own); e2e's stream connection test holds it to the schema.
    let stream_connections = workspace().join("stream-worker/src/connections.rs");
    // The `sql` operator runs a user's statements on the user's database, never on the run store.
    let sql_operator = workspace().join("operators/src/sql.rs");
    let needles = [
        "sqlx::query",
        "query!(",
        "query_as!(",
        "query_scalar!(",
        "query_file",
        "raw_sql",
        "AssertSqlSafe",
    ];
    let mut found = Vec::new();
    for file in files(&workspace(), ".rs") {
        if file.starts_with(&store)
            || [&administration, &stream_connections, &sql_operator].contains(&&file)
        {
            continue;
        }
        // This file names the needles it looks for.
        if file.ends_with("orchestrator/tests/it/architecture.rs") {
            continue;
        }
        found.extend(offending(&file, &needles));
    }
    assert!(
        found.is_empty(),
        "SQL outside orchestrator/src/store/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_dag_model_touches_no_database_network_or_engine() {
    let needles = [
        "crate::store",
        "crate::engine",
        "crate::processor",
        "sqlx",
        "reqwest",
        "rdkafka",
        "tokio::",
        "Operator::execute",
        ".execute(",
    ];
    let mut found = Vec::new();
    for file in files(&workspace().join("orchestrator/src/dag"), ".rs") {
        found.extend(offending(&file, &needles));
    }
    assert!(found.is_empty(), "dag/ reaches out:\n{}", found.join("\n"));
}

#[test]
fn the_store_never_imports_the_engine_and_operators_never_import_the_orchestrator() {
    let mut found = Vec::new();
    for file in files(&workspace().join("orchestrator/src/store"), ".rs") {
        found.extend(offending(&file, &["crate::engine", "crate::processor"]));
    }
    for file in files(&workspace().join("operators/src"), ".rs") {
        // The `sql` operator's sqlx reaches the user's database (see `only_the_store_speaks_sql`).
        let needles: &[&str] = if file.ends_with("operators/src/sql.rs") {
            &["updraft_orchestrator", "MIGRATOR", "task_instance"]
        } else {
            &["updraft_orchestrator", "sqlx"]
        };
        found.extend(offending(&file, needles));
    }
    for file in files(&workspace().join("web/src"), ".rs") {
        found.extend(offending(
            &file,
            &["engine::execute", "engine::executor", ".execute(config"],
        ));
    }
    assert!(found.is_empty(), "a wall is crossed:\n{}", found.join("\n"));
    for manifest in ["stream-worker/Cargo.toml", "operators/Cargo.toml"] {
        let text = read(&workspace().join(manifest));
        assert!(
            !text.contains("updraft-orchestrator"),
            "{manifest} depends on the orchestrator"
        );
    }
}

/// The engine's module of a file: `engine/advance.rs` → `advance`, `engine/executor/mod.rs`
/// and `engine/executor/logs.rs` → `executor`.
fn engine_module(engine: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(engine).unwrap_or(file);
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn the_engine_has_no_import_cycle() {
    let engine = workspace().join("orchestrator/src/engine");
    let modules: BTreeSet<String> = files(&engine, ".rs")
        .iter()
        .map(|file| engine_module(&engine, file))
        .filter(|module| module != "mod")
        .collect();
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files(&engine, ".rs") {
        let from = engine_module(&engine, &file);
        let text = read(&file);
        for to in &modules {
            let named = [
                format!("crate::engine::{to}"),
                format!("super::{to}"),
                format!("super::super::{to}"),
            ];
            // `super::x` means an engine module in files of engine/ and in a folder's mod.rs;
            // in the folder's other files it means a sibling in that folder.
            let direct = file.parent() == Some(engine.as_path()) || file.ends_with("mod.rs");
            let imported = named.iter().enumerate().any(|(kind, name)| {
                (kind == 0 || (kind == 1 && direct) || (kind == 2 && !direct))
                    && text.contains(name.as_str())
            });
            if imported && *to != from {
                imports.entry(from.clone()).or_default().insert(to.clone());
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit(
        module: &str,
        imports: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in imports.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, imports, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in &modules {
        if let Some(cycle) = visit(module, &imports, &mut Vec::new(), &mut done) {
            panic!("engine import cycle: {}", cycle.join(" -> "));
        }
    }
    // The scheduler starts the executor; the executor never calls the scheduler back.
    assert!(
        !imports
            .get("executor")
            .is_some_and(|to| to.contains("scheduler")),
        "the executor imports the scheduler"
    );
}

/// Statements of the migrations, in order, as (file, text).
fn migrations() -> Vec<(String, String)> {
    files(&workspace().join("migrations"), ".sql")
        .iter()
        .map(|file| (relative(file), read(file)))
        .collect()
}

#[test]
fn no_rule_lives_in_a_sql_function() {
    let mut alive: BTreeMap<String, String> = BTreeMap::new();
    for (file, text) in migrations() {
        for line in text.lines() {
            let line = line.trim().to_lowercase();
            let name = |rest: &str| {
                rest.split(['(', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            };
            if let Some(rest) = line.strip_prefix("create function ") {
                alive.insert(name(rest), file.clone());
            } else if let Some(rest) = line.strip_prefix("create or replace function ") {
                alive.insert(name(rest), file.clone());
            } else if let Some(rest) = line.strip_prefix("drop function ") {
                alive.remove(&name(rest.trim_start_matches("if exists ")));
            }
        }
    }
    assert!(
        alive.is_empty(),
        "SQL functions still defined (a rule must live in Rust, applied by store statements): {alive:?}"
    );
}

#[test]
fn channel_names_are_spelled_once() {
    let names = updraft_orchestrator::store::channels::ALL;
    let home = workspace().join("orchestrator/src/store/mod.rs");
    let mut found = Vec::new();
    for file in files(&workspace().join("orchestrator/src"), ".rs") {
        if file != home {
            let quoted: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
            let quoted: Vec<&str> = quoted.iter().map(String::as_str).collect();
            found.extend(offending(&file, &quoted));
        }
    }
    assert!(
        found.is_empty(),
        "a channel spelled again:\n{}",
        found.join("\n")
    );
}

#[test]
fn dag_defaults_live_in_the_model_only() {
    // The last word of the migrations on these columns' defaults is DROP DEFAULT.
    for column in ["max_active_runs", "max_active_tasks"] {
        let mut last = None;
        for (file, text) in migrations() {
            for line in text.lines() {
                if line.contains(column) && line.to_uppercase().contains("DEFAULT") {
                    last = Some((file.clone(), line.trim().to_string()));
                }
            }
        }
        let (file, line) = last.expect("the column is defined in a migration");
        assert!(
            line.to_uppercase().contains("DROP DEFAULT"),
            "{file}: {line}: the schema gives {column} a default; Dag::default is its home"
        );
    }
    let model = updraft_orchestrator::dag::Dag::default();
    assert_eq!((model.max_active_runs, model.max_active_tasks), (16, 16));
    let mut found = Vec::new();
    for file in files(&workspace().join("orchestrator/src"), ".rs") {
        found.extend(offending_where(&file, |line| {
            line.to_lowercase().contains("coalesce(") && line.contains("16")
        }));
    }
    assert!(
        found.is_empty(),
        "a default repeated:\n{}",
        found.join("\n")
    );
}
