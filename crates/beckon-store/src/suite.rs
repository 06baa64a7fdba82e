//! The story every storage backend must tell the same way. Each backend's tests call
//! [`run_all`] on a fresh database; a backend passes only if every chapter holds.

use beckon_engine::rules::RuleFile;
use beckon_engine::session::Arm;
use beckon_engine::{
    Engine, Event, Policy, Profile, RuleId, SessionStart, SiteId, Timestamp, VisitorId,
};

use crate::{Exposure, SessionRecord, SiteRecord, Store, StoredEvent, VisitorRecord, WriteBatch};

/// Runs every chapter against `store`, which must be freshly migrated and empty.
pub async fn run_all(store: &dyn Store) {
    sites_round_trip(store).await;
    rule_imports_replace_the_whole_set(store).await;
    events_are_idempotent_by_id(store).await;
    visitor_state_survives_a_restart(store).await;
    a_failed_commit_leaves_nothing_behind(store).await;
    active_visitors_are_found_by_recency(store).await;
}

fn site(id: &str) -> SiteId {
    SiteId::parse(id).unwrap()
}

fn visitor(id: &str) -> VisitorId {
    VisitorId::parse(id).unwrap()
}

fn event(site_id: &str, v: &str, session: &str, id: &str, at: i64) -> StoredEvent {
    StoredEvent {
        site: site(site_id),
        visitor: visitor(v),
        session: session.to_owned(),
        id: id.to_owned(),
        at: Timestamp::from_millis(at),
        kind: "activity".to_owned(),
        body: format!("{{\"id\":\"{id}\",\"type\":\"activity\"}}"),
    }
}

async fn sites_round_trip(store: &dyn Store) {
    let record = SiteRecord {
        id: site("suite-shop"),
        secret: "sk_test".to_owned(),
        origins: vec!["https://shop.example".to_owned()],
        policy: Policy {
            max_per_session: 5,
            ..Policy::default()
        },
    };
    store.put_site(&record).await.unwrap();
    let sites = store.sites().await.unwrap();
    assert_eq!(sites.iter().find(|s| s.id == record.id), Some(&record));
    // Replacing keeps one record.
    let changed = SiteRecord {
        secret: "sk_rotated".to_owned(),
        ..record.clone()
    };
    store.put_site(&changed).await.unwrap();
    let sites = store.sites().await.unwrap();
    assert_eq!(sites.iter().filter(|s| s.id == record.id).count(), 1);
    assert_eq!(
        sites.iter().find(|s| s.id == record.id).unwrap().secret,
        "sk_rotated"
    );
}

async fn rule_imports_replace_the_whole_set(store: &dyn Store) {
    let file: RuleFile = toml::from_str(include_str!("../../../examples/demo-rules.toml")).unwrap();
    let s = site("suite-rules");
    store.replace_rules(&s, &file.rules).await.unwrap();
    assert_eq!(store.rules(&s).await.unwrap(), file.rules);
    store.replace_rules(&s, &file.rules[..1]).await.unwrap();
    assert_eq!(store.rules(&s).await.unwrap(), file.rules[..1].to_vec());
    // Another site's rules are untouched by the import.
    assert!(store.rules(&site("suite-other")).await.unwrap().is_empty());
}

