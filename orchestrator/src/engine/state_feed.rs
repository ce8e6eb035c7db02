//! Tells watchers (the UI's live view) which DAGs' task instances changed state.
//!
//! Claims and ends run thousands of times a second: a NOTIFY in each of their statements would
//! cost the engine. Instead the executor marks the DAG here, and one task sends
//! `updraft_states` for the marked DAGs at most every [`FLUSH_EVERY`], in one statement.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::store::{channels, notify_each};

/// How long a change may wait before its DAG is announced: well under the UI's 1 s.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

struct Marked {
    dags: Mutex<HashSet<String>>,
    wake: Notify,
}

/// Cheap to clone; the sending task ends when the last clone is dropped.
#[derive(Clone)]
pub struct StateFeed {
    marked: Arc<Marked>,
}

impl StateFeed {
    pub fn start(pool: PgPool) -> StateFeed {
        let marked = Arc::new(Marked {
            dags: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        });
        tokio::spawn(send_marked(pool, Arc::downgrade(&marked)));
        StateFeed { marked }
    }

    /// A task instance of `dag_id` changed state.
    pub fn mark(&self, dag_id: &str) {
        let Ok(mut dags) = self.marked.dags.lock() else {
            return;
        };
        if dags.is_empty() {
            self.marked.wake.notify_one();
        }
        if !dags.contains(dag_id) {
            dags.insert(dag_id.to_string());
        }
    }
}

async fn send_marked(pool: PgPool, marked: Weak<Marked>) {
    loop {
        let wait = {
            let Some(marked) = marked.upgrade() else {
                return;
            };
            // `notified` is registered before the strong reference is dropped, and a permit
            // stored by `notify_one` is kept: no mark is missed.
            let marked = Arc::clone(&marked);
            async move { marked.wake.notified().await }
        };
        if tokio::time::timeout(Duration::from_secs(1), wait)
            .await
            .is_err()
        {
            continue;
        }
        tokio::time::sleep(FLUSH_EVERY).await;
        let dags: Vec<String> = {
            let Some(marked) = marked.upgrade() else {
                return;
            };
            let Ok(mut dags) = marked.dags.lock() else {
                return;
            };
            dags.drain().collect()
        };
        if dags.is_empty() {
            continue;
        }
        // A lost announcement only delays the watchers' view to the next change: log, go on.
        if let Err(error) = notify_each(&pool, channels::STATES, &dags).await {
            tracing::debug!(%error, "cannot announce state changes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_are_collected_once_per_dag() {
        let marked = Marked {
            dags: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        };
        let feed = StateFeed {
            marked: Arc::new(marked),
        };
        feed.mark("a");
        feed.mark("a");
        feed.mark("b");
        let mut dags: Vec<String> = feed.marked.dags.lock().unwrap().drain().collect();
        dags.sort();
        assert_eq!(dags, ["a", "b"]);
        // The first mark left a permit: the sender wakes even if it was not yet waiting.
        tokio::time::timeout(Duration::from_millis(100), feed.marked.wake.notified())
            .await
            .expect("woken");
    }
}
