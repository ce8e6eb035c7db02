//! Live updates: `GET /events` sends the state changes of a DAG's runs and task instances as
//! the engine makes them, announced by its NOTIFYs (a user's mark) and by the executor's state
//! feed (a claim, which sends no NOTIFY of its own).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use updraft_orchestrator::dag::TaskState;
use updraft_orchestrator::engine::advance::{decide_run_fully, start_queued_runs};
use updraft_orchestrator::engine::clear::mark_task;
use updraft_orchestrator::engine::state_feed::StateFeed;
use updraft_orchestrator::store::task_instances;
use updraft_orchestrator::store::{DagCache, dags};

use crate::common::{Ctx, basic, setup};

/// The events of one `GET /events` response, read as they arrive.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    /// `GET /events?dag_id=web_demo` as the viewer: an endless event stream.
    async fn of(ctx: &Ctx) -> Events {
        let response = ctx
            .app
            .clone()
            .oneshot(
                Request::get("/events?dag_id=web_demo")
                    .header(header::AUTHORIZATION, basic("viewer"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        assert_eq!(
            response.headers()["x-accel-buffering"],
            "no",
            "no proxy buffering"
        );
        Events {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event as (name, data), waiting at most 10 s.
    async fn next(&mut self) -> (String, String) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if block.lines().all(|line| line.starts_with(':')) {
                    continue; // a keep-alive comment
                }
                return (name, data);
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s")
                .expect("the stream goes on")
                .expect("a frame");
            if let Ok(bytes) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }

    /// Waits for a `change` event carrying `task_id` of `run_id` in `state`.
    async fn until_task(&mut self, run_id: &str, task_id: &str, state: &str) -> Value {
        loop {
            let (name, data) = self.next().await;
            assert_ne!(name, "resync", "no reason to reload here");
            if name != "change" {
                continue;
            }
            let changes: Value = serde_json::from_str(&data).expect("JSON data");
            assert_eq!(changes["dag_id"], "web_demo", "only the DAG asked for");
            let found = changes["tis"].as_array().expect("tis").iter().any(|ti| {
                ti["run_id"] == run_id && ti["task_id"] == task_id && ti["state"] == state
            });
            if found {
                return changes;
            }
        }
    }
}

#[tokio::test]
async fn state_changes_reach_the_events_of_their_dag() {
    let Some(ctx) = setup("web_live_events").await else {
        return;
    };
    let run_id = "manual__live";
    ctx.run_with_tis(run_id).await;
    let mut events = Events::of(&ctx).await;
    assert_eq!(events.next().await.0, "ready", "the listener is connected");

    // A user's mark (a NOTIFY on the runs channel): `transform` success, and `load`, which it
    // had failed upstream, cleared to run again.
    mark_task(
        &ctx.pool,
        "web_demo",
        run_id,
        "transform",
        TaskState::Success,
    )
    .await
    .expect("mark");
    let changes = events.until_task(run_id, "transform", "success").await;
    let load = changes["tis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ti| ti["task_id"] == "load");
    assert_eq!(load.map(|ti| &ti["state"]), Some(&Value::from("none")));

    // The run starts and `load` is queued (a NOTIFY on the queue's channel)...
    dags::set_paused(&ctx.pool, "web_demo", false)
        .await
        .expect("unpause");
    let cache = DagCache::new();
    let started = start_queued_runs(&ctx.pool, &cache, "web_demo")
        .await
        .expect("start");
    decide_run_fully(&ctx.pool, &cache, "web_demo", started[0])
        .await
        .expect("decide");
    events.until_task(run_id, "load", "queued").await;
    // ...then claimed, which no statement announces: the executor's state feed does.
    let claimed = task_instances::claim(&ctx.pool, "live-test", 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let feed = StateFeed::start(ctx.pool.clone());
    feed.mark("web_demo");
    let changes = events.until_task(run_id, "load", "running").await;
    let load = changes["tis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ti| ti["task_id"] == "load")
        .unwrap();
    assert_eq!(load["try_number"], 1);
    assert!(load["start_date"].is_string(), "{load}");
}

/// The database goes away under a follower: once the listener is back, the follower is told to
/// reload (changes made meanwhile were not announced), and later changes reach it again.
#[tokio::test]
async fn after_a_database_outage_followers_reload_and_changes_flow_again() {
    let Some(ctx) = setup("web_live_outage").await else {
        return;
    };
    let run_id = "manual__outage";
    ctx.run_with_tis(run_id).await;
    let mut events = Events::of(&ctx).await;
    assert_eq!(events.next().await.0, "ready");
    ctx.database().begin_outage().await;
    ctx.database().end_outage().await;
    loop {
        let (name, _) = events.next().await;
        if name == "resync" {
            break;
        }
    }
    mark_task(
        &ctx.pool,
        "web_demo",
        run_id,
        "transform",
        TaskState::Success,
    )
    .await
    .expect("mark after the outage");
    events.until_task(run_id, "transform", "success").await;
}

#[tokio::test]
async fn events_need_a_signed_in_user() {
    let Some(ctx) = setup("web_live_auth").await else {
        return;
    };
    let reply = ctx
        .raw(Request::get("/events").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "to the login page");
}