async fn events_are_idempotent_by_id(store: &dyn Store) {
    let first = WriteBatch {
        events: vec![
            event("suite-ev", "v1", "s1", "s1:1", 1),
            event("suite-ev", "v1", "s1", "s1:2", 2),
        ],
        ..WriteBatch::default()
    };
    assert_eq!(store.commit(&first).await.unwrap(), 2);
    // A resend of s1:2 with a new one: only the new one counts.
    let resend = WriteBatch {
        events: vec![
            event("suite-ev", "v1", "s1", "s1:2", 3),
            event("suite-ev", "v1", "s1", "s1:3", 4),
        ],
        ..WriteBatch::default()
    };
    assert_eq!(store.commit(&resend).await.unwrap(), 1);
    // The same id from another visitor is another event.
    let other = WriteBatch {
        events: vec![event("suite-ev", "v2", "s9", "s1:2", 5)],
        ..WriteBatch::default()
    };
    assert_eq!(store.commit(&other).await.unwrap(), 1);
    let ids: Vec<String> = store
        .session_events(&site("suite-ev"), "s1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["s1:1", "s1:2", "s1:3"]);
}

async fn visitor_state_survives_a_restart(store: &dyn Store) {
    let engine = Engine::new(site("suite-state"), Policy::default(), Default::default()).unwrap();
    let mut profile = Profile::default();
    let now = Timestamp::from_secs(1_800_000_000);
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
    let record = VisitorRecord {
        site: site("suite-state"),
        visitor: visitor("v-state"),
        profile: profile.clone(),
        session: Some(SessionRecord {
            id: "s-state".to_owned(),
            state: session.clone(),
            recent_ids: vec!["s-state:1".to_owned()],
            ended: vec!["s-before".to_owned()],
        }),
        last_seen: now,
    };
    let exposure = Exposure {
        id: "i-1".to_owned(),
        site: site("suite-state"),
        visitor: visitor("v-state"),
        session: "s-state".to_owned(),
        rule: RuleId::parse("r").unwrap(),
        arm: Arm::Holdout,
        at: now,
        message: String::new(),
    };
    store
        .commit(&WriteBatch {
            visitors: vec![record],
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
    assert_eq!(back.profile, profile);
    assert_eq!(back.profile.dismissals, 1);
    let s = back.session.unwrap();
    assert_eq!(s.id, "s-state");
    assert_eq!(s.recent_ids, ["s-state:1"]);
    assert_eq!(s.ended, ["s-before"]);
    assert_eq!(s.state.arm(), session.arm());
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

async fn a_failed_commit_leaves_nothing_behind(store: &dyn Store) {
    let exposure = |id: &str| Exposure {
        id: id.to_owned(),
        site: site("suite-atomic"),
        visitor: visitor("v-a"),
        session: "s-a".to_owned(),
        rule: RuleId::parse("r").unwrap(),
        arm: Arm::Treated,
        at: Timestamp::from_millis(1),
        message: "{}".to_owned(),
    };
    // Two exposures with one id cannot both be stored, so the whole batch must fail.
    let batch = WriteBatch {
        events: vec![event("suite-atomic", "v-a", "s-a", "s-a:1", 1)],
        exposures: vec![exposure("dup"), exposure("dup")],
        ..WriteBatch::default()
    };
    assert!(store.commit(&batch).await.is_err());
    assert!(
        store
            .session_events(&site("suite-atomic"), "s-a")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .exposures(&site("suite-atomic"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn active_visitors_are_found_by_recency(store: &dyn Store) {
    let engine = Engine::new(site("suite-recent"), Policy::default(), Default::default()).unwrap();
    let mut batch = WriteBatch::default();
    for (name, at) in [("old", 1_000), ("new", 9_000)] {
        let mut profile = Profile::default();
        let t = Timestamp::from_millis(at);
        let state = engine.start_session(visitor(name), SessionStart::default(), &mut profile, t);
        batch.visitors.push(VisitorRecord {
            site: site("suite-recent"),
            visitor: visitor(name),
            profile,
            session: Some(SessionRecord {
                id: format!("s-{name}"),
                state,
                recent_ids: Vec::new(),
                ended: Vec::new(),
            }),
            last_seen: t,
        });
    }
    store.commit(&batch).await.unwrap();
    let active = store
        .active_visitors(Timestamp::from_millis(5_000))
        .await
        .unwrap();
    let names: Vec<&str> = active
        .iter()
        .filter(|v| v.site.as_str() == "suite-recent")
        .map(|v| v.visitor.as_str())
        .collect();
    assert_eq!(names, ["new"]);
}
