//! The leads and outbox story, told by PostgreSQL, and what several nodes sharing one database
//! add to it: two nodes' workers never claim the same delivery, and two nodes' sweeps never
//! announce the same overdue lead twice.

use std::collections::HashSet;
use std::sync::Arc;

use beckon_engine::{Policy, SiteId, Timestamp};
use beckon_store::leads::{
    AnnounceOverdue, Consent, Lead, LeadChange, LeadContext, LeadId, LeadQuery, LeadSettings,
    LeadSource, LeadStatus, Leads, NewLead,
};
use beckon_store::outbox::{
    DeliveryId, DeliveryQuery, Destination, DestinationId, NewEvent, Outbox, Target, Topic,
};
use beckon_store::{SecretDigest, SiteRecord, Store, StoreError};
use beckon_store_postgres::PgStore;
use beckon_store_postgres::testing::Scratch;
use tokio::sync::Barrier;

#[tokio::test]
async fn postgres_passes_the_outbox_suite() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    beckon_store::outbox_suite::run_all(&store, &store, &store).await;
    scratch.drop().await;
}

/// How many leads the two-node stories capture.
const LEADS: u32 = 100;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_780_000_000_000 + ms)
}

async fn new_site(store: &PgStore, key: &str) -> SiteId {
    let id = SiteId::parse(key).unwrap();
    store
        .put_site(&SiteRecord {
            id: id.clone(),
            secret: SecretDigest::of("sk"),
            origins: vec![],
            policy: Policy::default(),
            version: 0,
        })
        .await
        .unwrap();
    id
}

fn webhook(site: &SiteId, n: u32, topics: &[Topic]) -> Destination {
    Destination {
        id: DestinationId::parse(&format!("d_{n:0>16}")).unwrap(),
        site: site.clone(),
        name: format!("CRM {n}"),
        target: Target::Webhook {
            url: format!("https://crm.example/hook/{n}"),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            previous: None,
        },
        topics: topics.to_vec(),
        enabled: true,
        disabled_reason: None,
        created_at: at(0),
    }
}

/// Captures lead `n` at `ms`, announced as new.
async fn capture(store: &PgStore, site: &SiteId, n: u32, email: &str, ms: i64) -> Lead {
    let id = LeadId::parse(&format!("l_{n:0>20}")).unwrap();
    store
        .capture_lead(&NewLead {
            announce: vec![NewEvent {
                topic: Topic::LeadCreated,
                payload: format!(r#"{{"type":"lead.created","data":{{"id":"{id}"}}}}"#),
                lead: Some(id.clone()),
            }],
            id,
            site: site.clone(),
            visitor: None,
            email: email.to_owned(),
            name: String::new(),
            question: String::new(),
            consent: Consent {
                text: "I agree to be contacted.".to_owned(),
                at: at(ms),
            },
            source: LeadSource::Api,
            context: LeadContext::default(),
            at: at(ms),
        })
        .await
        .unwrap()
}

/// A site with two webhooks that take new and overdue leads, and [`LEADS`] leads captured at
/// 0 ms (so two deliveries each, due at once).
async fn site_with_leads(store: &PgStore) -> SiteId {
    let site = new_site(store, "two-nodes").await;
    for n in 1..=2 {
        let topics = [Topic::LeadCreated, Topic::LeadOverdue];
        store
            .put_destination(&webhook(&site, n, &topics))
            .await
            .unwrap();
    }
    for n in 1..=LEADS {
        capture(store, &site, n, &format!("lead{n}@example.com"), 0).await;
    }
    site
}

fn everything() -> DeliveryQuery {
    DeliveryQuery {
        limit: 1000,
        ..DeliveryQuery::default()
    }
}

/// Two nodes, each with two workers, claim in small batches at the same time until nothing is
/// left: every delivery is claimed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_claim_the_same_delivery() {
    let scratch = Scratch::new().await;
    let one = Arc::new(scratch.migrated().await);
    let two = Arc::new(scratch.store().await);
    let site = site_with_leads(&one).await;
    let all: HashSet<DeliveryId> = one
        .deliveries(&site, &everything())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(all.len(), 2 * LEADS as usize);

    // Every worker starts at the same moment; leases outlast the test, so nothing claimed is
    // due again.
    let workers = [
        (&one, "one/a"),
        (&one, "one/b"),
        (&two, "two/a"),
        (&two, "two/b"),
    ];
    let start = Arc::new(Barrier::new(workers.len()));
    let mut running = Vec::new();
    for (store, name) in workers {
        let (store, start) = (Arc::clone(store), Arc::clone(&start));
        running.push(tokio::spawn(async move {
            start.wait().await;
            let mut claimed = Vec::new();
            loop {
                let batch = store.claim(name, at(0), at(3_600_000), 7).await.unwrap();
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(batch.into_iter().map(|c| c.delivery.id));
            }
        }));
    }
    let mut by_node = [Vec::new(), Vec::new()];
    for (i, worker) in running.into_iter().enumerate() {
        by_node[i / 2].extend(worker.await.unwrap());
    }
    // A worker stops at its first empty claim, which may come while the last ones are
    // locked by another worker that then finds them taken: whatever is left is claimed now.
    let rest = one
        .claim("one/a", at(0), at(3_600_000), 1000)
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for id in by_node
        .iter()
        .flatten()
        .chain(rest.iter().map(|c| &c.delivery.id))
    {
        assert!(seen.insert(id.clone()), "{id} was claimed twice");
    }
    assert_eq!(seen, all, "every delivery was claimed");
    assert!(
        by_node.iter().all(|claimed| !claimed.is_empty()),
        "both nodes claimed some ({} and {}): the claims ran side by side",
        by_node[0].len(),
        by_node[1].len()
    );
    scratch.drop().await;
}

