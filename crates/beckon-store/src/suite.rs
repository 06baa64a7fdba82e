//! The story every storage backend must tell the same way. Each backend's tests call
//! [`run_all`] on a fresh database; a backend passes only if every chapter holds.
//!
//! Each chapter works on sites of its own, so chapters do not see each other's rows. Pruning is
//! not per site, so the chapters that prune come last, and the one that counts what pruning
//! removed logs its batches at instants before every other chapter's.

use beckon_engine::rules::RuleFile;
use beckon_engine::session::Arm;
use beckon_engine::{
    Engine, Event, EventId, Policy, Profile, RuleId, SessionId, SessionStart, SiteId, Timestamp,
    VisitorId,
};

use crate::{
    Applied, BatchContext, CommitReport, Exposure, Issued, LoggedBatch, LoggedEvent, SecretDigest,
    SessionRecord, SiteRecord, Source, Store, StoreError, Verdict, VisitBegin, VisitorWrite,
    WriteBatch,
};

/// Runs every chapter against `store`, which must be freshly migrated and empty.
pub async fn run_all(store: &dyn Store) {
    the_database_answers(store).await;
    the_server_key_is_made_once(store).await;
    sites_round_trip(store).await;
    versions_go_up_on_every_change_and_keep_what_was_in_force(store).await;
    rule_imports_replace_the_whole_set(store).await;
    the_log_round_trips_exactly(store).await;
    session_events_come_back_in_order(store).await;
    known_keys_are_per_visitor(store).await;
    a_decided_duplicate_fails_the_whole_commit(store).await;
    logged_duplicates_are_skipped(store).await;
    deferred_commits_are_commits(store).await;
    order_keys_are_unique_per_site(store).await;
    visitor_state_survives_a_restart(store).await;
    an_unchanged_profile_keeps_the_stored_one(store).await;
    repeated_visitors_in_one_commit_coalesce(store).await;
    a_failed_commit_leaves_nothing_behind(store).await;
    visitor_writes_are_fenced_by_the_version_they_were_built_on(store).await;
    active_visitors_are_found_by_recency(store).await;
    // Pruning is global: these come last (see the module header).
    pruning_is_bounded_and_keeps_orders_exposures_and_visitors(store).await;
    order_keys_survive_pruning(store).await;
}

/// Every chapter's instants are after this one, except the pruning chapter's.
const T0: i64 = 1_800_000_000_000;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + ms)
}

fn site(id: &str) -> SiteId {
    SiteId::parse(id).unwrap()
}

fn visitor(id: &str) -> VisitorId {
    VisitorId::parse(id).unwrap()
}

fn session_id(id: &str) -> SessionId {
    SessionId::parse(id).unwrap()
}

/// An event whose key is its id.
fn event(key: &str, applied: Applied) -> LoggedEvent {
    LoggedEvent {
        key: key.to_owned(),
        id: EventId::parse(key).unwrap(),
        kind: "activity".to_owned(),
        body: format!("{{\"id\":\"{key}\",\"type\":\"activity\"}}"),
        applied,
    }
}

/// A conversion with an order id: its key is `order:<id>`, its id the client's.
fn order_event(id: &str, order: &str, applied: Applied) -> LoggedEvent {
    LoggedEvent {
        key: format!("order:{order}"),
        id: EventId::parse(id).unwrap(),
        kind: "conversion".to_owned(),
        body: format!("{{\"id\":\"{id}\",\"type\":\"conversion\",\"order_id\":\"{order}\"}}"),
        applied,
    }
}

/// A plain browser batch: human, rule-set version 1, no visit start.
fn batch(
    s: &str,
    v: &str,
    session: &str,
    when: Timestamp,
    events: Vec<LoggedEvent>,
) -> LoggedBatch {
    LoggedBatch {
        site: site(s),
        visitor: visitor(v),
        session: Some(session_id(session)),
        at: when,
        source: Source::Browser,
        context: BatchContext::default(),
        verdict: Verdict::Human,
        rules_version: 1,
        begins: None,
        events,
    }
}

fn batches(batches: Vec<LoggedBatch>) -> WriteBatch {
    WriteBatch {
        batches,
        ..WriteBatch::default()
    }
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| (*k).to_owned()).collect()
}

async fn known(store: &dyn Store, s: &str, v: &str, asked: &[&str]) -> Vec<String> {
    let mut found = store
        .known_keys(&site(s), &visitor(v), &keys(asked))
        .await
        .unwrap();
    found.sort();
    found
}

fn profile(dismissals: u32) -> Profile {
    Profile {
        visits: 1 + dismissals,
        dismissals,
        ..Profile::default()
    }
}

/// A live session record for `v` on site `s`.
fn session_record(s: &str, v: &str, id: &str, now: Timestamp) -> SessionRecord {
    let engine = Engine::new(site(s), Policy::default(), Default::default()).unwrap();
    let mut p = Profile::default();
    SessionRecord {
        id: session_id(id),
        state: engine.start_session(visitor(v), SessionStart::default(), &mut p, now),
        ended: Vec::new(),
        issued: Vec::new(),
        bot: None,
    }
}

fn visitor_write(
    s: &str,
    v: &str,
    p: Option<Profile>,
    session: &str,
    when: Timestamp,
) -> VisitorWrite {
    VisitorWrite {
        site: site(s),
        visitor: visitor(v),
        profile: p,
        session: Some(session_record(s, v, session, when)),
        last_seen: when,
        expect: None,
    }
}

fn exposure(s: &str, v: &str, id: &str, when: Timestamp) -> Exposure {
    Exposure {
        id: id.to_owned(),
        site: site(s),
        visitor: visitor(v),
        session: session_id("s-x"),
        rule: RuleId::parse("r").unwrap(),
        arm: Arm::Treated,
        at: when,
        message: "{\"text\":\"hi\"}".to_owned(),
    }
}

