//! Leads through the real `beckon serve`: visitors fill in the e-mail capture form (its `lead`
//! event, as the widget sends it), and every lead reaches the site's webhook — a receiver that
//! checks every signature with the official Standard Webhooks library for Python — even when
//! the server is killed with SIGKILL right after the leads were acknowledged.

mod process_support;

#[path = "../../beckon-outbox/tests/support/peers.rs"]
mod peers;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use beckon_engine::{Policy, SiteId, Timestamp};
use beckon_store::outbox::{Destination, DestinationId, Outbox, Target, Topic};
use beckon_store::{SecretDigest, SiteRecord, Store};
use beckon_store_sqlite::SqliteStore;
use peers::Peer;
use process_support::*;
use serde_json::{Value, json};

/// A rule that offers the e-mail capture form on the first page, at once.
const CAPTURE_RULE: &str = r#"[[rules]]
id = "capture"
name = "capture"
status = "live"
priority = 100
when = { var = "page.path", op = "starts_with", value = "/" }
message = { type = "email_capture", text = "Get our guide by e-mail.", consent = "I agree to receive e-mails from the shop." }
"#;
/// Nobody held out, nothing waits for an arrival grace.
const POLICY: &str = "holdout_percent = 0.0\narrival_grace = \"0s\"\n";
const LIMITS: &str = "per_ip_per_second = 0\nper_site_per_second = 0";

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The test's configuration: the capture rule, and destinations allowed on this machine (the
/// receiver runs here).
fn config(dir: &Path) -> std::path::PathBuf {
    let path = write_config_with(dir, POLICY, LIMITS, CAPTURE_RULE);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[outbox]\nallow_private_addresses = true\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// Adds a webhook destination to the database in `dir` (before the server starts on it).
async fn add_webhook(dir: &Path, url: &str, secret: &str) {
    std::fs::create_dir_all(data_dir(dir)).unwrap();
    let store = SqliteStore::open(&data_dir(dir).join("beckon.db"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let site = SiteId::parse(SITE).unwrap();
    store
        .put_site(&SiteRecord {
            id: site.clone(),
            secret: SecretDigest::of("sk_shop_secret"),
            origins: vec![ORIGIN.to_owned()],
            policy: Policy::default(),
            version: 0,
        })
        .await
        .unwrap();
    store
        .put_destination(&Destination {
            id: DestinationId::random(),
            site,
            name: "CRM".to_owned(),
            target: Target::Webhook {
                url: url.to_owned(),
                secret: secret.to_owned(),
                previous: None,
            },
            topics: vec![Topic::LeadCreated],
            enabled: true,
            disabled_reason: None,
            created_at: Timestamp::from_millis(0),
        })
        .await
        .unwrap();
}

/// One visitor who sees the form and leaves `email`; returns when the lead was acknowledged.
async fn leave_a_lead(http: &reqwest::Client, base: &str, n: usize, email: &str) {
    let session = format!("s{n:05}");
    let page = json!({
        "site": SITE, "session": session,
        "context": {"lang": "en-US", "tz_offset": 0, "screen": [1280, 800]},
        "events": [{"id": format!("{session}:p:1"), "type": "page", "path": "/blog/guide",
                    "title": "The guide", "page_type": "article"},
                   {"id": format!("{session}:p:2"), "type": "scroll", "depth": 40},
                   {"id": format!("{session}:p:3"), "type": "activity"}],
    });
    let r = post_batch(http, base, page.to_string()).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.text);
    let identity = &r.body["identity"];
    let intervention = r.body["interventions"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the form is offered: {}", r.text))
        .to_owned();
    let lead = json!({
        "site": SITE, "session": session,
        "visitor": identity["visitor"], "token": identity["token"],
        "context": {"lang": "en-US", "tz_offset": 0, "screen": [1280, 800]},
        "events": [
            {"id": format!("{session}:l:1"), "type": "shown", "rule": "capture", "intervention": intervention},
            {"id": format!("{session}:l:2"), "type": "lead", "rule": "capture", "intervention": intervention,
             "email": email, "name": format!("Visitor {n}"), "consent": true},
            {"id": format!("{session}:l:3"), "type": "engaged", "rule": "capture", "intervention": intervention},
        ],
    });
    let r = post_batch(http, base, lead.to_string()).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["accepted"], 3, "{}", r.text);
}

/// The receiver's successful deliveries: webhook-id → the lead's address.
fn delivered(records: &[Value]) -> HashMap<String, String> {
    records
        .iter()
        .filter(|r| r["status"] == 200)
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            (
                r["id"].as_str().unwrap().to_owned(),
                body["data"]["lead"]["email"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_acknowledged_before_a_sigkill_are_all_delivered_once_after_the_restart() {
    const LEADS: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let secret = beckon_outbox::new_secret();
    let receiver = Peer::webhook_receiver(&[&secret]);
    // A slow receiver: deliveries are still in flight, or not yet tried, when the kill comes.
    add_webhook(dir.path(), &receiver.url("/slow/1"), &secret).await;
    let config = config(dir.path());
    let server = Beckon::start(&config).await;
    let base = server.base();
    let http = client_from("127.0.0.1", true);
    let emails: Vec<String> = (0..LEADS).map(|n| format!("lead{n}@example.com")).collect();
    let captures = emails.iter().enumerate().map(|(n, email)| {
        let (http, base) = (http.clone(), base.clone());
        async move { leave_a_lead(&http, &base, n, email).await }
    });
    futures::future::join_all(captures).await;
    // Every lead is acknowledged: kill at once, before the outbox can have sent them all.
    server.sigkill().await;
    let before_restart = delivered(&receiver.records()).len();
    assert!(
        before_restart < LEADS,
        "all {LEADS} were delivered before the kill: the test proves nothing"
    );

    let _server = Beckon::start(&config).await;
    let records = receiver
        .wait_for(Duration::from_secs(90), |r| {
            delivered(r).values().collect::<HashSet<_>>().len() >= LEADS
        })
        .await;
    let by_key = delivered(&records);
    let mut got: Vec<&String> = by_key.values().collect();
    got.sort();
    got.dedup();
    let mut want: Vec<&String> = emails.iter().collect();
    want.sort();
    assert_eq!(got, want, "every acknowledged lead, none missing");
    assert_eq!(
        by_key.len(),
        LEADS,
        "one idempotency key per lead: none doubled (a try whose answer the kill cut off comes \
         again under the same key)"
    );
    assert!(
        records.iter().all(|r| r["verified_by"] == 0),
        "every request verified"
    );
    println!(
        "kill test: {LEADS} leads captured and acknowledged; {before_restart} delivered before \
         the SIGKILL; after the restart all {LEADS} delivered, {} distinct keys, {} requests \
         in all (same-key repeats: {})",
        by_key.len(),
        records.len(),
        records.iter().filter(|r| r["status"] == 200).count() - by_key.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_leads_reach_the_webhook_each_once() {
    const LEADS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let secret = beckon_outbox::new_secret();
    let receiver = Peer::webhook_receiver(&[&secret]);
    add_webhook(dir.path(), &receiver.url("/ok"), &secret).await;
    let config = config(dir.path());
    let server = Beckon::start(&config).await;
    let base = server.base();
    let http = client_from("127.0.0.1", true);
    let began = Instant::now();
    let mut acked_at: HashMap<String, f64> = HashMap::new();
    // Forty visitors at a time, as a busy shop's would come.
    for chunk in (0..LEADS).collect::<Vec<_>>().chunks(40) {
        let done = futures::future::join_all(chunk.iter().map(|&n| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let email = format!("reader{n}@example.com");
                leave_a_lead(&http, &base, n, &email).await;
                (email, unix_secs())
            }
        }))
        .await;
        acked_at.extend(done);
    }
    let records = receiver
        .wait_for(Duration::from_secs(120), |r| delivered(r).len() >= LEADS)
        .await;
    let took = began.elapsed();
    let by_key = delivered(&records);
    assert_eq!(by_key.len(), LEADS);
    assert_eq!(
        by_key.values().collect::<HashSet<_>>().len(),
        LEADS,
        "each lead once"
    );
    let mut latency_ms: Vec<f64> = records
        .iter()
        .filter(|r| r["status"] == 200)
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            let email = body["data"]["lead"]["email"].as_str().unwrap();
            (r["received_at"].as_f64().unwrap() - acked_at[email]) * 1000.0
        })
        .collect();
    latency_ms.sort_by(f64::total_cmp);
    let at =
        |q: f64| latency_ms[((latency_ms.len() as f64 * q) as usize).min(latency_ms.len() - 1)];
    println!(
        "latency from the capture's acknowledgement to the webhook, {LEADS} leads: p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms ({:.1} s in all)",
        at(0.5),
        at(0.99),
        latency_ms[latency_ms.len() - 1],
        took.as_secs_f64()
    );
}
