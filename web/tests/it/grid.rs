//! The DAG page's grid: 25 runs a page (newest right) with a duration bar each, and the side
//! panel a cell opens (log, XCom, rendered config, actions), whose actions mark one task
//! instance or clear it with its upstream tasks.

use chrono::{DateTime, Duration, Utc};
use updraft_orchestrator::dag::TaskState;
use updraft_orchestrator::engine::advance::start_queued_runs;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::{DagCache, dags, event_log, task_instances};

use crate::common::{csrf_of, form, login, page, setup};

/// The run ids of the grid's duration bars, left to right.
fn bar_runs(html: &str) -> Vec<String> {
    html.split("class=\"bar st-")
        .skip(1)
        .filter_map(|rest| {
            let at = rest.find("data-run=\"")? + 10;
            Some(rest[at..at + rest[at..].find('"')?].to_string())
        })
        .collect()
}

fn state_of(tis: &[task_instances::TaskInstanceView], task_id: &str) -> TaskState {
    tis.iter()
        .find(|ti| ti.task_id == task_id)
        .map(|ti| ti.state)
        .expect("the task instance")
}

#[tokio::test]
async fn the_grid_pages_runs_and_its_panel_acts_on_one_task_instance() {
    let Some(ctx) = setup("web_grid").await else {
        return;
    };
    let run_id = "manual__grid";
    ctx.run_with_tis(run_id).await;
    let start: DateTime<Utc> = "2023-01-01T00:00:00Z".parse().unwrap();
    for day in 0..30 {
        let request = TriggerRequest {
            logical_date: Some(start + Duration::days(day)),
            ..TriggerRequest::default()
        };
        trigger_run(&ctx.pool, "web_demo", request)
            .await
            .expect("trigger");
    }

    // 31 runs: the newest 25, oldest left; the run with tries is the newest (logical date now).
    let html = ctx.get("/dags/web_demo", "viewer").await.text();
    let shown = bar_runs(&html);
    assert_eq!(shown.len(), 25, "{shown:?}");
    assert_eq!(shown.last().map(String::as_str), Some(run_id));
    assert!(shown[0].contains("2023-01-07"), "{shown:?}");
    assert!(html.contains("class=\"legend\"") && html.contains("swatch st-up_for_retry"));
    assert!(html.contains("data-tip=\"extract\nRun: manual__grid\nState: success\nTry: 1"));
    let older = html
        .split("href=\"")
        .find(|rest| rest.contains("← older runs"))
        .and_then(|rest| rest.split('"').next())
        .expect("an older-runs link")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let older_page = ctx.get(&older, "viewer").await.text();
    let rest = bar_runs(&older_page);
    assert_eq!(rest.len(), 6, "{rest:?}");
    assert!(rest[0].contains("2023-01-01") && rest[5].contains("2023-01-06"));
    assert!(older_page.contains("latest runs →") && !older_page.contains("← older runs"));

    // The panel of `extract`: its log, XCom and rendered config; a viewer gets no actions.
    let panel_url = "/dags/web_demo/runs/manual__grid/tasks/extract/panel";
    let panel = ctx.get(panel_url, "viewer").await.text();
    assert!(!panel.contains("<html"), "a fragment, not a page");
    assert!(panel.contains("hello from extract\n") && panel.contains("second line"));
    assert!(panel.contains("return_value") && panel.contains("&#34;rows&#34;: 3"));
    assert!(panel.contains("&#34;x&#34;: 1"), "rendered config");
    assert!(!panel.contains("<form"), "a viewer has no actions");

    let op = login(&ctx, "op").await;
    let csrf = csrf_of(&ctx, &op).await;
    let panel = page(&ctx, &op, panel_url).await.text();
    assert!(panel.contains("name=\"upstream\"") && panel.contains("Mark failed"));

    // Mark `extract` failed: the audit log says who; the page goes back where it was.
    let marked = form(
        &ctx,
        &op,
        "/dags/web_demo/runs/manual__grid/tasks/extract/mark",
        format!("csrf_token={csrf}&state=failed&next=%2Fdags%2Fweb_demo"),
    )
    .await;
    assert_eq!(marked.status.as_u16(), 303, "{}", marked.text());
    assert_eq!(marked.headers["location"], "/dags/web_demo");
    let tis = task_instances::views_of_run(&ctx.pool, "web_demo", run_id)
        .await
        .unwrap();
    assert_eq!(state_of(&tis, "extract"), TaskState::Failed);
    let events = event_log::page(&ctx.pool, &event_log::EventFilter::default(), 10, 0)
        .await
        .unwrap();
    assert!(
        events
            .rows
            .iter()
            .any(|event| event.event == "mark_task_failed"
                && event.task_id.as_deref() == Some("extract")
                && event.owner == "op"),
        "{:?}",
        events.rows
    );
    let refused = form(
        &ctx,
        &op,
        "/dags/web_demo/runs/manual__grid/tasks/extract/mark",
        format!("csrf_token={csrf}&state=skipped"),
    )
    .await;
    assert_eq!(refused.status.as_u16(), 400, "{}", refused.text());

    // Clear `load` with its upstream tasks: all three run again.
    let cleared = form(
        &ctx,
        &op,
        "/dags/web_demo/runs/manual__grid/clear",
        format!("csrf_token={csrf}&task_id=load&upstream=true&next=%2Fdags%2Fweb_demo"),
    )
    .await;
    assert_eq!(cleared.status.as_u16(), 303, "{}", cleared.text());
    let tis = task_instances::views_of_run(&ctx.pool, "web_demo", run_id)
        .await
        .unwrap();
    for task_id in ["extract", "transform", "load"] {
        assert_eq!(state_of(&tis, task_id), TaskState::None, "{task_id}");
    }
}

