//! Browse → DAG runs: every DAG's runs newest first, filtered, a page at a time by keyset.

use chrono::{DateTime, Duration, Utc};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::task_instances;

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

#[tokio::test]
async fn task_instances_of_every_dag_are_browsed_with_filters_and_keyset_pages() {
    let Some(ctx) = setup("web_browse_tis").await else {
        return;
    };
    // extract succeeds, transform fails, load is upstream_failed.
    ctx.run_with_tis("r1").await;
    let op = login(&ctx, "op").await;
    let ids = |html: &str| -> Vec<String> {
        html.split("data-ti=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next().map(str::to_string))
            .collect()
    };
    let all = ids(&page(&ctx, &op, "/task-instances").await.text());
    assert_eq!(all.len(), 3, "{all:?}");
    let failed = ids(&page(&ctx, &op, "/task-instances?state=failed").await.text());
    assert_eq!(failed, ["web_demo/r1/transform"]);
    let extract = page(&ctx, &op, "/task-instances?dag_id=web_demo&task_id=extract").await;
    assert_eq!(ids(&extract.text()), ["web_demo/r1/extract"]);
    assert!(
        ids(&page(&ctx, &op, "/task-instances?dag_id=web_other")
            .await
            .text())
        .is_empty()
    );
    let refused = page(&ctx, &op, "/task-instances?state=sleepy").await.text();
    assert!(refused.contains("unknown state `sleepy`"));

    // Pages follow each other by keyset: newest first, none repeated, none skipped.
    let every = task_instances::BrowseFilter::default();
    let newest = task_instances::browse(&ctx.pool, &every, None, 2)
        .await
        .unwrap();
    let rest = task_instances::browse(&ctx.pool, &every, Some(newest[1].id), 2)
        .await
        .unwrap();
    let mut seen: Vec<i64> = newest.iter().chain(&rest).map(|ti| ti.id).collect();
    assert_eq!(seen.len(), 3);
    assert!(seen.windows(2).all(|pair| pair[0] > pair[1]), "{seen:?}");
    seen.dedup();
    assert_eq!(seen.len(), 3);
    let deeper = page(
        &ctx,
        &op,
        &format!("/task-instances?before_id={}", newest[1].id),
    )
    .await;
    assert_eq!(ids(&deeper.text()).len(), 1);
    assert!(deeper.text().contains(">Newest</a>"));
}
