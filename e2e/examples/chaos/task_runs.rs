//! Scenarios on the run engine: `updraft` processes on one database run chains of shell tasks
//! that log each try's start and end (run, task, try number, time) to one file, while faults are
//! injected. Afterwards: every run succeeded (none lost), no try of a task overlapped another, no
//! try ran twice, nothing is left running or queued.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use testkit::TestDatabase;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::processor::DagProcessor;
use updraft_orchestrator::store::{runs, task_instances};

use crate::processes::{Process, binary, free_port};

/// How much work runs while faults are injected.
#[derive(Clone, Copy)]
pub struct Load {
    pub runs: usize,
    pub tasks: usize,
    pub task_secs: f64,
    pub max_active_runs: usize,
}

impl Load {
    pub fn describe(&self) -> String {
        format!(
            "{} runs × {} shell tasks of {} s",
            self.runs, self.tasks, self.task_secs
        )
    }
}

/// A process is declared dead this long after its last heartbeat.
pub const REAPER_THRESHOLD_MS: u64 = 3_000;

/// The database, the DAG, the processes and the triggered runs of one scenario.
pub struct Cluster {
    pub pool: PgPool,
    pub processes: Vec<Process>,
    ids: Vec<i64>,
    tries_log: PathBuf,
    folder: tempfile::TempDir,
    database: TestDatabase,
}

/// What the runs came to.
#[derive(Default)]
pub struct Verdict {
    pub lost: usize,
    pub stuck: usize,
    pub overlaps: usize,
    pub doubled: usize,
    pub tries: usize,
    pub retried: usize,
    pub finished_after: Option<Duration>,
}

impl Verdict {
    pub fn holds(&self) -> bool {
        self.lost == 0 && self.stuck == 0 && self.overlaps == 0 && self.doubled == 0
    }

    pub fn describe(&self) -> String {
        let recovered = self.finished_after.map_or("never".to_string(), |after| {
            format!("{:.1} s", after.as_secs_f64())
        });
        format!(
            "{} runs lost, {} overlapping tries, {} tries run twice, {} stuck; {} tries ({} retries); all done {recovered} after the last fault",
            self.lost, self.overlaps, self.doubled, self.stuck, self.tries, self.retried
        )
    }
}

fn dag(load: &Load, tries_log: &std::path::Path) -> String {
    let mut yaml = format!(
        "dag_id: chaos\nschedule: null\nis_paused_upon_creation: false\nmax_active_runs: {}\n\
         max_active_tasks: 64\ndefault_args:\n  retries: 8\n  retry_delay: 0s\ntasks:\n",
        load.max_active_runs
    );
    let log = tries_log.display();
    for task in 0..load.tasks {
        let fields = "$UPDRAFT_RUN_ID $UPDRAFT_TASK_ID $UPDRAFT_TRY_NUMBER";
        yaml.push_str(&format!(
            "  - id: t{task:02}\n    operator: shell\n    command: |\n      \
             echo \"start {fields} $(date +%s%N)\" >> {log}\n      sleep {}\n      \
             echo \"end {fields} $(date +%s%N)\" >> {log}\n",
            load.task_secs
        ));
        if task > 0 {
            yaml.push_str(&format!("    upstream: [t{:02}]\n", task - 1));
        }
    }
    yaml
}

impl Cluster {
    /// A fresh database (with `synchronous_commit` on: the dev stack's default off would lose
    /// acknowledged commits on a crash), the DAG loaded, and the processes started.
    pub async fn start(name: &str, load: &Load, schedulers: usize, webserver: bool) -> Cluster {
        let database = TestDatabase::create(name).await;
        database
            .alter_schema(&format!(
                "ALTER DATABASE {} SET synchronous_commit = on",
                database.name()
            ))
            .await;
        let pool = updraft_orchestrator::store::connect(database.url(), 8)
            .await
            .expect("connect");
        updraft_orchestrator::store::MIGRATOR
            .run(&pool)
            .await
            .expect("migrate");
        let folder = tempfile::tempdir().expect("tempdir");
        let tries_log = folder.path().join("tries.log");
        std::fs::write(folder.path().join("chaos.yaml"), dag(load, &tries_log)).expect("DAG");
        let registry = std::sync::Arc::new(updraft_operators::builtin_registry());
        DagProcessor::new(pool.clone(), folder.path().to_path_buf(), registry)
            .sync_once()
            .await
            .expect("load the DAG");

        let updraft = binary("updraft");
        let env = [
            ("DATABASE_URL", database.url().to_string()),
            ("UPDRAFT_DAGS_FOLDER", folder.path().display().to_string()),
            (
                "UPDRAFT_REAPER_THRESHOLD_MS",
                REAPER_THRESHOLD_MS.to_string(),
            ),
            ("UPDRAFT_POLL_INTERVAL_MS", "500".to_string()),
            ("UPDRAFT_ADMIN_PASSWORD", "chaos-password".to_string()),
            ("RUST_LOG", "warn".to_string()),
        ];
        let mut processes = Vec::new();
        for index in 0..schedulers {
            let log = folder.path().join(format!("scheduler-{index}.log"));
            let name = format!("scheduler {index}");
            processes.push(Process::start(&name, &updraft, &["scheduler"], &env, &log));
        }
        if webserver {
            let bind = format!("127.0.0.1:{}", free_port());
            let log = folder.path().join("webserver.log");
            let args = ["webserver", "--bind", &bind];
            processes.push(Process::start("webserver", &updraft, &args, &env, &log));
        }
        Cluster {
            pool,
            processes,
            ids: Vec::new(),
            tries_log,
            folder,
            database,
        }
    }

