//! The outbox against real peers: every webhook signature checked by the official Standard
//! Webhooks library of another language (Python), e-mail through a real SMTP server (aiosmtpd)
//! and read back, failures, a gone endpoint, throttling and timeouts.

#[path = "support/peers.rs"]
mod peers;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use beckon_engine::{Policy, SiteId, Timestamp, VisitorId};
use beckon_outbox::{Worker, WorkerConfig, payload};
use beckon_store::conversations::{CartSeen, Context, PageSeen};
use beckon_store::leads::{Consent, LeadContext, LeadId, LeadSettings, LeadSource, Leads, NewLead};
use beckon_store::outbox::{
    DeliveryQuery, DeliveryStatus, Destination, DestinationId, Outbox, PreviousSecret, Target,
    Topic,
};
use beckon_store::{SecretDigest, SiteRecord, Store};
use beckon_store_sqlite::SqliteStore;
use peers::Peer;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn now() -> Timestamp {
    Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
}

struct World {
    store: Arc<SqliteStore>,
    site: SiteId,
}

impl World {
    async fn new() -> World {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        store.migrate().await.unwrap();
        let site = SiteId::parse("shop").unwrap();
        store
            .put_site(&SiteRecord {
                id: site.clone(),
                secret: SecretDigest::of("sk"),
                origins: vec![],
                policy: Policy::default(),
                version: 0,
            })
            .await
            .unwrap();
        World { store, site }
    }

    async fn destination(&self, name: &str, target: Target, topics: &[Topic]) -> DestinationId {
        let id = DestinationId::random();
        self.store
            .put_destination(&Destination {
                id: id.clone(),
                site: self.site.clone(),
                name: name.to_owned(),
                target,
                topics: topics.to_vec(),
                enabled: true,
                disabled_reason: None,
                created_at: now(),
            })
            .await
            .unwrap();
        id
    }

    async fn lead(&self, email: &str, language: &str) -> LeadId {
        let id = LeadId::random();
        let mut lead = NewLead {
            id: id.clone(),
            site: self.site.clone(),
            visitor: Some(VisitorId::parse("v_00000000000000000001").unwrap()),
            email: email.to_owned(),
            name: "Ada".to_owned(),
            question: "Do you ship to Canada?".to_owned(),
            consent: Consent {
                text: "I agree to be contacted about my request.".to_owned(),
                at: now(),
            },
            source: LeadSource::Capture,
            context: LeadContext {
                visit: Context {
                    pages: vec![PageSeen {
                        path: "/blog/lamps".to_owned(),
                        title: "Lamps".to_owned(),
                        page_type: "article".to_owned(),
                        at: now(),
                    }],
                    cart: Some(CartSeen {
                        value: 42.5,
                        currency: "EUR".to_owned(),
                        items: 2,
                    }),
                    language: language.to_owned(),
                    ..Context::default()
                },
                rule: Some("article-capture".to_owned()),
                intervention: Some("i_1".to_owned()),
                ..LeadContext::default()
            },
            at: now(),
            announce: Vec::new(),
        };
        lead.announce = vec![payload::lead_created(&lead)];
        self.store.capture_lead(&lead).await.unwrap();
        id
    }

    fn worker(&self, config: WorkerConfig, mailer: Option<beckon_outbox::email::Mailer>) -> Worker {
        Worker::new(
            self.store.clone(),
            self.store.clone(),
            mailer,
            Arc::new(now),
            config,
        )
    }

    fn start(&self, config: WorkerConfig, mailer: Option<beckon_outbox::email::Mailer>) -> Running {
        let worker = self.worker(config, mailer);
        Running(tokio::spawn(worker.run()))
    }

    async fn deliveries(&self) -> Vec<beckon_store::outbox::Delivery> {
        self.store
            .deliveries(&self.site, &DeliveryQuery::default())
            .await
            .unwrap()
    }

