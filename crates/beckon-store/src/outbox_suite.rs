//! The leads and outbox story every backend must tell: a lead is written with its deliveries
//! or not at all, a delivery is held by one worker at a time, and every try is kept.

use beckon_engine::{Policy, SiteId, Timestamp, VisitorId};

use crate::leads::{
    AnnounceOverdue, Consent, Lead, LeadChange, LeadContext, LeadId, LeadQuery, LeadSettings,
    LeadSource, LeadStatus, Leads, NewLead,
};
use crate::outbox::{
    Attempt, Claimed, DeliveryQuery, DeliveryStatus, Destination, DestinationId, NewEvent, Outbox,
    Settle, Settlement, Target, Topic,
};
use crate::{SecretDigest, SiteRecord, Store, StoreError, WriteBatch};

/// Runs every story.
pub async fn run_all(store: &dyn Store, leads: &dyn Leads, outbox: &dyn Outbox) {
    let a = site(store, "outbox-a").await;
    let b = site(store, "outbox-b").await;
    destinations_belong_to_their_site(outbox, &a, &b).await;
    a_lead_fans_out_to_the_destinations_that_take_it(leads, outbox, &a).await;
    a_claimed_delivery_is_held_by_one_worker_until_its_lease_ends(leads, outbox, &b).await;
    tries_are_kept_and_the_dead_can_be_replayed(leads, outbox, &a).await;
    a_gone_endpoint_is_turned_off(leads, outbox, &a).await;
    leads_are_searched_followed_up_and_announced_overdue_once(leads, outbox, &a, &b).await;
    a_commit_writes_its_leads_with_it(store, leads, outbox).await;
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_780_000_000_000 + ms)
}

async fn site(store: &dyn Store, key: &str) -> SiteId {
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
        created_at: at(n as i64),
    }
}

