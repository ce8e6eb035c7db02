//! Live updates for the UI: one listener per web process turns the engine's NOTIFYs into
//! server-sent events (`GET /events`).
//!
//! A notification names a DAG. Within [`DEBOUNCE`] the listener reads what changed in the
//! DAGs named (two statements for all of them, whatever the number of clients), keeps what
//! differs from what it sent before, and appends one message per DAG to a shared ring of
//! [`RING`] messages. Each client holds only its position in the ring: a client that falls
//! further behind than the ring (a slow network) is told to reload (`resync`), and so is every
//! client after the listener lost its database connection.
//!
//! A page embeds the ring position read before it read the database (`data-live-after`), and
//! subscribes from there: nothing changed between the page's read and its subscription is lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::watch;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::store::runs::{self, RunChange};
use updraft_orchestrator::store::task_instances::{self, GridCell};
use updraft_orchestrator::store::{self, channels};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::extract::Params;
use crate::ui::enc;

/// How long notifications are gathered before the changes are read.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Messages kept for clients catching up.
const RING: usize = 4096;
/// A change is stored with its transaction's start time, and becomes visible at its commit:
/// every read looks this far back, and what was already sent is not sent again.
const LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// The live view of one web process. Cheap to clone; the listener starts with the first
/// subscriber.
#[derive(Clone)]
pub struct Live {
    hub: Arc<Hub>,
}

struct Hub {
    pool: PgPool,
    started: OnceLock<()>,
    ring: Mutex<VecDeque<Message>>,
    /// The position of the newest message (0: none yet).
    newest: watch::Sender<u64>,
    /// Whether the listener is connected: changes from now on reach the ring.
    listening: watch::Sender<bool>,
}

#[derive(Clone)]
struct Message {
    position: u64,
    /// `None`: every client reloads.
    dag_id: Option<String>,
    json: Arc<str>,
}

/// One DAG's changes, as the browser receives them.
#[derive(Serialize)]
struct DagChanges {
    dag_id: String,
    runs: Vec<RunJson>,
    tis: Vec<TiJson>,
}

#[derive(Serialize)]
struct RunJson {
    run_id: String,
    state: RunState,
    logical_date: DateTime<Utc>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    href: String,
}

#[derive(Serialize)]
struct TiJson {
    run_id: String,
    task_id: String,
    state: TaskState,
    try_number: i32,
    queued_at: Option<DateTime<Utc>>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    duration: Option<f64>,
}

impl Live {
    pub fn new(pool: PgPool) -> Live {
        Live {
            hub: Arc::new(Hub {
                pool,
                started: OnceLock::new(),
                ring: Mutex::new(VecDeque::with_capacity(RING)),
                newest: watch::channel(0).0,
                listening: watch::channel(false).0,
            }),
        }
    }

    /// The position a page rendered now subscribes after (read before the page's queries).
    pub fn position(&self) -> u64 {
        self.start();
        *self.hub.newest.borrow()
    }

    fn start(&self) {
        self.hub.started.get_or_init(|| {
            tokio::spawn(listen(Arc::clone(&self.hub)));
        });
    }

    /// Messages after `after` about `dags` (all DAGs when `None`), as they come; first `ready`
    /// once the listener is connected.
    fn subscribe(
        &self,
        after: u64,
        dags: Option<HashSet<String>>,
    ) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
        self.start();
        let dags = Arc::new(dags);
        let newest = self.hub.newest.subscribe();
        let mut listening = self.hub.listening.subscribe();
        let hub = Arc::clone(&self.hub);
        let ready = futures::stream::once(async move {
            // Only errs when the hub is gone, which the stream below then notices.
            let _ = listening.wait_for(|listening| *listening).await;
            Ok(Event::default().event("ready").data("listening"))
        });
        let changes = futures::stream::unfold(
            (hub, newest, after, Vec::<Event>::new()),
            move |(hub, mut newest, mut after, mut pending)| {
                let dags = Arc::clone(&dags);
                async move {
                    loop {
                        if let Some(event) = pending.pop() {
                            return Some((Ok(event), (hub, newest, after, pending)));
                        }
                        let (events, next) = hub.read_after(after, dags.as_ref().as_ref());
                        after = next;
                        pending = events;
                        pending.reverse();
                        if !pending.is_empty() {
                            continue;
                        }
                        // Ends with the process (the sender lives in the hub, never dropped).
                        newest.changed().await.ok()?;
                    }
                }
            },
        );
        ready.chain(changes)
    }
}