    async fn wait_settled(&self, n: usize) -> Vec<beckon_store::outbox::Delivery> {
        let began = std::time::Instant::now();
        loop {
            let all = self.deliveries().await;
            if all.len() >= n && all.iter().all(|d| d.status != DeliveryStatus::Pending) {
                return all;
            }
            assert!(began.elapsed() < WAIT, "deliveries still pending: {all:#?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A worker that retries quickly: the standard schedule's shape, in milliseconds.
fn quick() -> WorkerConfig {
    WorkerConfig {
        poll: Duration::from_millis(20),
        schedule: vec![Duration::from_millis(50); 9],
        timeout: Duration::from_secs(5),
        // The receivers run on this machine.
        allow_private: true,
        ..WorkerConfig::default()
    }
}

fn by_id(records: &[Value]) -> HashMap<String, Vec<&Value>> {
    let mut map: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in records {
        map.entry(r["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(r);
    }
    map
}

#[tokio::test]
async fn every_delivery_is_signed_as_the_reference_library_verifies_even_during_a_rotation() {
    let world = World::new().await;
    let plain = beckon_outbox::new_secret();
    let old = beckon_outbox::new_secret();
    let new = beckon_outbox::new_secret();
    // The receiver knows the plain endpoint's secret and the rotating one's old secret only.
    let receiver = Peer::webhook_receiver(&[&plain, &old]);
    world
        .destination(
            "CRM",
            Target::Webhook {
                url: receiver.url("/ok"),
                secret: plain.clone(),
                previous: None,
            },
            &[Topic::LeadCreated],
        )
        .await;
    world
        .destination(
            "Rotating",
            Target::Webhook {
                url: receiver.url("/ok"),
                secret: new.clone(),
                previous: Some(PreviousSecret {
                    secret: old.clone(),
                    until: now().plus_ms(3_600_000),
                }),
            },
            &[Topic::LeadCreated],
        )
        .await;
    let lead = world.lead("ada@example.com", "en").await;
    let _worker = world.start(quick(), None);
    let records = receiver.wait_for(WAIT, |r| r.len() >= 2).await;
    assert_eq!(records.len(), 2);
    let mut sigs: Vec<usize> = records
        .iter()
        .map(|r| {
            assert_eq!(r["status"], 200, "verified by standardwebhooks: {r}");
            r["signatures"].as_array().unwrap().len()
        })
        .collect();
    sigs.sort_unstable();
    assert_eq!(sigs, vec![1, 2], "both secrets sign during the rotation");
    let rotating = records
        .iter()
        .find(|r| r["signatures"].as_array().unwrap().len() == 2);
    assert_eq!(rotating.unwrap()["verified_by"], 1, "by the old secret");
    for r in &records {
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["type"], "lead.created");
        assert_eq!(body["data"]["lead"]["id"], lead.as_str());
        assert_eq!(body["data"]["lead"]["email"], "ada@example.com");
        assert_eq!(
            body["data"]["lead"]["consent"]["text"],
            "I agree to be contacted about my request."
        );
        assert_eq!(body["data"]["lead"]["context"]["rule"], "article-capture");
        assert_eq!(
            body["data"]["lead"]["context"]["visit"]["pages"][0]["path"],
            "/blog/lamps"
        );
        assert!(r["id"].as_str().unwrap().starts_with("msg_"));
    }
    let settled = world.wait_settled(2).await;
    assert!(
        settled
            .iter()
            .all(|d| d.status == DeliveryStatus::Delivered)
    );

    // A receiver that knows neither secret refuses (the library really checks).
    let stranger = Peer::webhook_receiver(&[&beckon_outbox::new_secret()]);
    world
        .destination(
            "Stranger",
            Target::Webhook {
                url: stranger.url("/ok"),
                secret: plain,
                previous: None,
            },
            &[Topic::LeadCreated],
        )
        .await;
    world.lead("bo@example.com", "en").await;
    let refused = stranger.wait_for(WAIT, |r| !r.is_empty()).await;
    assert_eq!(refused[0]["status"], 401);
    assert_eq!(refused[0]["verified_by"], Value::Null);
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_then_recovers_gets_every_delivery_exactly_once() {
    let world = World::new().await;
    let secret = beckon_outbox::new_secret();
    let receiver = Peer::webhook_receiver(&[&secret]);
    world
        .destination(
            "Flaky",
            Target::Webhook {
                url: receiver.url("/flaky/3"),
                secret,
                previous: None,
            },
            &[Topic::LeadCreated],
        )
        .await;
    let mut leads = Vec::new();
    for n in 0..20 {
        leads.push(world.lead(&format!("lead{n}@example.com"), "en").await);
    }
    let _worker = world.start(quick(), None);
    let settled = world.wait_settled(20).await;
    assert!(
        settled
            .iter()
            .all(|d| d.status == DeliveryStatus::Delivered && d.attempts == 4)
    );
    let records = receiver.records();
    let ids = by_id(&records);
    assert_eq!(ids.len(), 20, "one id per delivery");
    for (id, tries) in &ids {
        let statuses: Vec<_> = tries
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, vec![500, 500, 500, 200], "{id}");
        assert!(
            tries.iter().all(|r| r["body"] == tries[0]["body"]),
            "every try sends the same bytes"
        );
    }
    // Exactly once by idempotency key: one success per lead, and every lead there.
    let mut delivered: Vec<String> = records
        .iter()
        .filter(|r| r["status"] == 200)
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            body["data"]["lead"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    delivered.sort();
    let mut expected: Vec<String> = leads.iter().map(|l| l.to_string()).collect();
    expected.sort();
    assert_eq!(delivered, expected);
    // Every try is in the history.
    let (_, tries) = world
        .store
        .delivery(&world.site, &settled[0].id)
        .await
        .unwrap()
        .unwrap();
    let statuses: Vec<_> = tries.iter().map(|t| t.status).collect();
    assert_eq!(statuses, vec![Some(500), Some(500), Some(500), Some(200)]);
}

#[tokio::test]
async fn a_receiver_that_answers_410_turns_its_endpoint_off() {
    let world = World::new().await;
    let secret = beckon_outbox::new_secret();
    let receiver = Peer::webhook_receiver(&[&secret]);
    let gone = world
        .destination(
            "Old CRM",
            Target::Webhook {
                url: receiver.url("/gone"),
                secret,
                previous: None,
            },
            &[Topic::LeadCreated],
        )
        .await;
    world.lead("ada@example.com", "en").await;
    let worker = world.worker(quick(), None);
    assert_eq!(worker.once().await.unwrap(), 1);
    let d = world
        .store
        .destination(&world.site, &gone)
        .await
        .unwrap()
        .unwrap();
    assert!(!d.enabled);
    assert!(
        d.disabled_reason.as_deref().unwrap().contains("410"),
        "{d:?}"
    );
    let all = world.deliveries().await;
    assert_eq!(all[0].status, DeliveryStatus::Dead);
    // Nothing more is sent to it: a turned-off endpoint takes no new deliveries.
    let later = world.lead("bo@example.com", "en").await;
    assert_eq!(worker.once().await.unwrap(), 0);
    assert_eq!(receiver.records().len(), 1);
    let all = world.deliveries().await;
    assert!(
        all.iter().all(|d| d.lead.as_ref() != Some(&later)),
        "{all:?}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_hanging_receiver_times_out() {
    let world = World::new().await;
    let secret = beckon_outbox::new_secret();
    let receiver = Peer::webhook_receiver(&[&secret]);
    world
        .destination(
            "Throttled",
            Target::Webhook {
                url: receiver.url("/throttle/2"),
                secret: secret.clone(),
                previous: None,
            },
            &[Topic::LeadCreated],
        )
        .await;
    world.lead("ada@example.com", "en").await;
    let _worker = world.start(quick(), None);
    let records = receiver.wait_for(WAIT, |r| r.len() >= 2).await;
    assert_eq!(records[0]["status"], 429);
    assert_eq!(records[1]["status"], 200);
    let gap =
        records[1]["received_at"].as_f64().unwrap() - records[0]["received_at"].as_f64().unwrap();
    // The schedule alone would have come back after 50 ms.
    assert!(
        gap >= 1.9,
        "came back after {gap:.3} s, not after Retry-After: 2"
    );
    drop(_worker);

    let slow_world = World::new().await;
    slow_world
        .destination(
            "Hanging",
            Target::Webhook {
                url: receiver.url("/slow/5"),
                secret,
                previous: None,
            },
            &[Topic::LeadCreated],
        )
        .await;
    slow_world.lead("bo@example.com", "en").await;
    let worker = slow_world.worker(
        WorkerConfig {
            timeout: Duration::from_millis(300),
            ..quick()
        },
        None,
    );
    assert_eq!(worker.once().await.unwrap(), 1);
    let d = &slow_world.deliveries().await[0];
    assert_eq!(d.status, DeliveryStatus::Pending, "to be tried again");
    assert_eq!(d.last_error.as_deref(), Some("timed out"));
}

#[tokio::test]
async fn e_mail_reaches_a_real_smtp_server_for_the_team_and_the_visitor_in_their_language() {
    let world = World::new().await;
    let smtp = Peer::smtp();
    let mailer = beckon_outbox::email::Mailer::new(&beckon_outbox::email::SmtpSettings {
        host: "127.0.0.1".to_owned(),
        port: smtp.port,
        tls: beckon_outbox::email::SmtpTls::None,
        username: None,
        password: None,
        from: "Northwind leads <leads@northwind.example>".to_owned(),
        timeout_secs: 5,
    })
    .unwrap();
    world
        .destination(
            "Sales team",
            Target::Email {
                to: vec!["sales@northwind.example".to_owned()],
                confirm_visitor: true,
            },
            &[Topic::LeadCreated],
        )
        .await;
    let lead = world.lead("ada@example.com", "fr").await;
    let _worker = world.start(quick(), Some(mailer));
    let mail = smtp.wait_for(WAIT, |r| r.len() >= 2).await;
    let team = mail
        .iter()
        .find(|m| m["rcpt_tos"][0] == "sales@northwind.example")
        .expect("the team's mail");
    assert_eq!(team["mail_from"], "leads@northwind.example");
    assert_eq!(
        team["headers"]["From"],
        "Northwind leads <leads@northwind.example>"
    );
    assert_eq!(team["headers"]["To"], "sales@northwind.example");
    assert_eq!(team["headers"]["Subject"], "New lead: ada@example.com");
    let body = team["body"].as_str().unwrap();
    assert!(
        body.contains("ada@example.com (Ada) left their address on shop."),
        "{body}"
    );
    assert!(body.contains("Do you ship to Canada?"));
    assert!(body.contains("Page: /blog/lamps"));
    assert!(body.contains(lead.as_str()));
    let visitor = mail
        .iter()
        .find(|m| m["rcpt_tos"][0] == "ada@example.com")
        .expect("the visitor's confirmation");
    assert_eq!(
        visitor["headers"]["Subject"],
        "Nous avons bien reçu votre message"
    );
    assert!(
        visitor["body"]
            .as_str()
            .unwrap()
            .starts_with("Bonjour Ada,")
    );
    world.wait_settled(2).await;

    // A permanent refusal (550) is not retried for three days: the delivery dies at once.
    world.lead("nobody@refused.example", "en").await;
    let all = world.wait_settled(4).await;
    let refused = all
        .iter()
        .find(|d| d.to_visitor && d.status == DeliveryStatus::Dead)
        .expect("the refused confirmation");
    assert_eq!(refused.attempts, 1);
    assert!(
        refused.last_error.as_deref().unwrap().contains("550"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_lead_nobody_contacted_in_time_alerts_the_team_chat_once() {
    let world = World::new().await;
    let chat = Peer::webhook_receiver(&[]);
    world
        .store
        .put_lead_settings(
            &world.site,
            &LeadSettings {
                follow_up_minutes: 0,
                wording: Vec::new(),
            },
        )
        .await
        .unwrap();
    world
        .destination(
            "Team chat",
            Target::Slack {
                url: chat.url("/plain"),
            },
            &[Topic::LeadCreated, Topic::LeadOverdue],
        )
        .await;
    world.lead("ada@example.com", "en").await;
    let _worker = world.start(
        WorkerConfig {
            overdue_every: Duration::from_millis(50),
            ..quick()
        },
        None,
    );
    let records = chat.wait_for(WAIT, |r| r.len() >= 2).await;
    let texts: Vec<String> = records
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            body["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("New lead: *ada@example.com* (Ada) on /blog/lamps")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Nobody has contacted *ada@example.com*")),
        "{texts:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(chat.records().len(), 2, "the overdue alert is raised once");
}

#[tokio::test]
async fn unless_the_operator_allows_them_private_addresses_are_refused_at_sending() {
    let world = World::new().await;
    let secret = beckon_outbox::new_secret();
    let receiver = Peer::webhook_receiver(&[&secret]);
    // Saved directly (as before the operator's rule changed): the worker checks again.
    world
        .destination(
            "Inside",
            Target::Webhook {
                url: receiver.url("/ok"),
                secret,
                previous: None,
            },
            &[Topic::LeadCreated],
        )
        .await;
    world.lead("ada@example.com", "en").await;
    let worker = world.worker(
        WorkerConfig {
            allow_private: false,
            ..quick()
        },
        None,
    );
    assert_eq!(worker.once().await.unwrap(), 1);
    let d = &world.deliveries().await[0];
    assert_eq!(d.status, DeliveryStatus::Dead);
    assert!(
        d.last_error.as_deref().unwrap().contains("private"),
        "{d:?}"
    );
    assert!(
        receiver.records().is_empty(),
        "nothing reached the machine's own network"
    );
}