fn new_lead(site: &SiteId, n: u32, email: &str, ms: i64) -> NewLead {
    let id = LeadId::parse(&format!("l_{n:0>20}")).unwrap();
    NewLead {
        announce: vec![NewEvent {
            topic: Topic::LeadCreated,
            payload: format!(r#"{{"type":"lead.created","data":{{"id":"{id}"}}}}"#),
            lead: Some(id.clone()),
        }],
        id,
        site: site.clone(),
        visitor: Some(VisitorId::parse(&format!("v_{n:0>20}")).unwrap()),
        email: email.to_owned(),
        name: "Ada".to_owned(),
        question: format!("Question {n}: 100% cotton?"),
        consent: Consent {
            text: "I agree to be contacted.".to_owned(),
            at: at(ms),
        },
        source: LeadSource::Capture,
        context: LeadContext {
            rule: Some("article-capture".to_owned()),
            ..LeadContext::default()
        },
        at: at(ms),
    }
}

/// Settles one claimed delivery; whether the claim still held.
async fn settle(outbox: &dyn Outbox, claimed: &Claimed, s: &Settlement) -> bool {
    let done = outbox
        .settle(&[Settle {
            id: claimed.delivery.id.clone(),
            lease: claimed.lease.clone(),
            settlement: s.clone(),
        }])
        .await
        .unwrap();
    done[0]
}

fn tried(ms: i64, status: Option<u16>, error: Option<&str>) -> Attempt {
    Attempt {
        at: at(ms),
        status,
        error: error.map(str::to_owned),
        took_ms: 12,
    }
}

async fn destinations_belong_to_their_site(outbox: &dyn Outbox, a: &SiteId, b: &SiteId) {
    let d = webhook(a, 1, &[Topic::LeadCreated]);
    outbox.put_destination(&d).await.unwrap();
    assert_eq!(outbox.destinations(a).await.unwrap(), vec![d.clone()]);
    assert!(outbox.destinations(b).await.unwrap().is_empty());
    assert_eq!(outbox.destination(b, &d.id).await.unwrap(), None);
    // Another site cannot take it over by its id.
    let stolen = Destination {
        site: b.clone(),
        ..d.clone()
    };
    assert!(matches!(
        outbox.put_destination(&stolen).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        outbox.delete_destination(b, &d.id, at(0)).await,
        Err(StoreError::NotFound(_))
    ));
    // Replacing keeps its id.
    let renamed = Destination {
        name: "Renamed".to_owned(),
        ..d.clone()
    };
    outbox.put_destination(&renamed).await.unwrap();
    assert_eq!(outbox.destination(a, &d.id).await.unwrap(), Some(renamed));
}

async fn a_lead_fans_out_to_the_destinations_that_take_it(
    leads: &dyn Leads,
    outbox: &dyn Outbox,
    a: &SiteId,
) {
    let conversations_only = webhook(a, 2, &[Topic::ConversationClosed]);
    outbox.put_destination(&conversations_only).await.unwrap();
    let mut off = webhook(a, 3, &[Topic::LeadCreated]);
    off.enabled = false;
    outbox.put_destination(&off).await.unwrap();
    let team = Destination {
        id: DestinationId::parse("d_0000000000000004").unwrap(),
        name: "Team mail".to_owned(),
        target: Target::Email {
            to: vec!["sales@shop.example".to_owned()],
            confirm_visitor: true,
        },
        ..webhook(a, 4, &[Topic::LeadCreated])
    };
    outbox.put_destination(&team).await.unwrap();

    let lead = leads
        .capture_lead(&new_lead(a, 1, "ada@example.com", 100))
        .await
        .unwrap();
    assert_eq!(lead.status, LeadStatus::New);
    assert_eq!(lead.consent.text, "I agree to be contacted.");
    // Capturing the same lead again writes nothing.
    assert!(matches!(
        leads
            .capture_lead(&new_lead(a, 1, "other@example.com", 100))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let mut sent = outbox
        .deliveries(
            a,
            &DeliveryQuery {
                lead: Some(lead.id.clone()),
                ..DeliveryQuery::default()
            },
        )
        .await
        .unwrap();
    sent.sort_by_key(|d| (d.destination.clone(), d.to_visitor));
    let to: Vec<_> = sent
        .iter()
        .map(|d| (d.destination.as_str().to_owned(), d.to_visitor))
        .collect();
    // The first webhook, and the team's e-mail twice (the team's copy, the visitor's).
    assert_eq!(
        to,
        vec![
            ("d_0000000000000001".to_owned(), false),
            ("d_0000000000000004".to_owned(), false),
            ("d_0000000000000004".to_owned(), true),
        ]
    );
    assert!(sent.iter().all(|d| d.status == DeliveryStatus::Pending
        && d.attempts == 0
        && d.payload.contains(lead.id.as_str())));
    // Claim them all (and keep the store clean for the next stories).
    let claimed = outbox
        .claim("w1", at(100), at(100 + 60_000), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let to_visitor = claimed.iter().find(|c| c.delivery.to_visitor).unwrap();
    assert_eq!(to_visitor.visitor_email.as_deref(), Some("ada@example.com"));
    // Settled all at once, in one transaction.
    let done = Settlement::Delivered(tried(150, Some(200), None));
    let batch: Vec<_> = claimed
        .iter()
        .map(|c| Settle {
            id: c.delivery.id.clone(),
            lease: c.lease.clone(),
            settlement: done.clone(),
        })
        .collect();
    assert_eq!(outbox.settle(&batch).await.unwrap(), vec![true; 3]);
    for d in [&conversations_only, &team] {
        outbox.delete_destination(a, &d.id, at(200)).await.unwrap();
    }
}

async fn a_claimed_delivery_is_held_by_one_worker_until_its_lease_ends(
    leads: &dyn Leads,
    outbox: &dyn Outbox,
    b: &SiteId,
) {
    outbox
        .put_destination(&webhook(b, 5, &[Topic::LeadCreated]))
        .await
        .unwrap();
    leads
        .capture_lead(&new_lead(b, 2, "bo@example.com", 1_000))
        .await
        .unwrap();
    // Not due before it was made.
    assert!(
        outbox
            .claim("w1", at(999), at(2_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let first = outbox.claim("w1", at(1_000), at(31_000), 10).await.unwrap();
    assert_eq!(first.len(), 1);
    let id = first[0].delivery.id.clone();
    // While w1 holds it, nobody else gets it.
    assert!(
        outbox
            .claim("w2", at(30_999), at(60_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(outbox.next_due().await.unwrap(), Some(at(31_000)));
    // w1 restarted: it takes back at once what it held.
    assert_eq!(outbox.release_leases("w1").await.unwrap(), 1);
    let back = outbox.claim("w1", at(1_001), at(31_000), 10).await.unwrap();
    assert_eq!(back.len(), 1);
    // w1 died: once its lease runs out, w2 takes it, and w1 can no longer settle it.
    let second = outbox
        .claim("w2", at(31_000), at(61_000), 10)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        second[0].delivery.id, id,
        "the same id: the idempotency key"
    );
    let late = Settlement::Delivered(tried(31_500, Some(200), None));
    // Neither w1's first run (before its restart) nor its second can settle w2's claim.
    assert!(!settle(outbox, &first[0], &late).await);
    assert!(!settle(outbox, &back[0], &late).await);
    // Nor can anyone replay it while w2 tries it.
    assert!(matches!(
        outbox.replay(b, &id, at(31_100)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(settle(outbox, &second[0], &late).await);
    let (d, tries) = outbox.delivery(b, &id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.delivered_at, Some(at(31_500)));
    assert_eq!(
        tries.len(),
        1,
        "the stale worker's settlement wrote nothing"
    );
    // Settled: never claimed again.
    assert!(
        outbox
            .claim("w3", at(99_000), at(99_999), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(outbox.next_due().await.unwrap(), None);
}

async fn tries_are_kept_and_the_dead_can_be_replayed(
    leads: &dyn Leads,
    outbox: &dyn Outbox,
    a: &SiteId,
) {
    leads
        .capture_lead(&new_lead(a, 3, "cy@example.com", 2_000))
        .await
        .unwrap();
    let claimed = outbox.claim("w", at(2_000), at(3_000), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let id = claimed[0].delivery.id.clone();
    let failed = Settlement::Failed {
        attempt: tried(2_010, Some(500), Some("HTTP 500")),
        next: Some(at(7_000)),
    };
    assert!(settle(outbox, &claimed[0], &failed).await);
    assert!(
        outbox
            .claim("w", at(6_999), at(9_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = outbox.claim("w", at(7_000), at(9_000), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.attempts, 1);
    let out_of_tries = Settlement::Failed {
        attempt: tried(7_010, None, Some("connection refused")),
        next: None,
    };
    assert!(settle(outbox, &again[0], &out_of_tries).await);
    let dead = outbox
        .deliveries(
            a,
            &DeliveryQuery {
                status: Some(DeliveryStatus::Dead),
                ..DeliveryQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.iter().map(|d| &d.id).collect::<Vec<_>>(), vec![&id]);
    assert_eq!(dead[0].last_error.as_deref(), Some("connection refused"));
    assert!(
        outbox
            .claim("w", at(99_000), at(99_999), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // By hand, from the dashboard: due at once, with a fresh set of tries.
    outbox.replay(a, &id, at(10_000)).await.unwrap();
    let replayed = outbox.claim("w", at(10_000), at(11_000), 10).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].delivery.attempts, 0);
    let ok = Settlement::Delivered(tried(10_010, Some(204), None));
    assert!(settle(outbox, &replayed[0], &ok).await);
    let (_, tries) = outbox.delivery(a, &id).await.unwrap().unwrap();
    let statuses: Vec<_> = tries.iter().map(|t| t.status).collect();
    assert_eq!(statuses, vec![Some(500), None, Some(204)]);
    // A delivered one is not replayed; another site's is not found.
    assert!(matches!(
        outbox.replay(a, &id, at(11_000)).await,
        Err(StoreError::Conflict(_))
    ));
    let b = SiteId::parse("outbox-b").unwrap();
    assert!(matches!(
        outbox.replay(&b, &id, at(11_000)).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(outbox.delivery(&b, &id).await.unwrap(), None);
}

async fn a_gone_endpoint_is_turned_off(leads: &dyn Leads, outbox: &dyn Outbox, a: &SiteId) {
    leads
        .capture_lead(&new_lead(a, 4, "di@example.com", 20_000))
        .await
        .unwrap();
    leads
        .capture_lead(&new_lead(a, 5, "ed@example.com", 20_001))
        .await
        .unwrap();
    let claimed = outbox.claim("w", at(20_001), at(21_000), 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "the limit holds");
    let gone = Settlement::Gone(tried(20_010, Some(410), Some("HTTP 410")));
    assert!(settle(outbox, &claimed[0], &gone).await);
    let d = outbox
        .destination(a, &claimed[0].destination.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!d.enabled);
    assert!(d.disabled_reason.clone().unwrap().contains("410"));
    // Its dead delivery cannot be replayed while the endpoint is off: it would never be tried.
    assert!(matches!(
        outbox.replay(a, &claimed[0].delivery.id, at(20_020)).await,
        Err(StoreError::Conflict(_))
    ));
    // The other lead's delivery waits, unclaimed, for the endpoint to be turned back on.
    assert!(
        outbox
            .claim("w", at(99_000), at(99_999), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(outbox.next_due().await.unwrap(), None);
    outbox
        .put_destination(&Destination {
            enabled: true,
            disabled_reason: None,
            ..d
        })
        .await
        .unwrap();
    let waiting = outbox.claim("w", at(99_000), at(99_999), 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    let ok = Settlement::Delivered(tried(99_010, Some(200), None));
    assert!(settle(outbox, &waiting[0], &ok).await);
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

async fn leads_are_searched_followed_up_and_announced_overdue_once(
    leads: &dyn Leads,
    outbox: &dyn Outbox,
    a: &SiteId,
    b: &SiteId,
) {
    let search = |text: &str| LeadQuery {
        text: Some(text.to_owned()),
        ..LeadQuery::default()
    };
    let found = leads.leads(a, &search("cy@exa")).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].email, "cy@example.com");
    // LIKE's own characters are taken literally.
    assert_eq!(leads.leads(a, &search("100%")).await.unwrap().len(), 4);
    assert!(leads.leads(a, &search("1_0")).await.unwrap().is_empty());
    assert!(leads.leads(b, &search("cy@")).await.unwrap().is_empty());
    let all = leads.leads(a, &LeadQuery::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|l| l.email.as_str()).collect::<Vec<_>>(),
        vec![
            "ed@example.com",
            "di@example.com",
            "cy@example.com",
            "ada@example.com"
        ],
        "newest first"
    );

    // Site a follows up within 10 minutes; site b keeps the default.
    let settings = LeadSettings {
        follow_up_minutes: 10,
        wording: Vec::new(),
    };
    leads.put_lead_settings(a, &settings).await.unwrap();
    assert_eq!(leads.lead_settings(a).await.unwrap(), settings);
    assert_eq!(
        leads.lead_settings(b).await.unwrap(),
        LeadSettings::default()
    );
    let ada = all.last().unwrap().id.clone();
    let changed = leads
        .change_lead(
            a,
            &ada,
            &LeadChange {
                status: Some(LeadStatus::Contacted),
                owner: Some(Some(7)),
            },
            at(60_000),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(changed.contacted_at, Some(at(60_000)));
    assert_eq!(changed.owner, Some(7));
    let won = leads
        .change_lead(
            a,
            &ada,
            &LeadChange {
                status: Some(LeadStatus::Won),
                owner: None,
            },
            at(90_000),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(won.contacted_at, Some(at(60_000)), "first contact is kept");
    assert_eq!(won.owner, Some(7));
    assert!(matches!(
        leads
            .change_lead(b, &ada, &LeadChange::default(), at(0), &[])
            .await,
        Err(StoreError::NotFound(_))
    ));

    let alerts = Destination {
        id: DestinationId::parse("d_0000000000000010").unwrap(),
        name: "Team chat".to_owned(),
        target: Target::Slack {
            url: "https://hooks.slack.example/T0/B0".to_owned(),
        },
        ..webhook(a, 10, &[Topic::LeadOverdue])
    };
    outbox.put_destination(&alerts).await.unwrap();
    let ten_minutes = 10 * 60_000;
    // The three still new on site a (captured at 2 s and 20 s): none overdue before 10 min.
    assert!(
        leads
            .take_overdue(at(2_000 + ten_minutes - 1), 10, &Overdue)
            .await
            .unwrap()
            .is_empty()
    );
    let overdue = leads
        .take_overdue(at(20_001 + ten_minutes), 10, &Overdue)
        .await
        .unwrap();
    let mut emails: Vec<_> = overdue.iter().map(|l| l.email.as_str()).collect();
    emails.sort_unstable();
    assert_eq!(
        emails,
        vec!["cy@example.com", "di@example.com", "ed@example.com"]
    );
    assert!(overdue.iter().all(|l| l.overdue_at.is_some()));
    assert!(
        leads
            .take_overdue(at(99 * ten_minutes), 10, &Overdue)
            .await
            .unwrap()
            .iter()
            .all(|l| l.site == *b),
        "each is announced once; site b's lead only once its own (default) limit passed"
    );
    let announced = outbox
        .deliveries(a, &DeliveryQuery::default())
        .await
        .unwrap();
    assert_eq!(
        announced
            .iter()
            .filter(|d| d.topic == Topic::LeadOverdue)
            .count(),
        3,
        "one alert per overdue lead, to the destination that takes them"
    );
    let figures = leads
        .lead_figures(a, at(0), at(10_000_000), at(99 * ten_minutes))
        .await
        .unwrap();
    assert_eq!(figures.captured, 4);
    assert_eq!(figures.contacted, 1);
    assert_eq!(figures.contacted_in_time, 1);
    assert_eq!(figures.won, 1);
    assert_eq!(figures.overdue, 3);
    assert_eq!(figures.median_contact_secs, Some(59));
    assert!((figures.follow_up_rate() - 0.25).abs() < 1e-9);
}

async fn a_commit_writes_its_leads_with_it(
    store: &dyn Store,
    leads: &dyn Leads,
    outbox: &dyn Outbox,
) {
    let c = site(store, "outbox-c").await;
    outbox
        .put_destination(&webhook(&c, 9, &[Topic::LeadCreated]))
        .await
        .unwrap();
    let lead = new_lead(&c, 9, "fi@example.com", 50_000);
    store
        .commit(&WriteBatch {
            leads: vec![lead.clone()],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let stored = leads.lead(&c, &lead.id).await.unwrap().unwrap();
    assert_eq!(stored.email, "fi@example.com");
    assert_eq!(stored.context.rule.as_deref(), Some("article-capture"));
    let sent = outbox
        .deliveries(&c, &DeliveryQuery::default())
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].lead.as_ref(), Some(&lead.id));
}
