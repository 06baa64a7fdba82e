//! `GET /metrics` over a real socket. One test in its own binary: the recorder is global to
//! the process, so figures are exact only when no other test runs beside it.

mod support;

use std::collections::HashMap;

use beckon_engine::Policy;
use reqwest::StatusCode;
use support::*;

const SHOP: &str = "shop";

/// A scrape: every series (name and labels, as rendered) with its value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn of(server: &TestServer) -> Scrape {
        let r = server
            .http
            .get(server.url("/metrics"))
            .send()
            .await
            .expect("/metrics answers");
        assert_eq!(r.status(), StatusCode::OK);
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let text = r.text().await.expect("a body");
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l:?}"));
                (
                    series.to_owned(),
                    value.parse().unwrap_or_else(|_| panic!("{l:?}")),
                )
            })
            .collect();
        Scrape(series)
    }

    /// The value of one series; 0 when it is not there (yet).
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over every series of `name` whose labels include `label`.
    fn sum(&self, name: &str, label: &str) -> f64 {
        self.0
            .iter()
            .filter(|(s, _)| s.starts_with(&format!("{name}{{")) && s.contains(label))
            .map(|(_, v)| v)
            .sum()
    }
}

#[tokio::test]
async fn after_a_batch_the_metrics_show_its_events_decisions_commit_and_socket() {
    let server = TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default())]).await;
    let visitor = server.treated(SHOP, "v_metrics");
    let before = Scrape::of(&server).await;

    let mut ws = server.ws(ORIGIN, SHOP, &visitor, "s_m").await;
    ws.send(&frame(vec![
        page("s_m:1", "product", "/products/trail-shoe-x"),
        bare("s_m:2", "activity"),
        cart("s_m:3", 2, 98.0),
        bare("s_m:4", "exit_intent"),
    ]))
    .await;
    assert_eq!(ws.next().await["type"], "ack");
    assert_eq!(ws.next().await["type"], "intervention");
    // A resend: counted as a duplicate, not as new events.
    ws.send(&frame(vec![bare("s_m:4", "exit_intent")])).await;
    assert_eq!(ws.next().await["type"], "ack");

    let during = Scrape::of(&server).await;
    let delta = |series: &str| during.get(series) - before.get(series);
    assert_eq!(delta(r#"beckon_events_in_total{kind="page"}"#), 1.0);
    assert_eq!(delta(r#"beckon_events_in_total{kind="activity"}"#), 1.0);
    assert_eq!(delta(r#"beckon_events_in_total{kind="cart"}"#), 1.0);
    assert_eq!(delta(r#"beckon_events_in_total{kind="exit_intent"}"#), 2.0);
    assert_eq!(delta("beckon_duplicate_events_total"), 1.0);
    assert_eq!(delta(r#"beckon_decisions_total{outcome="fire"}"#), 1.0);
    let nothing = during.sum("beckon_decisions_total", r#"outcome="nothing""#)
        - before.sum("beckon_decisions_total", r#"outcome="nothing""#);
    assert!(
        nothing >= 3.0,
        "{nothing} decisions of nothing for page, activity and cart"
    );
    // The batch was committed (and the resend, and perhaps a timer's tick).
    let commits = delta("beckon_commit_seconds_count");
    assert!(commits >= 2.0, "{commits} commits");
    assert_eq!(delta(r#"beckon_commit_seconds_bucket{le="+Inf"}"#), commits);
    assert!(delta("beckon_commit_seconds_sum") > 0.0);
    assert_eq!(during.get("beckon_commit_failed_total"), 0.0);
    assert_eq!(during.get("beckon_open_sockets"), 1.0);
    assert_eq!(during.get("beckon_live_sessions"), 1.0);

    ws.close().await;
    eventually("the closed socket is counted", || async {
        let after = Scrape::of(&server).await;
        after.get("beckon_open_sockets") == 0.0
            && after.get(r#"beckon_ws_closed_total{reason="client"}"#) == 1.0
    })
    .await;
    server.shutdown().await;
}