async fn the_database_answers(store: &dyn Store) {
    store.ping().await.unwrap();
    // Nothing to write is not an error, and writes nothing.
    assert_eq!(
        store.commit(&WriteBatch::default()).await.unwrap(),
        CommitReport::default()
    );
}

async fn the_server_key_is_made_once(store: &dyn Store) {
    let first = store.server_key().await.unwrap();
    assert_ne!(first, [0; 32], "the key is random, not blank");
    for _ in 0..3 {
        assert_eq!(store.server_key().await.unwrap(), first);
    }
}

async fn sites_round_trip(store: &dyn Store) {
    let record = SiteRecord {
        id: site("suite-shop"),
        secret: SecretDigest::of("sk_test"),
        origins: vec!["https://shop.example".to_owned()],
        policy: Policy {
            max_per_session: 5,
            ..Policy::default()
        },
        version: 1,
    };
    store.put_site(&record).await.unwrap();
    let sites = store.sites().await.unwrap();
    assert_eq!(sites.iter().find(|s| s.id == record.id), Some(&record));
    // Replacing keeps one record.
    let changed = SiteRecord {
        secret: SecretDigest::of("sk_rotated"),
        ..record.clone()
    };
    store.put_site(&changed).await.unwrap();
    let sites = store.sites().await.unwrap();
    assert_eq!(sites.iter().filter(|s| s.id == record.id).count(), 1);
    let back = sites.iter().find(|s| s.id == record.id).unwrap();
    assert!(back.secret.matches("sk_rotated"));
    assert!(!back.secret.matches("sk_test"));
    assert_eq!(back.version, 2);
}

/// A site's version, as `site_versions` and `sites` both report it.
async fn current_version(store: &dyn Store, id: &SiteId) -> u64 {
    let versions = store.site_versions().await.unwrap();
    let current = versions.iter().find(|(s, _)| s == id).map(|(_, v)| *v);
    let from_sites = store
        .sites()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == *id)
        .map(|s| s.version);
    assert_eq!(current, from_sites, "site_versions agrees with sites");
    current.unwrap()
}

async fn versions_go_up_on_every_change_and_keep_what_was_in_force(store: &dyn Store) {
    let id = site("suite-versions");
    let first_policy = Policy::default();
    let record = SiteRecord {
        id: id.clone(),
        secret: SecretDigest::of("sk_1"),
        origins: vec!["*".to_owned()],
        policy: first_policy.clone(),
        // Ignored by put_site: the store sets it.
        version: 42,
    };
    store.put_site(&record).await.unwrap();
    assert_eq!(
        current_version(store, &id).await,
        1,
        "a new site starts at version 1"
    );
    store.put_site(&record).await.unwrap();
    assert_eq!(
        current_version(store, &id).await,
        1,
        "an identical record changes nothing"
    );

    let rotated = SiteRecord {
        secret: SecretDigest::of("sk_2"),
        ..record.clone()
    };
    store.put_site(&rotated).await.unwrap();
    assert_eq!(
        current_version(store, &id).await,
        2,
        "a new secret is a change"
    );

    let second_policy = Policy {
        max_per_session: 1,
        holdout_percent: 25.0,
        ..Policy::default()
    };
    let retuned = SiteRecord {
        policy: second_policy.clone(),
        ..rotated.clone()
    };
    store.put_site(&retuned).await.unwrap();
    assert_eq!(
        current_version(store, &id).await,
        3,
        "a new policy is a change"
    );

    let file: RuleFile = toml::from_str(include_str!("../../../examples/demo-rules.toml")).unwrap();
    store.replace_rules(&id, &file.rules).await.unwrap();
    assert_eq!(
        current_version(store, &id).await,
        4,
        "an import is a change"
    );

    let moved = SiteRecord {
        origins: vec!["https://shop.example".to_owned()],
        ..retuned.clone()
    };
    store.put_site(&moved).await.unwrap();
    assert_eq!(
        current_version(store, &id).await,
        5,
        "new origins are a change"
    );
    store.put_site(&moved).await.unwrap();
    assert_eq!(current_version(store, &id).await, 5);

    // Every version keeps the policy and rules that were in force then.
    let set = |v: u64| {
        let id = id.clone();
        async move { store.rule_set(&id, v).await.unwrap() }
    };
    let v1 = set(1).await.unwrap();
    assert_eq!((v1.version, &v1.policy), (1, &first_policy));
    assert!(v1.rules.is_empty());
    assert_eq!(set(2).await.unwrap().policy, first_policy);
    let v3 = set(3).await.unwrap();
    assert_eq!(v3.policy, second_policy);
    assert!(v3.rules.is_empty(), "the import came after version 3");
    let v4 = set(4).await.unwrap();
    assert_eq!((&v4.policy, &v4.rules), (&second_policy, &file.rules));
    let v5 = set(5).await.unwrap();
    assert_eq!(v5.rules, file.rules, "the rules carry over a site change");
    assert_eq!(store.rules(&id).await.unwrap(), file.rules);
    assert!(set(0).await.is_none());
    assert!(set(6).await.is_none());
    assert!(
        store
            .rule_set(&site("suite-nowhere"), 1)
            .await
            .unwrap()
            .is_none()
    );
}