/// Airflow's `PATCH …/taskInstances/{task_id}`: a dry run unless told otherwise.
#[tokio::test]
async fn the_api_sets_one_task_instance_state() {
    let Some(ctx) = setup("web_patch_ti").await else {
        return;
    };
    let run_id = "manual__patched";
    ctx.run_with_tis(run_id).await;
    let uri = format!("/api/v1/dags/web_demo/dagRuns/{run_id}/taskInstances/transform");
    let patch = |body: serde_json::Value, user: &'static str| {
        ctx.send(axum::http::Method::PATCH, &uri, Some(user), Some(body))
    };
    let dry = patch(serde_json::json!({"new_state": "success"}), "op").await;
    assert_eq!(dry.status.as_u16(), 200, "{}", dry.text());
    assert_eq!(dry.json()["task_id"], "transform");
    let transform = || async {
        let tis = task_instances::views_of_run(&ctx.pool, "web_demo", run_id)
            .await
            .unwrap();
        state_of(&tis, "transform")
    };
    assert_eq!(
        transform().await,
        TaskState::Failed,
        "a dry run changes nothing"
    );
    let set = patch(
        serde_json::json!({"new_state": "success", "dry_run": false}),
        "op",
    )
    .await;
    assert_eq!(set.status.as_u16(), 200, "{}", set.text());
    assert_eq!(transform().await, TaskState::Success);
    patch(
        serde_json::json!({"new_state": "running", "dry_run": false}),
        "op",
    )
    .await
    .assert_problem(400);
    patch(
        serde_json::json!({"new_state": "failed", "dry_run": false}),
        "viewer",
    )
    .await
    .assert_problem(403);

    // `extract` cleared and run again: the run's Gantt chart draws both of its tries.
    let clear = serde_json::json!({"dry_run": false, "dag_run_id": run_id,
        "task_ids": ["extract"], "only_failed": false, "reset_dag_runs": true});
    let cleared = ctx
        .send(
            axum::http::Method::POST,
            "/api/v1/dags/web_demo/clearTaskInstances",
            Some("op"),
            Some(clear),
        )
        .await;
    assert_eq!(cleared.status.as_u16(), 200, "{}", cleared.text());
    dags::set_paused(&ctx.pool, "web_demo", false)
        .await
        .expect("unpause");
    start_queued_runs(&ctx.pool, &DagCache::new(), "web_demo")
        .await
        .expect("start");
    let try_number = ctx.one_try("extract", TaskState::Success, &[], None).await;
    assert_eq!(try_number, 2);
    let run_page = ctx
        .get("/dags/web_demo/runs/manual__patched", "viewer")
        .await
        .text();
    let gantt = &run_page[run_page.find("id=\"gantt\"").expect("a Gantt chart")..];
    let gantt = &gantt[..gantt.find("</svg>").expect("an SVG")];
    for try_number in [1, 2] {
        assert!(
            gantt.contains(&format!("data-task=\"extract\" data-try=\"{try_number}\"")),
            "try {try_number} of extract"
        );
    }
    assert!(gantt.contains("data-task=\"transform\" data-try=\"1\""));
    assert!(!gantt.contains("data-task=\"load\""), "load never ran");
    assert!(
        gantt.contains("<rect class=\"queued\""),
        "the time a try waited"
    );
}