impl Hub {
    /// The events after `after` for a client of `dags`, and its new position.
    fn read_after(&self, after: u64, dags: Option<&HashSet<String>>) -> (Vec<Event>, u64) {
        let Ok(ring) = self.ring.lock() else {
            return (vec![resync()], after);
        };
        let newest = ring.back().map_or(0, |message| message.position);
        if after > newest {
            // A position of an earlier process: this one's messages are others.
            return (vec![resync()], newest);
        }
        if after == newest {
            return (Vec::new(), after);
        }
        let oldest = ring.front().map_or(newest, |message| message.position);
        if after + 1 < oldest {
            // Fell behind the ring: what it missed is gone.
            return (vec![resync()], newest);
        }
        // Positions are consecutive: the first message after `after` is found by subtraction.
        let first = usize::try_from(after + 1 - oldest).unwrap_or(0);
        let events = ring
            .range(first..)
            .filter_map(|message| match &message.dag_id {
                None => Some(resync()),
                Some(dag_id) if dags.is_none_or(|dags| dags.contains(dag_id)) => Some(
                    Event::default()
                        .event("change")
                        .id(message.position.to_string())
                        .data(message.json.as_ref()),
                ),
                Some(_) => None,
            })
            .collect();
        (events, newest)
    }

    fn push(&self, messages: Vec<(Option<String>, String)>) {
        if messages.is_empty() {
            return;
        }
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        let mut position = ring.back().map_or(0, |message| message.position);
        for (dag_id, json) in messages {
            position += 1;
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(Message {
                position,
                dag_id,
                json: json.into(),
            });
        }
        drop(ring);
        self.newest.send_replace(position);
    }
}

// An event without data is not dispatched by browsers: these carry a word.
fn resync() -> Event {
    Event::default().event("resync").data("reload")
}

/// What was last sent of each run and task instance, to send only what differs.
#[derive(Default)]
struct Sent {
    runs: HashMap<(String, String), (RunChange, DateTime<Utc>)>,
    tis: HashMap<i64, GridCell>,
}

