//! Browse → DAG runs: every DAG's runs newest first, filtered, a page at a time by keyset.

use chrono::{DateTime, Duration, Utc};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};

use crate::common::{login, page, setup};

/// The run ids the page lists, in order.
fn listed(html: &str) -> Vec<String> {
    html.split("data-run=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_string))
        .collect()
}

/// The "Older runs" link of a page, unescaped.
fn older(html: &str) -> Option<String> {
    let start = html.find("rel=\"next\"")?;
    let before = &html[..start];
    let href = before.rsplit("href=\"").next()?.split('"').next()?;
    Some(href.replace("&amp;", "&").replace("&#38;", "&"))
}

#[tokio::test]
async fn runs_of_every_dag_are_browsed_newest_first_with_filters_and_keyset_pages() {
    let Some(ctx) = setup("web_browse_runs").await else {
        return;
    };
    let start: DateTime<Utc> = "2024-03-01T00:00:00Z".parse().unwrap();
    for day in 0..60 {
        let request = TriggerRequest {
            logical_date: Some(start + Duration::days(day)),
            ..TriggerRequest::default()
        };
        let dag_id = if day % 10 == 0 {
            "web_other"
        } else {
            "web_demo"
        };
        trigger_run(&ctx.pool, dag_id, request).await.unwrap();
    }
    let op = login(&ctx, "op").await;

    let first = page(&ctx, &op, "/runs").await.text();
    let first_ids = listed(&first);
    assert_eq!(first_ids.len(), 50);
    assert_eq!(
        first_ids[0], "manual__2024-04-29T00:00:00+00:00",
        "newest first"
    );
    let next = older(&first).expect("an older page");
    let second = page(&ctx, &op, &next).await.text();
    let second_ids = listed(&second);
    assert_eq!(second_ids.len(), 10);
    assert_eq!(second_ids[9], "manual__2024-03-01T00:00:00+00:00");
    assert!(older(&second).is_none(), "the last page has no older link");
    assert!(second.contains(">Newest</a>"));

    let other = listed(&page(&ctx, &op, "/runs?dag_id=web_other").await.text());
    assert_eq!(other.len(), 6);
    let ranged = page(
        &ctx,
        &op,
        "/runs?from=2024-03-05&to=2024-03-07&state=queued&run_type=manual",
    )
    .await;
    assert_eq!(
        listed(&ranged.text()),
        [
            "manual__2024-03-07T00:00:00+00:00",
            "manual__2024-03-06T00:00:00+00:00",
            "manual__2024-03-05T00:00:00+00:00"
        ]
    );
    assert!(listed(&page(&ctx, &op, "/runs?run_type=backfill").await.text()).is_empty());
    let refused = page(&ctx, &op, "/runs?state=done&from=yesterday")
        .await
        .text();
    assert!(refused.contains("unknown state `done`"), "{refused}");
    assert_eq!(
        listed(&refused).len(),
        50,
        "an unusable filter is left out, and said"
    );
}