/// The trigger form: a field per param (a list for `enum`), turned into the run's conf by
/// type; a value of the wrong type or not among the choices is refused, naming the param.
#[tokio::test]
async fn the_trigger_form_turns_param_fields_into_the_conf() {
    let Some(ctx) = setup("web_trigger_params").await else {
        return;
    };
    std::fs::write(
        ctx.dags.path().join("regions.yaml"),
        r#"dag_id: regions
params:
  region:
    type: string
    enum: [eu, us]
    default: eu
    description: Where to run
  batch:
    default: 10
  dry:
    default: false
  filters:
    default: {country: FR}
tasks:
  - id: a
    operator: empty
"#,
    )
    .unwrap();
    ctx.sync_dags().await;
    let op = login(&ctx, "op").await;
    let csrf = csrf_of(&ctx, &op).await;
    let html = page(&ctx, &op, "/dags/regions").await.text();
    assert!(html.contains("<select id=\"param-region\" name=\"param:region\""));
    assert!(
        html.contains("<option value=\"&#34;eu&#34;\" selected>eu</option>"),
        "the default chosen"
    );
    assert!(html.contains("Where to run"), "the description");
    assert!(html.contains("data-param-kind=\"json\"") && html.contains("country"));

    let post = |body: String| form(&ctx, &op, "/dags/regions/trigger", body);
    let enc = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let ok = post(format!(
        "csrf_token={csrf}&param:region={}&param:batch=25&param:dry=true&param:filters={}&conf={}&run_id=form1",
        enc("\"us\""),
        enc("{\"country\": \"DE\"}"),
        enc("{\"extra\": 1}")
    ))
    .await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text());
    let run = updraft_orchestrator::store::runs::get(&ctx.pool, "regions", "form1")
        .await
        .unwrap()
        .expect("the run");
    assert_eq!(
        run.conf,
        serde_json::json!({"region": "us", "batch": 25, "dry": true,
            "filters": {"country": "DE"}, "extra": 1})
    );
    let not_a_number = post(format!("csrf_token={csrf}&param:batch=lots")).await;
    assert_eq!(not_a_number.status.as_u16(), 400);
    assert!(
        not_a_number
            .text()
            .contains("param `batch`: `lots` is not a whole number")
    );
    let not_a_choice = post(format!(
        "csrf_token={csrf}&param:region={}",
        enc("\"asia\"")
    ))
    .await;
    assert_eq!(not_a_choice.status.as_u16(), 400);
    assert!(
        not_a_choice
            .text()
            .contains("param `region`: one of [&quot;eu&quot;,&quot;us&quot;]"),
        "{}",
        not_a_choice.text()
    );
}