    pub async fn trigger(&mut self, load: &Load) {
        for index in 0..load.runs {
            let request = TriggerRequest {
                run_id: Some(format!("chaos_{index:03}")),
                logical_date: chrono::DateTime::from_timestamp(
                    1_700_000_000 + index as i64 * 60,
                    0,
                ),
                ..Default::default()
            };
            let run = trigger_run(&self.pool, "chaos", request)
                .await
                .expect("trigger");
            self.ids.push(run.id);
        }
    }

    /// Waits until some task is running (the faults should land mid-work).
    pub async fn wait_for_work(&self) {
        testkit::eventually("a task to run", Duration::from_secs(60), async || {
            let tis = task_instances::of_runs(&self.pool, &self.ids).await;
            tis.is_ok_and(|tis| tis.iter().any(|ti| ti.state == TaskState::Running))
        })
        .await;
    }

    /// Waits (up to `limit` after `last_fault`) for every run to finish, then judges them.
    pub async fn verdict(&self, last_fault: Instant, limit: Duration) -> Verdict {
        let mut finished_after = None;
        while last_fault.elapsed() < limit {
            // Errors (the database still recovering) mean "not yet".
            if let Ok(states) = runs::states(&self.pool, &self.ids).await
                && states.len() == self.ids.len()
                && states.iter().all(|state| state.is_finished())
            {
                finished_after = Some(last_fault.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let states = runs::states(&self.pool, &self.ids)
            .await
            .expect("run states");
        let tis = task_instances::of_runs(&self.pool, &self.ids)
            .await
            .expect("task instances");
        let tries = read_tries(&self.tries_log);
        Verdict {
            lost: self.ids.len()
                - states
                    .iter()
                    .filter(|state| **state == RunState::Success)
                    .count(),
            stuck: tis
                .iter()
                .filter(|ti| matches!(ti.state, TaskState::Running | TaskState::Queued))
                .count(),
            overlaps: overlaps(&tries),
            doubled: tries
                .values()
                .map(|tries| {
                    let mut numbers: Vec<u32> = tries.iter().map(|t| t.number).collect();
                    numbers.sort_unstable();
                    numbers.windows(2).filter(|pair| pair[0] == pair[1]).count()
                })
                .sum(),
            tries: tries.values().map(Vec::len).sum(),
            retried: tries
                .values()
                .map(|tries| tries.len().saturating_sub(1))
                .sum(),
            finished_after,
        }
    }

    /// Keeps the processes' logs and the tries' log (a scenario failed) and says where.
    pub fn keep_logs(self, scenario: &str) {
        let Cluster {
            folder, database, ..
        } = self;
        drop(database);
        eprintln!("{scenario}: logs kept in {}", folder.keep().display());
    }
}

/// One execution of a try, as its shell logged it.
struct Try {
    number: u32,
    started: u128,
    ended: Option<u128>,
}

/// The tries of each (run, task).
fn read_tries(path: &std::path::Path) -> BTreeMap<(String, String), Vec<Try>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut tries: BTreeMap<(String, String), Vec<Try>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [event, run, task, number, time] = fields[..] else {
            continue;
        };
        let (Ok(number), Ok(time)) = (number.parse::<u32>(), time.parse::<u128>()) else {
            continue;
        };
        let of_task = tries
            .entry((run.to_string(), task.to_string()))
            .or_default();
        match event {
            "start" => of_task.push(Try {
                number,
                started: time,
                ended: None,
            }),
            _ => {
                if let Some(open) = of_task
                    .iter_mut()
                    .rev()
                    .find(|t| t.number == number && t.ended.is_none())
                {
                    open.ended = Some(time);
                }
            }
        }
    }
    tries
}

/// Tries of one task that ran at the same time: another started while one was between its start
/// and its logged end. (A killed try logs no end; its process group died with its scheduler.)
fn overlaps(tries: &BTreeMap<(String, String), Vec<Try>>) -> usize {
    let mut count = 0;
    for of_task in tries.values() {
        for one in of_task {
            let Some(ended) = one.ended else { continue };
            count += of_task
                .iter()
                .filter(|other| !std::ptr::eq(*other, one))
                .filter(|other| other.started > one.started && other.started < ended)
                .count();
        }
    }
    count
}