impl Sent {
    /// Keeps the changes not sent before, grouped by DAG.
    fn news(&mut self, runs: Vec<RunChange>, tis: Vec<GridCell>) -> Vec<DagChanges> {
        let mut by_dag: HashMap<String, DagChanges> = HashMap::new();
        fn of<'m>(by_dag: &'m mut HashMap<String, DagChanges>, dag_id: &str) -> &'m mut DagChanges {
            by_dag
                .entry(dag_id.to_string())
                .or_insert_with(|| DagChanges {
                    dag_id: dag_id.to_string(),
                    runs: Vec::new(),
                    tis: Vec::new(),
                })
        }
        for run in runs {
            let key = (run.dag_id.clone(), run.run_id.clone());
            let seen = self.runs.get(&key).is_some_and(|(sent, _)| {
                (sent.state, sent.start_date, sent.end_date)
                    == (run.state, run.start_date, run.end_date)
            });
            if seen {
                continue;
            }
            of(&mut by_dag, &run.dag_id).runs.push(RunJson {
                href: format!("/dags/{}/runs/{}", enc(&run.dag_id), enc(&run.run_id)),
                run_id: run.run_id.clone(),
                state: run.state,
                logical_date: run.logical_date,
                start_date: run.start_date,
                end_date: run.end_date,
            });
            let updated_at = run.updated_at;
            self.runs.insert(key, (run, updated_at));
        }
        for ti in tis {
            let seen = self.tis.get(&ti.id).is_some_and(|sent| {
                (sent.state, sent.try_number, sent.start_date, sent.end_date)
                    == (ti.state, ti.try_number, ti.start_date, ti.end_date)
            });
            if seen {
                continue;
            }
            of(&mut by_dag, &ti.dag_id).tis.push(TiJson {
                run_id: ti.run_id.clone(),
                task_id: ti.task_id.clone(),
                state: ti.state,
                try_number: ti.try_number,
                queued_at: ti.queued_at,
                start_date: ti.start_date,
                end_date: ti.end_date,
                duration: ti.duration,
            });
            self.tis.insert(ti.id, ti);
        }
        by_dag.into_values().collect()
    }

    /// Forgets what no read can return again unchanged: rows older than the look-back
    /// (runs only once finished, since unfinished runs are read every time).
    fn forget_before(&mut self, before: DateTime<Utc>) {
        self.tis.retain(|_, ti| ti.updated_at >= before);
        self.runs
            .retain(|_, (run, updated_at)| *updated_at >= before || !run.state.is_finished());
    }
}

/// The listener: NOTIFY → read the changes of the DAGs named → ring. Reconnects with backoff;
/// after a lost connection every client reloads (changes may have been missed meanwhile).
async fn listen(hub: Arc<Hub>) {
    let mut backoff = Duration::from_millis(200);
    let mut lost = false;
    loop {
        let mut listener = match store::listen(&hub.pool, &channels::ALL).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "live view: cannot LISTEN");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                lost = true;
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        if lost {
            hub.push(vec![(None, String::new())]);
        }
        hub.listening.send_replace(true);
        let mut since = match runs::database_now(&hub.pool).await {
            Ok(now) => now - LOOK_BACK,
            Err(error) => {
                tracing::warn!(%error, "live view: cannot read the database clock");
                tokio::time::sleep(backoff).await;
                lost = true;
                continue;
            }
        };
        let mut sent = Sent::default();
        let mut dirty: HashSet<String> = HashSet::new();
        lost = loop {
            // `try_recv`, not `recv`: a lost connection must be seen (notifications sent
            // meanwhile are gone, so followers reload), not silently reconnected.
            let heard = if dirty.is_empty() {
                Heard::from(listener.try_recv().await)
            } else {
                match tokio::time::timeout(DEBOUNCE, listener.try_recv()).await {
                    Ok(heard) => Heard::from(heard),
                    Err(_) => Heard::Quiet,
                }
            };
            match heard {
                Heard::Notification(dag_id) => {
                    dirty.insert(dag_id);
                    continue;
                }
                Heard::Quiet => {}
                Heard::Lost(why) => {
                    tracing::warn!(%why, "live view: LISTEN connection lost");
                    hub.listening.send_replace(false);
                    break true;
                }
            }
            let dags: Vec<String> = dirty.drain().collect();
            match read_changes(&hub.pool, &dags, since).await {
                Ok((now, runs, tis)) => {
                    let messages = sent
                        .news(runs, tis)
                        .into_iter()
                        .filter_map(|changes| {
                            let json = serde_json::to_string(&changes).ok()?;
                            Some((Some(changes.dag_id), json))
                        })
                        .collect();
                    hub.push(messages);
                    since = now - LOOK_BACK;
                    sent.forget_before(since);
                }
                Err(error) => {
                    tracing::warn!(%error, "live view: cannot read changes");
                    hub.listening.send_replace(false);
                    break true;
                }
            }
        };
    }
}

/// What the listener heard.
enum Heard {
    /// A notification naming this DAG.
    Notification(String),
    /// Nothing for the debounce: time to read what changed.
    Quiet,
    Lost(String),
}