async fn rule_imports_replace_the_whole_set(store: &dyn Store) {
    let file: RuleFile = toml::from_str(include_str!("../../../examples/demo-rules.toml")).unwrap();
    let s = site("suite-rules");
    for id in ["suite-rules", "suite-other"] {
        store
            .put_site(&SiteRecord {
                id: site(id),
                secret: SecretDigest::of("sk"),
                origins: vec!["*".to_owned()],
                policy: Policy::default(),
                version: 0,
            })
            .await
            .unwrap();
    }
    store.replace_rules(&s, &file.rules).await.unwrap();
    assert_eq!(store.rules(&s).await.unwrap(), file.rules);
    store.replace_rules(&s, &file.rules[..1]).await.unwrap();
    assert_eq!(store.rules(&s).await.unwrap(), file.rules[..1].to_vec());
    // Another site's rules are untouched by the import.
    assert!(store.rules(&site("suite-other")).await.unwrap().is_empty());
    // A site the store has never seen has no rules.
    assert!(
        store
            .rules(&site("suite-unknown"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_log_round_trips_exactly(store: &dyn Store) {
    let started = LoggedBatch {
        site: site("suite-log"),
        visitor: visitor("v1"),
        session: Some(session_id("s-log")),
        at: at(10),
        source: Source::Backend,
        context: BatchContext {
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120".to_owned(),
            language: Some("fr".to_owned()),
            tz_offset_minutes: -300,
        },
        verdict: Verdict::Bot {
            reason: "navigator.webdriver".to_owned(),
        },
        rules_version: 7,
        begins: Some(VisitBegin {
            start: SessionStart {
                bot: true,
                language: Some("fr".to_owned()),
                utc_offset_minutes: -300,
                ..SessionStart::default()
            },
            fresh_profile: true,
        }),
        events: vec![
            LoggedEvent {
                body: "{\"id\":\"e1\",\"name\":\"café ☕ \\\"quoted\\\"\"}".to_owned(),
                ..event("e1", Applied::Decided)
            },
            event("e2", Applied::Logged),
            event("e3", Applied::Refused("never issued: i-9".to_owned())),
        ],
    };
    let woke = LoggedBatch {
        session: None,
        at: at(11),
        source: Source::Timer,
        context: BatchContext::default(),
        verdict: Verdict::Human,
        rules_version: 8,
        begins: None,
        events: vec![event("tick-1", Applied::Decided)],
        ..started.clone()
    };
    let empty = LoggedBatch {
        events: Vec::new(),
        at: at(12),
        ..woke.clone()
    };
    let elsewhere = batch(
        "suite-log-other",
        "v1",
        "s-log",
        at(10),
        vec![event("e1", Applied::Decided)],
    );
    let report = store
        .commit(&batches(vec![
            started.clone(),
            elsewhere.clone(),
            woke.clone(),
            empty.clone(),
        ]))
        .await
        .unwrap();
    assert_eq!(
        report,
        CommitReport {
            inserted: 5,
            skipped: 0
        }
    );

    let log = store.log(&site("suite-log"), 0, 100).await.unwrap();
    let read: Vec<&LoggedBatch> = log.iter().map(|(_, b)| b).collect();
    assert_eq!(
        read,
        [&started, &woke, &empty],
        "another site's batch is not in this log"
    );
    assert!(log.windows(2).all(|w| w[0].0 < w[1].0), "positions rise");
    assert_eq!(
        store.log(&site("suite-log-other"), 0, 100).await.unwrap()[0].1,
        elsewhere
    );

    // Paging: `after` is exclusive, `limit` bounds the page.
    let first = store.log(&site("suite-log"), 0, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, started);
    let rest = store
        .log(&site("suite-log"), first[0].0, 100)
        .await
        .unwrap();
    assert_eq!(rest, log[1..].to_vec());
    let last = log.last().unwrap().0;
    assert!(
        store
            .log(&site("suite-log"), last, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .log(&site("suite-log"), 0, 0)
            .await
            .unwrap()
            .is_empty()
    );

    // A later commit's batches come after.
    let later = batch(
        "suite-log",
        "v2",
        "s-2",
        at(5),
        vec![event("e9", Applied::Decided)],
    );
    store.commit(&batches(vec![later.clone()])).await.unwrap();
    let after = store.log(&site("suite-log"), last, 100).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1, later);
}

async fn session_events_come_back_in_order(store: &dyn Store) {
    let s = "suite-session-events";
    store
        .commit(&batches(vec![
            batch(
                s,
                "v1",
                "s1",
                at(1),
                vec![
                    event("s1:1", Applied::Decided),
                    event("s1:2", Applied::Logged),
                ],
            ),
            batch(s, "v1", "s2", at(2), vec![event("s2:1", Applied::Decided)]),
        ]))
        .await
        .unwrap();
    store
        .commit(&batches(vec![batch(
            s,
            "v1",
            "s1",
            at(3),
            vec![event("s1:3", Applied::Decided)],
        )]))
        .await
        .unwrap();
    let events = store
        .session_events(&site(s), &session_id("s1"))
        .await
        .unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["s1:1", "s1:2", "s1:3"]);
    let e = &events[1];
    assert_eq!(
        (
            &e.site,
            &e.visitor,
            &e.session,
            e.at,
            e.key.as_str(),
            &e.applied
        ),
        (
            &site(s),
            &visitor("v1"),
            &Some(session_id("s1")),
            at(1),
            "s1:2",
            &Applied::Logged
        )
    );
    assert_eq!(e.kind, "activity");
    assert_eq!(e.body, "{\"id\":\"s1:2\",\"type\":\"activity\"}");
    assert!(
        store
            .session_events(&site("suite-other"), &session_id("s1"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn known_keys_are_per_visitor(store: &dyn Store) {
    let s = "suite-keys";
    store
        .commit(&batches(vec![
            batch(
                s,
                "v1",
                "s1",
                at(1),
                vec![event("a", Applied::Decided), event("b", Applied::Logged)],
            ),
            batch(s, "v2", "s2", at(1), vec![event("c", Applied::Decided)]),
        ]))
        .await
        .unwrap();
    assert_eq!(
        known(store, s, "v1", &["a", "b", "c", "z"]).await,
        ["a", "b"]
    );
    assert_eq!(known(store, s, "v2", &["a", "c"]).await, ["c"]);
    assert!(known(store, s, "v3", &["a", "c"]).await.is_empty());
    assert!(known(store, "suite-other", "v1", &["a"]).await.is_empty());
    assert!(known(store, s, "v1", &[]).await.is_empty());
    // Many keys at once (more than fit in one statement of some databases).
    let many: Vec<String> = (0..2_000)
        .map(|i| format!("k{i}"))
        .chain(["a".to_owned()])
        .collect();
    assert_eq!(
        store
            .known_keys(&site(s), &visitor("v1"), &many)
            .await
            .unwrap(),
        ["a"]
    );
}

async fn a_decided_duplicate_fails_the_whole_commit(store: &dyn Store) {
    let s = "suite-dup";
    store
        .commit(&batches(vec![batch(
            s,
            "v1",
            "s1",
            at(1),
            vec![event("k1", Applied::Logged)],
        )]))
        .await
        .unwrap();
    let group = WriteBatch {
        batches: vec![
            batch(s, "v2", "s2", at(2), vec![event("fresh", Applied::Decided)]),
            batch(s, "v1", "s1", at(2), vec![event("k2", Applied::Decided)]),
            // Logged before (even as logged only): deciding on it again is a duplicate.
            batch(s, "v1", "s1", at(2), vec![event("k1", Applied::Decided)]),
        ],
        exposures: vec![exposure(s, "v2", "i-dup", at(2))],
        visitors: vec![visitor_write(s, "v2", Some(profile(0)), "s2", at(2))],
        leads: Vec::new(),
    };
    assert_eq!(
        store.commit(&group).await.unwrap_err(),
        StoreError::Duplicate {
            site: site(s),
            visitor: visitor("v1"),
            key: "k1".to_owned(),
        }
    );
    // Nothing of the commit landed: not the other visitor's batch, not the new key of the same
    // visitor, not the exposure, not the state.
    assert!(known(store, s, "v2", &["fresh"]).await.is_empty());
    assert!(known(store, s, "v1", &["k2"]).await.is_empty());
    assert!(store.exposures(&site(s)).await.unwrap().is_empty());
    assert!(
        store
            .visitor(&site(s), &visitor("v2"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.log(&site(s), 0, 100).await.unwrap().len(), 1);

    // The same key twice within one commit is a duplicate as well.
    let twice = batches(vec![
        batch(s, "v3", "s3", at(3), vec![event("k5", Applied::Decided)]),
        batch(s, "v3", "s3", at(3), vec![event("k5", Applied::Decided)]),
    ]);
    assert!(matches!(
        store.commit(&twice).await,
        Err(StoreError::Duplicate { key, .. }) if key == "k5"
    ));
    assert!(known(store, s, "v3", &["k5"]).await.is_empty());

    // Without the duplicate, the rest goes in.
    let mut retry = group.clone();
    retry.batches.pop();
    assert_eq!(
        store.commit(&retry).await.unwrap(),
        CommitReport {
            inserted: 2,
            skipped: 0
        }
    );
    assert_eq!(known(store, s, "v1", &["k1", "k2"]).await, ["k1", "k2"]);
    assert_eq!(store.exposures(&site(s)).await.unwrap().len(), 1);
}

/// A commit whose sync comes later is a commit like any other: visible at once, refused whole
/// on a decided duplicate, and its keys known to the next one; a sync then returns.
async fn deferred_commits_are_commits(store: &dyn Store) {
    let s = "suite-deferred";
    let first = batch(s, "v1", "s1", at(1), vec![event("d1", Applied::Decided)]);
    let report = store.commit_unsynced(&batches(vec![first.clone()])).await;
    assert_eq!(
        report.unwrap(),
        CommitReport {
            inserted: 1,
            skipped: 0
        }
    );
    assert_eq!(
        store
            .known_keys(&site(s), &visitor("v1"), &keys(&["d1", "d2"]))
            .await
            .unwrap(),
        ["d1"]
    );
    let again = batch(
        s,
        "v1",
        "s1",
        at(2),
        vec![event("d2", Applied::Decided), event("d1", Applied::Decided)],
    );
    assert!(matches!(
        store.commit_unsynced(&batches(vec![again])).await,
        Err(StoreError::Duplicate { .. })
    ));
    store.sync().await.unwrap();
    let events = store
        .session_events(&site(s), &session_id("s1"))
        .await
        .unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["d1"], "the refused commit wrote nothing");
}

async fn logged_duplicates_are_skipped(store: &dyn Store) {
    let s = "suite-skip";
    store
        .commit(&batches(vec![batch(
            s,
            "v1",
            "s1",
            at(1),
            vec![event("k1", Applied::Decided)],
        )]))
        .await
        .unwrap();
    let resend = batch(
        s,
        "v1",
        "s1",
        at(2),
        vec![
            event("k1", Applied::Logged),
            event("k3", Applied::Decided),
            event("k1", Applied::Refused("not issued".to_owned())),
        ],
    );
    assert_eq!(
        store.commit(&batches(vec![resend])).await.unwrap(),
        CommitReport {
            inserted: 1,
            skipped: 2
        }
    );
    // Within one commit too: the first occurrence is logged, the logged-only repeat skipped.
    assert_eq!(
        store
            .commit(&batches(vec![batch(
                s,
                "v1",
                "s1",
                at(3),
                vec![event("k4", Applied::Decided), event("k4", Applied::Logged),]
            )]))
            .await
            .unwrap(),
        CommitReport {
            inserted: 1,
            skipped: 1
        }
    );
    let log = store.log(&site(s), 0, 100).await.unwrap();
    let events: Vec<Vec<(&str, &Applied)>> = log
        .iter()
        .map(|(_, b)| {
            b.events
                .iter()
                .map(|e| (e.key.as_str(), &e.applied))
                .collect()
        })
        .collect();
    assert_eq!(
        events,
        [
            vec![("k1", &Applied::Decided)],
            vec![("k3", &Applied::Decided)],
            vec![("k4", &Applied::Decided)],
        ],
        "a skipped event is not logged twice; the first use of a key is the one kept"
    );
}

async fn order_keys_are_unique_per_site(store: &dyn Store) {
    let s = "suite-orders";
    store
        .commit(&batches(vec![batch(
            s,
            "v1",
            "s1",
            at(1),
            vec![order_event("s1:1", "42", Applied::Decided)],
        )]))
        .await
        .unwrap();
    // Another visitor reporting the same order (the merchant's backend, another device).
    let again = |applied| {
        batches(vec![batch(
            s,
            "v2",
            "s2",
            at(2),
            vec![order_event("s2:1", "42", applied)],
        )])
    };
    assert_eq!(
        store.commit(&again(Applied::Decided)).await.unwrap_err(),
        StoreError::Duplicate {
            site: site(s),
            visitor: visitor("v2"),
            key: "order:42".to_owned(),
        }
    );
    assert_eq!(
        store.commit(&again(Applied::Logged)).await.unwrap(),
        CommitReport {
            inserted: 0,
            skipped: 1
        }
    );
    assert_eq!(
        known(store, s, "v2", &["order:42", "order:43", "s2:1"]).await,
        ["order:42"]
    );
    assert_eq!(known(store, s, "v9", &["order:42"]).await, ["order:42"]);
    // Per site: another site's order 42 is another order.
    assert!(
        known(store, "suite-orders-b", "v1", &["order:42"])
            .await
            .is_empty()
    );
    store
        .commit(&batches(vec![batch(
            "suite-orders-b",
            "v2",
            "s2",
            at(2),
            vec![order_event("s2:1", "42", Applied::Decided)],
        )]))
        .await
        .unwrap();
    // Two visitors with one order in one commit: the second is the duplicate, and nothing lands.
    let both = batches(vec![
        batch(
            s,
            "v3",
            "s3",
            at(3),
            vec![order_event("s3:1", "77", Applied::Decided)],
        ),
        batch(
            s,
            "v4",
            "s4",
            at(3),
            vec![order_event("s4:1", "77", Applied::Decided)],
        ),
    ]);
    assert_eq!(
        store.commit(&both).await.unwrap_err(),
        StoreError::Duplicate {
            site: site(s),
            visitor: visitor("v4"),
            key: "order:77".to_owned(),
        }
    );
    assert!(known(store, s, "v3", &["order:77"]).await.is_empty());
}

async fn visitor_state_survives_a_restart(store: &dyn Store) {
    let engine = Engine::new(site("suite-state"), Policy::default(), Default::default()).unwrap();
    let mut profile = Profile::default();
    let now = at(0);
    let mut session = engine.start_session(
        visitor("v-state"),
        SessionStart::default(),
        &mut profile,
        now,
    );
    engine.decide(
        &mut session,
        &mut profile,
        &Event::Dismissed {
            rule: RuleId::parse("r").unwrap(),
        },
        now,
    );
    let write = VisitorWrite {
        site: site("suite-state"),
        visitor: visitor("v-state"),
        profile: Some(profile.clone()),
        session: Some(SessionRecord {
            id: session_id("s-state"),
            state: session.clone(),
            ended: vec![session_id("s-before")],
            issued: vec![Issued {
                id: "i-1".to_owned(),
                rule: RuleId::parse("r").unwrap(),
            }],
            bot: Some("behaviour: 31 pages within 40 s".to_owned()),
        }),
        last_seen: now,
        expect: None,
    };
    let exposure = Exposure {
        id: "i-1".to_owned(),
        site: site("suite-state"),
        visitor: visitor("v-state"),
        session: session_id("s-state"),
        rule: RuleId::parse("r").unwrap(),
        arm: Arm::Holdout,
        at: now,
        message: String::new(),
    };
    store
        .commit(&WriteBatch {
            visitors: vec![write],
            exposures: vec![exposure.clone()],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let back = store
        .visitor(&site("suite-state"), &visitor("v-state"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&back.site, &back.visitor),
        (&site("suite-state"), &visitor("v-state"))
    );
    assert_eq!(back.profile, profile);
    assert_eq!(back.profile.dismissals, 1);
    assert_eq!(back.last_seen, now);
    let s = back.session.unwrap();
    assert_eq!(s.id, session_id("s-state"));
    assert_eq!(s.ended, [session_id("s-before")]);
    assert_eq!(s.issued[0].id, "i-1");
    assert_eq!(s.bot.as_deref(), Some("behaviour: 31 pages within 40 s"));
    assert_eq!(s.state.arm(), session.arm());
    assert_eq!(s.state.started_at(), session.started_at());
    assert_eq!(
        store.exposures(&site("suite-state")).await.unwrap(),
        vec![exposure]
    );
    // Another site never sees this visitor.
    assert!(
        store
            .visitor(&site("suite-other"), &visitor("v-state"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn an_unchanged_profile_keeps_the_stored_one(store: &dyn Store) {
    let s = "suite-delta";
    let commit = |w: VisitorWrite| async move {
        store
            .commit(&WriteBatch {
                visitors: vec![w],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
    };
    commit(visitor_write(s, "v1", Some(profile(1)), "s1", at(1))).await;
    commit(visitor_write(s, "v1", None, "s2", at(2))).await;
    let back = store
        .visitor(&site(s), &visitor("v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        back.profile,
        profile(1),
        "no profile in the write: the stored one stays"
    );
    assert_eq!(
        back.session.unwrap().id,
        session_id("s2"),
        "the session is written"
    );
    assert_eq!(back.last_seen, at(2));
    commit(visitor_write(s, "v1", Some(profile(3)), "s2", at(3))).await;
    assert_eq!(
        store
            .visitor(&site(s), &visitor("v1"))
            .await
            .unwrap()
            .unwrap()
            .profile,
        profile(3)
    );
    // A first write without a profile starts from the default one.
    commit(visitor_write(s, "v2", None, "s9", at(1))).await;
    let fresh = store
        .visitor(&site(s), &visitor("v2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.profile, Profile::default());
    assert_eq!(fresh.session.unwrap().id, session_id("s9"));
}

async fn repeated_visitors_in_one_commit_coalesce(store: &dyn Store) {
    let s = "suite-coalesce";
    store
        .commit(&WriteBatch {
            visitors: vec![
                visitor_write(s, "v1", Some(profile(1)), "s1", at(1)),
                visitor_write(s, "v2", None, "s-other", at(1)),
                visitor_write(s, "v1", Some(profile(2)), "s2", at(2)),
                visitor_write(s, "v1", None, "s3", at(3)),
                visitor_write(s, "v2", Some(profile(5)), "s-other", at(2)),
            ],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let v1 = store
        .visitor(&site(s), &visitor("v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v1.profile, profile(2), "the last profile that is set wins");
    assert_eq!(
        v1.session.unwrap().id,
        session_id("s3"),
        "the last session wins"
    );
    assert_eq!(v1.last_seen, at(3));
    let v2 = store
        .visitor(&site(s), &visitor("v2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v2.profile, profile(5));
    // A later write that ends the session clears it.
    store
        .commit(&WriteBatch {
            visitors: vec![VisitorWrite {
                session: None,
                ..visitor_write(s, "v1", None, "s3", at(4))
            }],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let v1 = store
        .visitor(&site(s), &visitor("v1"))
        .await
        .unwrap()
        .unwrap();
    assert!(v1.session.is_none());
    assert_eq!(v1.profile, profile(2));
}

async fn a_failed_commit_leaves_nothing_behind(store: &dyn Store) {
    let s = "suite-atomic";
    // Two exposures with one id cannot both be stored, so the whole batch must fail.
    let group = WriteBatch {
        batches: vec![batch(
            s,
            "v-a",
            "s-a",
            at(1),
            vec![
                event("s-a:1", Applied::Decided),
                order_event("s-a:2", "9", Applied::Decided),
            ],
        )],
        exposures: vec![
            exposure(s, "v-a", "dup", at(1)),
            exposure(s, "v-a", "dup", at(1)),
        ],
        visitors: vec![visitor_write(s, "v-a", Some(profile(0)), "s-a", at(1))],
        leads: Vec::new(),
    };
    assert!(store.commit(&group).await.is_err());
    assert!(
        store
            .session_events(&site(s), &session_id("s-a"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.log(&site(s), 0, 100).await.unwrap().is_empty());
    assert!(
        known(store, s, "v-a", &["s-a:1", "order:9"])
            .await
            .is_empty()
    );
    assert!(store.exposures(&site(s)).await.unwrap().is_empty());
    assert!(
        store
            .visitor(&site(s), &visitor("v-a"))
            .await
            .unwrap()
            .is_none()
    );
}

/// Two writers of one visitor (a node that lost the visitor, and its new owner): a write built
/// on a version that is no longer the stored one is refused whole, as stale, and the version
/// counts every write that landed, folded ones included.
async fn visitor_writes_are_fenced_by_the_version_they_were_built_on(store: &dyn Store) {
    let s = "suite-fence";
    let fenced = |v: &str, expect: u64, when: Timestamp| VisitorWrite {
        expect: Some(expect),
        ..visitor_write(s, v, Some(profile(expect as u32)), "s-f", when)
    };
    let version = |v: &'static str| async move {
        store
            .visitor(&site(s), &visitor(v))
            .await
            .unwrap()
            .map(|r| r.version)
    };
    assert_eq!(
        store
            .visitor_version(&site(s), &visitor("v"))
            .await
            .unwrap(),
        0
    );

    // A new visitor's first write names version 0.
    store
        .commit(&WriteBatch {
            visitors: vec![fenced("v", 0, at(1))],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(version("v").await, Some(1));

    // The old owner writes again on version 0, with a batch: refused whole, nothing logged.
    let stale = store
        .commit(&WriteBatch {
            batches: vec![batch(
                s,
                "v",
                "s-f",
                at(2),
                vec![event("f:1", Applied::Decided)],
            )],
            exposures: vec![exposure(s, "v", "fence-x", at(2))],
            visitors: vec![fenced("v", 0, at(2))],
            leads: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, StoreError::Stale { site: st, visitor: vi } if st.as_str() == s && vi.as_str() == "v"),
        "{stale:?}"
    );
    assert!(store.log(&site(s), 0, 100).await.unwrap().is_empty());
    assert!(store.exposures(&site(s)).await.unwrap().is_empty());
    assert!(known(store, s, "v", &["f:1"]).await.is_empty());
    let kept = store
        .visitor(&site(s), &visitor("v"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (kept.version, kept.profile.dismissals),
        (1, 0),
        "the owner's state stands"
    );

    // A first write for a visitor that someone else has written already is stale too.
    let other = store
        .commit(&WriteBatch {
            visitors: vec![fenced("v", 0, at(3))],
            ..WriteBatch::default()
        })
        .await;
    assert!(matches!(other, Err(StoreError::Stale { .. })));

    // The owner goes on from version 1; two writes folded in one commit count twice.
    store
        .commit(&WriteBatch {
            batches: vec![batch(
                s,
                "v",
                "s-f",
                at(4),
                vec![event("f:2", Applied::Decided)],
            )],
            visitors: vec![fenced("v", 1, at(4)), fenced("v", 2, at(5))],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(version("v").await, Some(3));
    assert_eq!(known(store, s, "v", &["f:2"]).await, keys(&["f:2"]));
    assert_eq!(
        store
            .visitor_version(&site(s), &visitor("v"))
            .await
            .unwrap(),
        3
    );

    // The old owner, waking, sends on a batch the new owner has logged since (the client's
    // resend): a duplicate too, but refused as stale, so that the old owner hears it lost the
    // visitor rather than a commit failing.
    let resent = store
        .commit(&WriteBatch {
            batches: vec![batch(
                s,
                "v",
                "s-f",
                at(5),
                vec![event("f:2", Applied::Decided)],
            )],
            visitors: vec![fenced("v", 1, at(5))],
            ..WriteBatch::default()
        })
        .await;
    assert!(
        matches!(resent, Err(StoreError::Stale { .. })),
        "{resent:?}"
    );
    assert_eq!(version("v").await, Some(3));

    // Two writes folded in one commit that both name version 3: the second was not built on
    // the first, so the fold is stale, and the version stays.
    let twice = store
        .commit(&WriteBatch {
            visitors: vec![fenced("v", 3, at(5)), fenced("v", 3, at(5))],
            ..WriteBatch::default()
        })
        .await;
    assert!(matches!(twice, Err(StoreError::Stale { .. })), "{twice:?}");
    assert_eq!(version("v").await, Some(3));

    // One stale visitor fails a group holding another's good write: neither lands.
    let group = store
        .commit(&WriteBatch {
            visitors: vec![fenced("w", 0, at(6)), fenced("v", 2, at(6))],
            ..WriteBatch::default()
        })
        .await;
    assert!(matches!(group, Err(StoreError::Stale { .. })));
    assert_eq!(version("w").await, None);

    // A tool's unconditional write lands whatever the version, and counts.
    store
        .commit(&WriteBatch {
            visitors: vec![visitor_write(s, "v", None, "s-f", at(7))],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(version("v").await, Some(4));
}

async fn active_visitors_are_found_by_recency(store: &dyn Store) {
    let s = "suite-recent";
    let mut group = WriteBatch::default();
    for (name, ms) in [("old", 1_000), ("new", 9_000)] {
        group.visitors.push(visitor_write(
            s,
            name,
            Some(Profile::default()),
            &format!("s-{name}"),
            at(ms),
        ));
    }
    group.visitors.push(VisitorWrite {
        session: None,
        ..visitor_write(s, "ended", Some(Profile::default()), "s-ended", at(9_000))
    });
    store.commit(&group).await.unwrap();
    let active = store.active_visitors(at(5_000)).await.unwrap();
    let names: Vec<&str> = active
        .records
        .iter()
        .filter(|v| v.site.as_str() == s)
        .map(|v| v.visitor.as_str())
        .collect();
    assert_eq!(names, ["new"], "recent, and with a live session");
    assert_eq!(active.undecodable, 0);
}

async fn pruning_is_bounded_and_keeps_orders_exposures_and_visitors(store: &dyn Store) {
    let s = "suite-prune";
    // Instants before every other chapter's, so the counts below are this chapter's alone.
    let early = Timestamp::from_millis;
    let mut group = batches(
        (1..=5)
            .map(|i| {
                batch(
                    s,
                    "v1",
                    "s1",
                    early(i),
                    vec![
                        event(&format!("p{i}"), Applied::Decided),
                        event(&format!("q{i}"), Applied::Logged),
                    ],
                )
            })
            .collect(),
    );
    group.batches[0]
        .events
        .push(order_event("p1b", "500", Applied::Decided));
    group.exposures.push(exposure(s, "v1", "i-prune", early(1)));
    group
        .visitors
        .push(visitor_write(s, "v1", Some(profile(1)), "s1", early(1)));
    store.commit(&group).await.unwrap();

    assert_eq!(
        store.prune_log(early(4), 2).await.unwrap(),
        2,
        "at most `limit` per call"
    );
    assert_eq!(known(store, s, "v1", &["p1", "p2", "p3"]).await, ["p3"]);
    assert_eq!(
        store.prune_log(early(4), 2).await.unwrap(),
        1,
        "only those before `before`"
    );
    assert_eq!(store.prune_log(early(4), 2).await.unwrap(), 0);
    assert_eq!(store.prune_log(early(100), 0).await.unwrap(), 0);

    let left: Vec<Timestamp> = store
        .log(&site(s), 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|(_, b)| b.at)
        .collect();
    assert_eq!(left, [early(4), early(5)]);
    assert!(
        store
            .session_events(&site(s), &session_id("s1"))
            .await
            .unwrap()
            .len()
            == 4
    );
    assert_eq!(
        known(store, s, "v1", &["p3", "p4", "q5"]).await,
        ["p4", "q5"]
    );
    // Kept: the order, the exposure, the visitor.
    assert_eq!(known(store, s, "v1", &["order:500"]).await, ["order:500"]);
    assert_eq!(store.exposures(&site(s)).await.unwrap().len(), 1);
    assert_eq!(
        store
            .visitor(&site(s), &visitor("v1"))
            .await
            .unwrap()
            .unwrap()
            .profile,
        profile(1)
    );
    // Every other chapter's log is untouched.
    assert_eq!(
        store.log(&site("suite-log"), 0, 100).await.unwrap().len(),
        4
    );
}

async fn order_keys_survive_pruning(store: &dyn Store) {
    let s = "suite-orders-kept";
    store
        .commit(&batches(vec![batch(
            s,
            "v1",
            "s1",
            at(1),
            vec![
                event("s1:1", Applied::Decided),
                order_event("s1:2", "1001", Applied::Decided),
            ],
        )]))
        .await
        .unwrap();
    let last_position = store.log(&site(s), 0, 100).await.unwrap()[0].0;
    // Prune the whole log, in bounded steps.
    while store.prune_log(at(1_000_000), 3).await.unwrap() > 0 {}
    assert!(store.log(&site(s), 0, 100).await.unwrap().is_empty());
    assert!(
        store
            .log(&site("suite-log"), 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // The per-visitor key went with the log; the order is remembered for the whole site.
    assert_eq!(
        known(store, s, "v1", &["s1:1", "order:1001"]).await,
        ["order:1001"]
    );
    assert_eq!(known(store, s, "v2", &["order:1001"]).await, ["order:1001"]);
    let resend = batches(vec![batch(
        s,
        "v2",
        "s2",
        at(2),
        vec![order_event("s2:1", "1001", Applied::Decided)],
    )]);
    assert!(matches!(
        store.commit(&resend).await,
        Err(StoreError::Duplicate { key, .. }) if key == "order:1001"
    ));
    // Positions keep rising after the log was emptied: a reader paging from the last position
    // it saw misses nothing.
    store
        .commit(&batches(vec![batch(
            s,
            "v3",
            "s3",
            at(3),
            vec![event("s3:1", Applied::Decided)],
        )]))
        .await
        .unwrap();
    let after = store.log(&site(s), last_position, 100).await.unwrap();
    assert_eq!(after.len(), 1, "a pruned position is never given again");
}

/// The dashboard's reads ([`crate::insight::Insight`]) on the same database, for backends
/// that implement them: call on a fresh database after (or instead of) [`run_all`].
pub async fn run_insight(store: &dyn Store, insight: &dyn crate::insight::Insight) {
    let s = "insight-shop";
    let shown = |id: &str, applied: Applied| LoggedEvent {
        key: id.to_owned(),
        id: EventId::parse(id).unwrap(),
        kind: "shown".to_owned(),
        body: format!(
            "{{\"id\":\"{id}\",\"type\":\"shown\",\"rule\":\"r\",\"intervention\":\"x1\"}}"
        ),
        applied,
    };
    let mut b1 = batch(s, "v1", "s-1", at(10), vec![event("a1", Applied::Decided)]);
    b1.context.user_agent = "first".to_owned();
    let b2 = batch(
        s,
        "v1",
        "s-1",
        at(20),
        vec![shown("a2", Applied::Decided), event("a3", Applied::Decided)],
    );
    let other = batch(s, "v2", "s-2", at(15), vec![event("b1", Applied::Decided)]);
    // A bot's outcome is logged, never decided on: it is in no number.
    let mut bot = batch(s, "v3", "s-3", at(16), vec![shown("c1", Applied::Logged)]);
    bot.verdict = Verdict::Bot {
        reason: "test".to_owned(),
    };
    let mut write = batches(vec![b1, other, b2, bot]);
    write.exposures = vec![exposure(s, "v1", "x1", at(19))];
    let mut ghost = exposure(s, "v2", "x2", at(19));
    ghost.arm = Arm::Holdout;
    write.exposures.push(ghost);
    write.visitors = vec![
        visitor_write(s, "v1", Some(profile(0)), "s-1", at(20)),
        visitor_write(s, "v2", Some(profile(0)), "s-2", at(15)),
    ];
    store.commit(&write).await.unwrap();

    let log = insight
        .visitor_log(&site(s), &visitor("v1"), 10)
        .await
        .unwrap();
    let keys: Vec<Vec<&str>> = log
        .iter()
        .map(|(_, b)| b.events.iter().map(|e| e.key.as_str()).collect())
        .collect();
    assert_eq!(
        keys,
        vec![vec!["a1"], vec!["a2", "a3"]],
        "v1's batches in order, only v1's"
    );
    assert_eq!(log[0].1.context.user_agent, "first");
    assert!(log[0].0 < log[1].0);
    let last = insight
        .visitor_log(&site(s), &visitor("v1"), 1)
        .await
        .unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].1.events[0].key, "a2", "the limit keeps the latest");
    assert!(
        insight
            .visitor_log(&site("elsewhere"), &visitor("v1"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let counts = insight.rule_counts(&site(s), at(0)).await.unwrap();
    assert_eq!(counts.len(), 1);
    let (rule, c) = &counts[0];
    assert_eq!(rule.as_str(), "r");
    assert_eq!(
        (c.fired, c.ghosts, c.shown, c.dismissed, c.engaged),
        (1, 1, 1, 0, 0)
    );
    assert!(
        insight
            .rule_counts(&site(s), at(30))
            .await
            .unwrap()
            .is_empty(),
        "since filters"
    );

    let recent = insight.recent_visitors(&site(s), at(0), 10).await.unwrap();
    let ids: Vec<&str> = recent.iter().map(|r| r.visitor.as_str()).collect();
    assert_eq!(ids, vec!["v1", "v2"], "most recent first");
    let since = insight.recent_visitors(&site(s), at(18), 10).await.unwrap();
    assert_eq!(since.len(), 1);

    // A visit judged a bot's is no live visitor, and takes no place of one under the limit.
    let mut bot = visitor_write(s, "v-bot", None, "s-bot", at(40));
    if let Some(session) = bot.session.as_mut() {
        session.bot = Some("behaviour: 31 pages within 40 s".to_owned());
        session.state.mark_bot();
    }
    store
        .commit(&WriteBatch {
            visitors: vec![bot],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let recent = insight.recent_visitors(&site(s), at(0), 2).await.unwrap();
    let ids: Vec<&str> = recent.iter().map(|r| r.visitor.as_str()).collect();
    assert_eq!(ids, vec!["v1", "v2"], "people only");
}
