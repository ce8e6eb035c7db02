//! The server-rendered pages, read as a viewer.

use crate::common::setup;
use axum::http::StatusCode;

#[tokio::test]
async fn pages_render_what_they_promise() {
    let Some(ctx) = setup("web_ui_pages").await else {
        return;
    };
    ctx.run_with_tis("manual__2024-01-01T00:00:00+00:00").await;
    let run = "manual__2024-01-01T00%3A00%3A00%2B00%3A00";

    let list = ctx.get("/dags", "viewer").await;
    assert_eq!(list.status, StatusCode::OK);
    let html = list.text();
    assert!(html.contains("web_demo") && html.contains("web_other"));
    assert!(html.contains("1 DAG import error"), "banner");
    assert!(html.contains("href=\"/import-errors\""));
    assert!(html.contains("role=\"switch\""));
    assert!(html.contains("class=\"mark st-queued\""), "recent run mark");
    assert!(html.contains("web-team") && html.contains("@daily"));
    let filtered = ctx.get("/dags?q=other", "viewer").await.text();
    assert!(filtered.contains("web_other") && !filtered.contains("href=\"/dags/web_demo\""));
    let tagged = ctx.get("/dags?tag=demo", "viewer").await.text();
    assert!(
        tagged.contains("href=\"/dags/web_demo\"") && !tagged.contains("href=\"/dags/web_other\"")
    );
    let beyond = ctx.get("/dags?page=9", "viewer").await.text();
    assert!(beyond.contains("No DAGs match"));

    let dag = ctx.get("/dags/web_demo", "viewer").await;
    assert_eq!(dag.status, StatusCode::OK);
    let html = dag.text();
    assert_eq!(html.matches("class=\"edge\"").count(), 3, "three edges");
    assert!(html.contains("class=\"node st-success\" data-task=\"extract\""));
    assert!(html.contains("class=\"node st-failed\" data-task=\"transform\""));
    assert!(
        html.contains(&format!("href=\"/dags/web_demo/runs/{run}/tasks/extract\"")),
        "graph node link"
    );
    assert!(
        html.contains(&format!(
            "data-panel=\"/dags/web_demo/runs/{run}/tasks/extract/panel\""
        )),
        "grid cell opens the side panel"
    );
    assert!(html.contains("cell st-upstream_failed"));
    assert!(
        html.contains("Your role may not trigger runs"),
        "viewer sees no trigger form"
    );
    assert!(html.contains("dag_id: web_demo"), "YAML source");
    // The YAML with line numbers (linkable), tags, owners, and the next-run line.
    assert!(
        html.contains("id=\"L1\"") && html.contains("id=\"L21\"") && !html.contains("id=\"L22\"")
    );
    assert!(html.contains("href=\"/dags?tag=demo\"") && html.contains("owners web-team"));
    assert!(
        html.contains("Paused: no scheduled runs until unpaused"),
        "new DAGs start paused"
    );
    assert!(
        !html.contains("action=\"/dags/web_demo/pause\""),
        "viewer has no pause toggle"
    );
    let op_dag = ctx.get("/dags/web_demo", "op").await.text();
    assert!(
        op_dag.contains("name=\"param:greeting\" value=\"hello\""),
        "a field per param, holding its default"
    );
    assert!(op_dag.contains("name=\"param:times\" value=\"2\" inputmode=\"decimal\""));
    assert!(op_dag.contains("data-param-kind=\"integer\""));
    assert!(
        op_dag.contains("action=\"/dags/web_demo/pause\"")
            && op_dag.contains("name=\"next\" value=\"/dags/web_demo\""),
        "the DAG page's pause toggle comes back to the DAG page"
    );

    // A DAG whose file broke keeps its page, which shows the file's error.
    std::fs::write(
        ctx.dags.path().join("web_other.yaml"),
        "dag_id: web_other\ntasks: [\n",
    )
    .unwrap();
    ctx.sync_dags().await;
    let broken = ctx.get("/dags/web_other", "viewer").await.text();
    assert!(
        broken.contains("The file does not parse") && broken.contains("web_other.yaml:"),
        "{broken}"
    );
    assert!(
        !ctx.get("/dags/web_demo", "viewer")
            .await
            .text()
            .contains("The file does not parse")
    );
    ctx.get("/dags/nope", "viewer")
        .await
        .status
        .eq(&StatusCode::NOT_FOUND)
        .then_some(())
        .expect("404");

    let run_page = ctx
        .get(&format!("/dags/web_demo/runs/{run}"), "viewer")
        .await;
    assert_eq!(run_page.status, StatusCode::OK);
    let html = run_page.text();
    assert!(html.contains("badge st-failed\">failed") && html.contains("upstream_failed"));
    assert!(html.contains("&#34;x&#34;: 1"), "rendered config");
    assert!(
        html.contains("data-live-after=") && html.contains("data-live-dags=\"web_demo\""),
        "the run page follows its DAG's changes live"
    );
    assert!(!html.contains("/clear\""), "viewer has no clear button");
    assert!(
        ctx.get(&format!("/dags/web_demo/runs/{run}"), "op")
            .await
            .text()
            .contains("/clear\"")
    );

    let log = ctx
        .get(
            &format!("/dags/web_demo/runs/{run}/tasks/extract"),
            "viewer",
        )
        .await;
    assert_eq!(log.status, StatusCode::OK);
    let html = log.text();
    assert!(html.contains("hello from extract") && html.contains("second line"));
    assert!(html.contains("data-follow=\"/dags/web_demo/runs/"));
    let feed = ctx
        .get(
            &format!("/dags/web_demo/runs/{run}/tasks/extract/log.json?try=1&after=0"),
            "viewer",
        )
        .await
        .json();
    assert_eq!(feed["lines"].as_array().unwrap().len(), 2);
    assert_eq!(feed["running"], false);
    let next = feed["next"].as_i64().unwrap();
    let empty = ctx
        .get(
            &format!("/dags/web_demo/runs/{run}/tasks/extract/log.json?try=1&after={next}"),
            "viewer",
        )
        .await
        .json();
    assert_eq!(empty["lines"].as_array().unwrap().len(), 0);
    assert_eq!(
        ctx.get(
            &format!("/dags/web_demo/runs/{run}/tasks/extract?try=5"),
            "viewer"
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    let errors = ctx.get("/import-errors", "viewer").await.text();
    assert!(errors.contains("broken.yaml"));
    let css = ctx
        .send(axum::http::Method::GET, "/static/app.css", None, None)
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.content_type().starts_with("text/css"));
}