struct Overdue;

impl AnnounceOverdue for Overdue {
    fn announce(&self, lead: &Lead) -> NewEvent {
        NewEvent {
            topic: Topic::LeadOverdue,
            payload: format!(r#"{{"type":"lead.overdue","data":{{"id":"{}"}}}}"#, lead.id),
            lead: Some(lead.id.clone()),
        }
    }
}

/// Two nodes, each with two sweepers, take overdue leads in small batches at the same time:
/// every lead is taken, and announced, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_sweeping_at_once_announce_each_overdue_lead_once() {
    let scratch = Scratch::new().await;
    let one = Arc::new(scratch.migrated().await);
    let two = Arc::new(scratch.store().await);
    let site = site_with_leads(&one).await;
    // Past the default limit; small batches, so that the sweeps interleave.
    let late = at(24 * 3_600_000);
    let sweepers = [&one, &one, &two, &two];
    let start = Arc::new(Barrier::new(sweepers.len()));
    let mut running = Vec::new();
    for store in sweepers {
        let (store, start) = (Arc::clone(store), Arc::clone(&start));
        running.push(tokio::spawn(async move {
            start.wait().await;
            let mut taken = Vec::new();
            loop {
                let batch = store.take_overdue(late, 5, &Overdue).await.unwrap();
                if batch.is_empty() {
                    return taken;
                }
                taken.extend(batch.into_iter().map(|l| l.id));
            }
        }));
    }
    let mut taken = Vec::new();
    for sweeper in running {
        taken.extend(sweeper.await.unwrap());
    }
    taken.extend(
        one.take_overdue(late, 1000, &Overdue)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id),
    );
    let unique: HashSet<&LeadId> = taken.iter().collect();
    assert_eq!(unique.len(), taken.len(), "a lead was taken twice");
    assert_eq!(taken.len(), LEADS as usize, "every lead was taken");
    let alerts = one
        .deliveries(&site, &everything())
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.topic == Topic::LeadOverdue)
        .count();
    assert_eq!(alerts, 2 * LEADS as usize, "one alert per lead and webhook");
    scratch.drop().await;
}

