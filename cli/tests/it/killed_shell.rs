//! A process killed with SIGKILL takes its shell tasks with it: nothing it started keeps
//! running next to the retry another process starts.

use std::path::Path;
use std::time::Duration;

use crate::common::{Scheduler, setup, trigger_until_running};

/// Whether `pid` still runs (a zombie waiting to be reaped does not).
fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn read_pid(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_schedulers_shell_task_dies_with_it() {
    let pid_dir = tempfile::tempdir().expect("tempdir");
    let pid_file = pid_dir.path().join("sleep.pid");
    // The task's own child, not the shell: what a process group kill must reach.
    let yaml = format!(
        "dag_id: slow\nschedule: null\nis_paused_upon_creation: false\ntasks:\n  \
         - id: work\n    operator: shell\n    \
         command: \"sleep 300 & echo $! > {} && wait\"\n",
        pid_file.display()
    );
    let Some((pool, database, folder)) = setup("killed_shell", "slow.yaml", &yaml).await else {
        return;
    };
    let mut scheduler = Scheduler::start(database.url(), folder.path(), &[], None);
    trigger_until_running(&pool, "slow", "work").await;
    let sleeper = testkit::eventually("the task's pid file", Duration::from_secs(20), async || {
        read_pid(&pid_file)
    })
    .await;
    assert!(is_running(sleeper));

    scheduler.0.kill().expect("SIGKILL");
    scheduler.0.wait().expect("reap the scheduler");
    testkit::eventually(
        "the task's process to die with the scheduler",
        Duration::from_secs(10),
        async || !is_running(sleeper),
    )
    .await;
}
