//! The DAG processor against a real PostgreSQL: versions, import errors, deactivation, watching.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use testkit::TestDatabase;
use tokio_util::sync::CancellationToken;
use updraft_orchestrator::processor::DagProcessor;
use updraft_orchestrator::store::{dags, import_errors, versions};

const CHAIN: &str = "\
dag_id: chain
schedule: null
tasks:
  - id: one
    operator: empty
  - id: two
    operator: empty
    upstream: [one]
";

const LATE_START: &str = "\
dag_id: eager
schedule: '@daily'
start_date: 2024-01-01
is_paused_upon_creation: false
tasks:
  - id: only
    operator: empty
";

/// A migrated database of the test's own (dropped with the guard) and a pool on it.
async fn database() -> Option<(PgPool, TestDatabase)> {
    if !testkit::require_postgres() {
        return None;
    }
    let database = TestDatabase::create("processor").await;
    let pool = PgPool::connect(database.url()).await.expect("connect");
    updraft_orchestrator::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate");
    Some((pool, database))
}

fn processor(pool: &PgPool, folder: &Path) -> DagProcessor {
    DagProcessor::new(
        pool.clone(),
        folder.to_path_buf(),
        Arc::new(updraft_operators::builtin_registry()),
    )
}

/// Whether the DAG is paused and active, and its latest version's number.
async fn dag_row(pool: &PgPool, dag_id: &str) -> Option<(bool, bool, i32)> {
    let dag = dags::get_view(pool, dag_id).await.expect("read the DAG")?;
    let latest = versions::latest_with_source(pool, dag_id)
        .await
        .expect("read its latest version")?;
    Some((dag.is_paused, dag.is_active, latest.version_number))
}

/// Every import error as (file, message), by file.
async fn import_errors(pool: &PgPool) -> Vec<(String, String)> {
    let rows = import_errors::all(pool).await.expect("read import errors");
    rows.into_iter()
        .map(|row| (row.fileloc, row.message))
        .collect()
}

#[tokio::test]
async fn new_dags_start_paused_unless_asked_and_unchanged_files_are_skipped() {
    let Some((pool, _database)) = database().await else {
        return;
    };
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(folder.path().join("chain.yaml"), CHAIN).expect("write");
    std::fs::write(folder.path().join("eager.yaml"), LATE_START).expect("write");
    let processor = processor(&pool, folder.path());

    let first = processor.sync_once().await.expect("sync");
    assert_eq!(first.dags, 2);
    assert_eq!(first.changed.len(), 2);
    assert_eq!(dag_row(&pool, "chain").await, Some((true, true, 1)));
    assert_eq!(dag_row(&pool, "eager").await, Some((false, true, 1)));

    let second = processor.sync_once().await.expect("sync");
    assert!(
        second.changed.is_empty(),
        "unchanged files were rewritten: {second:?}"
    );
}

#[tokio::test]
async fn an_edit_makes_a_new_version_and_reverting_reuses_the_old_one() {
    let Some((pool, _database)) = database().await else {
        return;
    };
    let folder = tempfile::tempdir().expect("tempdir");
    let file = folder.path().join("chain.yaml");
    std::fs::write(&file, CHAIN).expect("write");
    let processor = processor(&pool, folder.path());
    processor.sync_once().await.expect("sync");
    assert!(
        dags::set_paused(&pool, "chain", false)
            .await
            .expect("unpause")
    );

    std::fs::write(
        &file,
        format!("{CHAIN}  - id: three\n    operator: empty\n"),
    )
    .expect("edit");
    let report = processor.sync_once().await.expect("sync");
    assert_eq!(report.changed, vec!["chain".to_string()]);
    // An edit keeps the pause state the user chose.
    assert_eq!(dag_row(&pool, "chain").await, Some((false, true, 2)));

    std::fs::write(&file, CHAIN).expect("revert");
    processor.sync_once().await.expect("sync");
    assert_eq!(dag_row(&pool, "chain").await, Some((false, true, 1)));
    let numbers = versions::numbers(&pool, "chain").await.expect("versions");
    assert_eq!(numbers, vec![1, 2]);
}

