//! What must never take a shard down or let the durable state fall behind what was acknowledged.

mod support;

use std::time::Duration;

use beckon_engine::Policy;
use reqwest::StatusCode;
use support::*;

const SHOP: &str = "shop";

#[tokio::test]
async fn a_wake_years_away_neither_kills_the_shard_nor_is_lost() {
    let rules = r#"[[rules]]
id = "future"
name = "Future"
status = "live"
when = { var = "behaviour.pages", op = "gt", value = 0 }
schedule = { start = "2030-01-01" }
message = { type = "text", text = "hi" }
"#;
    let silence = Policy {
        silence: Duration::from_secs(5 * 365 * 24 * 3600),
        dismissals_before_silence: 1,
        ..Policy::default()
    };
    let server = TestServer::with_sites(&[
        Site::new(SHOP, rules, Policy::default()),
        Site::new("quiet", &cart_exit_rule("r1"), silence),
    ])
    .await;
    let v = server.treated(SHOP, "v_fut");
    // A person (a pointer on the first page), so that the rule's schedule is what the next
    // wake waits for.
    for events in [
        vec![page("s_f:1", "home", "/"), bare("s_f:2", "activity")],
        vec![page("s_f:3", "home", "/")],
    ] {
        let r = server.post_events(&batch(SHOP, &v, "s_f", events)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    }
    let q = server.treated("quiet", "v_sil");
    let first = server
        .post_events(&batch(
            "quiet",
            &q,
            "s_q",
            vec![
                page("s_q:1", "product", "/p"),
                bare("s_q:2", "activity"),
                cart("s_q:3", 1, 10.0),
                bare("s_q:4", "exit_intent"),
            ],
        ))
        .await;
    let shown = first.interventions()[0].clone();
    for (i, events) in [
        vec![
            about("s_q:5", "dismissed", &shown),
            bare("s_q:6", "exit_intent"),
        ],
        vec![bare("s_q:7", "activity")],
    ]
    .into_iter()
    .enumerate()
    {
        let r = server.post_events(&batch("quiet", &q, "s_q", events)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "batch {i}: {r:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_durable_state_holds_every_acknowledged_event_under_concurrent_batches() {
    let server =
        TestServer::with_sites(&[Site::new(SHOP, &cart_exit_rule("r1"), Policy::default())]).await;
    for round in 0..5 {
        let v = server.treated(SHOP, &format!("v_race{round}_"));
        let s = format!("s_race{round}");
        let body = |i: usize| batch(SHOP, &v, &s, vec![bare(&format!("{s}:{i}"), "activity")]);
        let sends = (0..100).map(|i| {
            let body = body(i);
            let server = &server;
            async move { server.post_events(&body).await.status }
        });
        let statuses = futures::future::join_all(sends).await;
        // A new visitor's first batch reads the store, and the rest wait behind that read, at
        // most `MAX_WAITING` of them: on a busy machine some are shed (503), and the client
        // sends those again, as the widget does.
        for (i, status) in statuses.iter().enumerate() {
            match *status {
                StatusCode::ACCEPTED => {}
                StatusCode::SERVICE_UNAVAILABLE => {
                    let again = server.post_events(&body(i)).await;
                    assert_eq!(
                        again.status,
                        StatusCode::ACCEPTED,
                        "round {round}: {again:?}"
                    );
                }
                other => panic!("round {round}: batch {i} got {other}: {statuses:?}"),
            }
        }
        let ids: Vec<String> = server
            .events(SHOP, &s)
            .await
            .into_iter()
            .map(|e| e.id.to_string())
            .collect();
        let missing: Vec<usize> = (0..100)
            .filter(|i| ids.iter().filter(|id| **id == format!("{s}:{i}")).count() != 1)
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: the log does not hold these acknowledged events exactly once: {missing:?}"
        );
    }
    server.shutdown().await;
}