impl From<Result<Option<sqlx::postgres::PgNotification>, sqlx::Error>> for Heard {
    fn from(heard: Result<Option<sqlx::postgres::PgNotification>, sqlx::Error>) -> Heard {
        match heard {
            Ok(Some(notification)) => Heard::Notification(notification.payload().to_string()),
            Ok(None) => Heard::Lost("the connection was closed".into()),
            Err(error) => Heard::Lost(error.to_string()),
        }
    }
}

async fn read_changes(
    pool: &PgPool,
    dags: &[String],
    since: DateTime<Utc>,
) -> Result<(DateTime<Utc>, Vec<RunChange>, Vec<GridCell>), sqlx::Error> {
    // The clock first: a change committed after the reads below is found by the next read.
    let now = runs::database_now(pool).await?;
    let runs = runs::changed_since(pool, dags, since).await?;
    let tis = task_instances::changed_since(pool, dags, since).await?;
    Ok((now, runs, tis))
}

/// `GET /events?after=N&dag_id=…`: server-sent events `change` (one DAG's changed runs and
/// task instances, JSON) and `resync` (reload). Without `dag_id`, every DAG. A reconnecting
/// browser's `Last-Event-ID` wins over `after`.
pub async fn events(
    State(state): State<AppState>,
    _user: CurrentUser,
    headers: HeaderMap,
    params: Params,
) -> Result<impl axum::response::IntoResponse, crate::AppError> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let after = match (last_event_id, params.get("after")) {
        (Some(after), _) => after,
        (None, Some(_)) => u64::try_from(params.int("after", 0, 0)?).unwrap_or(0),
        (None, None) => state.live.position(),
    };
    let dags = params.all("dag_id");
    let dags = (!dags.is_empty()).then(|| dags.into_iter().collect());
    let stream = state.live.subscribe(after, dags);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    // A proxy that buffers responses (nginx by default) would hold the events back.
    Ok(([("x-accel-buffering", "no")], sse))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        Hub {
            pool,
            started: OnceLock::new(),
            ring: Mutex::new(VecDeque::new()),
            newest: watch::channel(0).0,
            listening: watch::channel(false).0,
        }
    }

    fn message(dag_id: &str) -> (Option<String>, String) {
        (
            Some(dag_id.to_string()),
            format!("{{\"dag_id\":\"{dag_id}\"}}"),
        )
    }

    #[tokio::test]
    async fn a_client_reads_its_dags_after_its_position() {
        let hub = hub();
        hub.push(vec![message("a"), message("b"), message("a")]);
        let all = hub.read_after(0, None);
        assert_eq!((all.0.len(), all.1), (3, 3));
        let only_a: HashSet<String> = ["a".to_string()].into();
        let (events, position) = hub.read_after(1, Some(&only_a));
        assert_eq!((events.len(), position), (1, 3), "message 3 only");
        assert!(hub.read_after(3, None).0.is_empty(), "nothing new");
    }

    #[tokio::test]
    async fn a_client_behind_the_ring_or_from_another_process_reloads() {
        let hub = hub();
        hub.push((0..RING + 10).map(|_| message("a")).collect());
        let (events, position) = hub.read_after(3, None);
        assert_eq!(events.len(), 1, "one resync, not the rest");
        assert_eq!(position, (RING + 10) as u64);
        let (events, _) = hub.read_after(10, None);
        assert_eq!(
            events.len(),
            RING,
            "position 10 is the ring's first but one: all kept"
        );
        let (events, _) = hub.read_after(u64::MAX / 2, None);
        assert_eq!(
            events.len(),
            1,
            "a position this process never gave: resync"
        );
        hub.push(vec![(None, String::new())]);
        let (events, _) = hub.read_after((RING + 10) as u64, None);
        assert_eq!(events.len(), 1, "a lost connection: everyone reloads");
    }
}