#[tokio::test]
async fn a_bad_file_is_an_import_error_that_hides_nothing_and_clears_when_fixed() {
    let Some((pool, _database)) = database().await else {
        return;
    };
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(folder.path().join("chain.yaml"), CHAIN).expect("write");
    let broken = folder.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "dag_id: broken\nschedule: null\ntasks:\n  - id: a\n    operator: empty\n    retires: 2\n",
    )
    .expect("write");
    let processor = processor(&pool, folder.path());

    let report = processor.sync_once().await.expect("sync");
    assert_eq!((report.dags, report.import_errors), (1, 1));
    assert!(dag_row(&pool, "chain").await.is_some());
    let errors = import_errors(&pool).await;
    assert_eq!(errors.len(), 1);
    assert!(errors[0].0.ends_with("broken.yaml"));
    assert!(
        errors[0].1.contains("broken.yaml:6:5") && errors[0].1.contains("retires"),
        "message lacks file:line:col and the key: {}",
        errors[0].1
    );

    std::fs::write(
        &broken,
        "dag_id: broken\nschedule: null\ntasks:\n  - id: a\n    operator: empty\n",
    )
    .expect("fix");
    processor.sync_once().await.expect("sync");
    assert!(import_errors(&pool).await.is_empty());
    assert!(dag_row(&pool, "broken").await.is_some());
}