/// What the suite never calls, the dashboard does: the filters of the lead list, the test
/// button (`enqueue_to`), `enqueue`, a delivery list by destination, and a site that does not
/// exist.
#[tokio::test]
async fn the_dashboards_filters_and_test_button_work() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    let site = new_site(&store, "dashboard").await;
    let crm = webhook(&site, 1, &[Topic::LeadCreated]);
    store.put_destination(&crm).await.unwrap();
    let ada = capture(&store, &site, 1, "Ada@Example.com", 1_000).await;
    let bo = capture(&store, &site, 2, "bo@example.com", 2_000).await;
    let cy = capture(&store, &site, 3, "cy@example.com", 3_000).await;
    let contacted = LeadChange {
        status: Some(LeadStatus::Contacted),
        owner: None,
    };
    store
        .change_lead(&site, &bo.id, &contacted, at(2_500), &[])
        .await
        .unwrap();

    let ids = |leads: Vec<Lead>| leads.into_iter().map(|l| l.id).collect::<Vec<_>>();
    let list = |q: LeadQuery| {
        let (store, site) = (&store, &site);
        async move { ids(store.leads(site, &q).await.unwrap()) }
    };
    // The search ignores case, as SQLite's LIKE does.
    let search = |text: &str| LeadQuery {
        text: Some(text.to_owned()),
        ..LeadQuery::default()
    };
    assert_eq!(list(search("ada@EXAMPLE")).await, vec![ada.id.clone()]);
    assert_eq!(list(search("  ")).await.len(), 3, "blank text: no filter");
    let status = LeadQuery {
        status: Some(LeadStatus::New),
        ..LeadQuery::default()
    };
    assert_eq!(list(status).await, vec![cy.id.clone(), ada.id.clone()]);
    let waiting = LeadQuery {
        new_before: Some(at(3_000)),
        ..LeadQuery::default()
    };
    assert_eq!(list(waiting).await, vec![ada.id.clone()]);
    let range = LeadQuery {
        from: Some(at(2_000)),
        to: Some(at(3_000)),
        ..LeadQuery::default()
    };
    assert_eq!(list(range).await, vec![bo.id.clone()]);
    let page = LeadQuery {
        limit: 1,
        offset: 1,
        ..LeadQuery::default()
    };
    assert_eq!(list(page).await, vec![bo.id.clone()]);

    // The test button sends to a destination whatever it takes; `enqueue` to those that
    // take the topic.
    let sample = NewEvent {
        topic: Topic::TestSample,
        payload: r#"{"type":"test.sample"}"#.to_owned(),
        lead: None,
    };
    let tried = store
        .enqueue_to(&site, &crm.id, &sample, at(4_000))
        .await
        .unwrap();
    let elsewhere = new_site(&store, "elsewhere").await;
    assert!(matches!(
        store
            .enqueue_to(&elsewhere, &crm.id, &sample, at(4_000))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .enqueue(&site, std::slice::from_ref(&sample), at(4_000))
            .await
            .unwrap()
            .is_empty(),
        "no destination takes test samples"
    );
    let created = NewEvent {
        topic: Topic::LeadCreated,
        ..sample
    };
    let enqueued = store.enqueue(&site, &[created], at(5_000)).await.unwrap();
    assert_eq!(enqueued.len(), 1);
    let to_crm = store
        .deliveries(
            &site,
            &DeliveryQuery {
                destination: Some(crm.id.clone()),
                ..DeliveryQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        to_crm.len(),
        5,
        "three leads, the sample, the enqueued event"
    );
    assert_eq!(to_crm[0].id, enqueued[0], "newest first");
    assert!(
        to_crm
            .iter()
            .any(|d| d.id == tried && d.topic == Topic::TestSample)
    );
    let other = DeliveryQuery {
        destination: Some(DestinationId::parse("d_0000000000000099").unwrap()),
        ..DeliveryQuery::default()
    };
    assert!(store.deliveries(&site, &other).await.unwrap().is_empty());

    let nowhere = SiteId::parse("nowhere").unwrap();
    assert!(matches!(
        store.put_destination(&webhook(&nowhere, 2, &[])).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .put_lead_settings(&nowhere, &LeadSettings::default())
            .await,
        Err(StoreError::NotFound(_))
    ));
    scratch.drop().await;
}