#[tokio::test]
async fn files_that_are_not_dags_are_import_errors_and_the_others_load() {
    let Some((pool, _database)) = database().await else {
        return;
    };
    let folder = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| folder.path().join(name);
    std::fs::write(path("chain.yaml"), CHAIN).expect("write");
    // A NUL character: the YAML parser would stop there and drop the task after it.
    std::fs::write(
        path("nul.yaml"),
        "dag_id: nul\nschedule: null\ntasks:\n  - id: a\n    operator: empty\n  - id: b\0\n    operator: empty\n",
    )
    .expect("write");
    // A byte-order mark (editors on Windows write one) is fine.
    std::fs::write(path("bom.yaml"), format!("\u{feff}{LATE_START}")).expect("write");
    // A FIFO would block the reader; a link to /dev/zero would never end.
    let fifo = std::ffi::CString::new(path("fifo.yaml").to_string_lossy().as_bytes()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path of our own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("/dev/zero", path("zero.yaml")).expect("symlink");
    let huge = format!("{CHAIN}# {}\n", "x".repeat(5 * 1024 * 1024));
    std::fs::write(path("huge.yaml"), huge).expect("write");
    let processor = processor(&pool, folder.path());

    let report = tokio::time::timeout(Duration::from_secs(30), processor.sync_once())
        .await
        .expect("the sync does not block")
        .expect("sync");
    assert_eq!((report.dags, report.import_errors), (2, 4), "{report:?}");
    assert!(dag_row(&pool, "chain").await.is_some());
    assert!(
        dag_row(&pool, "eager").await.is_some(),
        "the BOM file loads"
    );
    let errors = import_errors(&pool).await;
    let message = |file: &str| {
        errors
            .iter()
            .find(|(fileloc, _)| fileloc.ends_with(file))
            .map(|(_, message)| message.clone())
            .unwrap_or_else(|| panic!("no import error for {file}: {errors:?}"))
    };
    assert!(message("nul.yaml").contains("nul.yaml:6:10") && message("nul.yaml").contains("NUL"));
    assert!(message("fifo.yaml").contains("not a regular file"));
    assert!(message("zero.yaml").contains("not a regular file"));
    assert!(
        message("huge.yaml").contains("limit"),
        "{}",
        message("huge.yaml")
    );
}

#[tokio::test]
async fn a_dag_the_database_refuses_is_an_import_error_and_the_others_are_stored() {
    let Some((pool, database)) = database().await else {
        return;
    };
    // A rule of this database alone stands for anything PostgreSQL may refuse in a file.
    database
        .alter_schema("ALTER TABLE dag ADD CONSTRAINT no_refused CHECK (dag_id <> 'refused')")
        .await;
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(folder.path().join("chain.yaml"), CHAIN).expect("write");
    std::fs::write(
        folder.path().join("refused.yaml"),
        CHAIN.replace("dag_id: chain", "dag_id: refused"),
    )
    .expect("write");
    let processor = processor(&pool, folder.path());

    let report = processor
        .sync_once()
        .await
        .expect("one refused DAG fails nothing else");
    assert_eq!(report.changed, ["chain"]);
    assert_eq!(report.import_errors, 1);
    assert!(dag_row(&pool, "chain").await.is_some());
    assert!(dag_row(&pool, "refused").await.is_none());
    let errors = import_errors(&pool).await;
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].0.ends_with("refused.yaml") && errors[0].1.contains("cannot store this DAG"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_rescan_parses_only_the_files_that_changed() {
    let Some((pool, _database)) = database().await else {
        return;
    };
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(folder.path().join("chain.yaml"), CHAIN).expect("write");
    std::fs::write(folder.path().join("eager.yaml"), LATE_START).expect("write");
    let processor = processor(&pool, folder.path());
    assert_eq!(processor.sync_once().await.expect("sync").parsed_files, 2);
    let idle = processor.sync_once().await.expect("sync");
    assert_eq!((idle.parsed_files, idle.dags), (0, 2), "{idle:?}");

    std::fs::write(
        folder.path().join("eager.yaml"),
        format!("{LATE_START}# edited\n"),
    )
    .expect("edit");
    let edited = processor.sync_once().await.expect("sync");
    assert_eq!(edited.parsed_files, 1);
    assert_eq!(edited.changed, ["eager"]);
    assert_eq!(dag_row(&pool, "eager").await, Some((false, true, 2)));

    std::fs::remove_file(folder.path().join("chain.yaml")).expect("delete");
    let removed = processor.sync_once().await.expect("sync");
    assert_eq!((removed.parsed_files, removed.dags), (0, 1));
    assert_eq!(removed.deactivated, ["chain"]);
}

#[tokio::test]
async fn a_duplicate_dag_id_names_both_files() {
    let Some((pool, _database)) = database().await else {
        return;
    };
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(folder.path().join("a.yaml"), CHAIN).expect("write");
    std::fs::write(folder.path().join("b.yaml"), CHAIN).expect("write");
    processor(&pool, folder.path())
        .sync_once()
        .await
        .expect("sync");
    let errors = import_errors(&pool).await;
    assert_eq!(errors.len(), 2);
    assert!(errors[0].1.contains("b.yaml") && errors[1].1.contains("a.yaml"));
}

#[tokio::test]
async fn a_deleted_file_deactivates_its_dag() {
    let Some((pool, _database)) = database().await else {
        return;
    };
    let folder = tempfile::tempdir().expect("tempdir");
    let file = folder.path().join("chain.yaml");
    std::fs::write(&file, CHAIN).expect("write");
    let processor = processor(&pool, folder.path());
    processor.sync_once().await.expect("sync");
    std::fs::remove_file(&file).expect("delete");
    let report = processor.sync_once().await.expect("sync");
    assert_eq!(report.deactivated, vec!["chain".to_string()]);
    assert_eq!(dag_row(&pool, "chain").await, Some((true, false, 1)));
}

#[tokio::test]
async fn a_new_file_is_live_within_two_seconds_while_watching() {
    let Some((pool, _database)) = database().await else {
        return;
    };
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(folder.path().join("chain.yaml"), CHAIN).expect("write");
    let cancel = CancellationToken::new();
    let running = tokio::spawn(processor(&pool, folder.path()).run(cancel.clone()));
    testkit::eventually(
        "chain in the database",
        Duration::from_secs(10),
        async || dag_row(&pool, "chain").await.is_some(),
    )
    .await;

    let written = Instant::now();
    std::fs::write(folder.path().join("eager.yaml"), LATE_START).expect("write");
    testkit::eventually(
        "eager in the database",
        Duration::from_secs(2),
        async || dag_row(&pool, "eager").await.is_some(),
    )
    .await;
    eprintln!("new file live after {:?}", written.elapsed());

    cancel.cancel();
    running.await.expect("join").expect("processor");
}
