//! A database made by the first schema, with rows in it, upgrades through the later migrations
//! and keeps what it had in the new shapes.

use beckon_engine::rules::{RuleFile, RuleSpec};
use beckon_engine::{Policy, SessionId, SiteId, Timestamp, VisitorId};
use beckon_store::{Applied, BatchContext, Source, Store, StoreError, Verdict};
use beckon_store_sqlite::SqliteStore;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

/// Makes `path` a database at schema 0001 exactly as that release did (sqlx's own record of the
/// migration included, so that the upgrade sees 0001 as applied).
async fn first_release_database(path: &std::path::Path) -> SqlitePool {
    let only_first = tempfile::tempdir().unwrap();
    std::fs::write(
        only_first.path().join("0001_init.sql"),
        include_str!("../migrations/0001_init.sql"),
    )
    .unwrap();
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    Migrator::new(only_first.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

fn demo_rules() -> Vec<RuleSpec> {
    let file: RuleFile = toml::from_str(include_str!("../../../examples/demo-rules.toml")).unwrap();
    file.rules
}

#[tokio::test]
async fn a_first_release_database_upgrades_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beckon.db");
    let old = first_release_database(&path).await;
    let policy = Policy {
        max_per_session: 4,
        ..Policy::default()
    };
    let rules = demo_rules();
    assert!(rules.len() >= 2);
    sqlx::query("INSERT INTO sites (id, secret, origins, policy) VALUES ('shop', 'sk', ?, ?)")
        .bind(serde_json::to_string(&vec!["https://shop.example"]).unwrap())
        .bind(serde_json::to_string(&policy).unwrap())
        .execute(&old)
        .await
        .unwrap();
    // Stored out of id order, so that only `position` gives the order back.
    for (i, rule) in rules.iter().enumerate().rev() {
        sqlx::query("INSERT INTO rules (site_id, id, position, spec) VALUES ('shop', ?, ?, ?)")
            .bind(&rule.id)
            .bind(i as i64)
            .bind(serde_json::to_string(rule).unwrap())
            .execute(&old)
            .await
            .unwrap();
    }
    // Rules of a site with no record: no version can hold them, so they go.
    sqlx::query("INSERT INTO rules (site_id, id, position, spec) VALUES ('ghost', 'r', 0, ?)")
        .bind(serde_json::to_string(&rules[0]).unwrap())
        .execute(&old)
        .await
        .unwrap();
    for (visitor, session, id, at) in [
        ("v1", "s1", "s1:1:1", 100),
        ("v1", "s1", "s1:1:2", 200),
        ("v2", "s2", "order:77", 150),
    ] {
        sqlx::query(
            "INSERT INTO events (site_id, visitor_id, session_id, event_id, at, type, body)
             VALUES ('shop', ?, ?, ?, ?, 'activity', ?)",
        )
        .bind(visitor)
        .bind(session)
        .bind(id)
        .bind(at)
        .bind(format!("{{\"id\":\"{id}\"}}"))
        .execute(&old)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO exposures (id, site_id, visitor_id, session_id, rule_id, arm, at, message)
         VALUES ('i-1', 'shop', 'v1', 's1', 'cart-exit-offer', 'holdout', 120, '')",
    )
    .execute(&old)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO visitors (site_id, visitor_id, profile, session, last_seen)
         VALUES ('shop', 'v1', '{\"visits\":1}', '{\"id\":\"s1\"}', 200)",
    )
    .execute(&old)
    .await
    .unwrap();
    old.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    let shop = SiteId::parse("shop").unwrap();
    let v1 = VisitorId::parse("v1").unwrap();

    // The site is at version 1, which holds its policy and its rules in order.
    let sites = store.sites().await.unwrap();
    assert_eq!(sites.len(), 1);
    assert_eq!(
        (
            &sites[0].id,
            &sites[0].secret,
            &sites[0].policy,
            sites[0].version
        ),
        (&shop, &beckon_store::SecretDigest::of("sk"), &policy, 1)
    );
    assert_eq!(sites[0].origins, ["https://shop.example"]);
    assert_eq!(store.rules(&shop).await.unwrap(), rules);
    let v = store.rule_set(&shop, 1).await.unwrap().unwrap();
    assert_eq!((v.policy, v.rules), (policy.clone(), rules.clone()));
    assert!(
        store
            .rule_set(&SiteId::parse("ghost").unwrap(), 1)
            .await
            .unwrap()
            .is_none()
    );

    // Each old event is a batch of one, in the old order.
    let log = store.log(&shop, 0, 100).await.unwrap();
    let seen: Vec<(u64, &str, &str, Timestamp)> = log
        .iter()
        .map(|(pos, b)| (*pos, b.visitor.as_str(), b.events[0].key.as_str(), b.at))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "v1", "s1:1:1", Timestamp::from_millis(100)),
            (2, "v1", "s1:1:2", Timestamp::from_millis(200)),
            (3, "v2", "order:77", Timestamp::from_millis(150)),
        ]
    );
    for (_, b) in &log {
        assert_eq!(b.source, Source::Browser);
        assert_eq!(b.context, BatchContext::default());
        assert_eq!(b.verdict, Verdict::Human);
        assert_eq!(b.rules_version, 0);
        assert_eq!(b.begins, None);
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].applied, Applied::Decided);
        assert_eq!(b.events[0].key, b.events[0].id.as_str());
        assert_eq!(b.events[0].kind, "activity");
    }
    assert_eq!(log[0].1.session, Some(SessionId::parse("s1").unwrap()));
    assert_eq!(log[0].1.events[0].body, "{\"id\":\"s1:1:1\"}");

    // Their keys are known, and an old `order:` key is an order of the whole site.
    let known = store
        .known_keys(&shop, &v1, &["s1:1:1".to_owned(), "s1:1:9".to_owned()])
        .await
        .unwrap();
    assert_eq!(known, ["s1:1:1"]);
    let known = store
        .known_keys(
            &shop,
            &VisitorId::parse("v9").unwrap(),
            &["order:77".to_owned()],
        )
        .await
        .unwrap();
    assert_eq!(known, ["order:77"]);

    let exposures = store.exposures(&shop).await.unwrap();
    assert_eq!(exposures.len(), 1);
    assert_eq!(exposures[0].session, SessionId::parse("s1").unwrap());

    // The old visitor state is of schema 1: undecodable, and counted, not fatal.
    assert!(matches!(
        store.visitor(&shop, &v1).await,
        Err(StoreError::Undecodable(_))
    ));
    let active = store.active_visitors(Timestamp::EPOCH).await.unwrap();
    assert_eq!((active.records.len(), active.undecodable), (0, 1));

    // New batches go after the old ones, and a site change makes version 2.
    store
        .commit(&beckon_store::WriteBatch {
            batches: vec![beckon_store::LoggedBatch {
                begins: None,
                ..log[0].1.clone()
            }],
            ..Default::default()
        })
        .await
        .unwrap_err(); // s1:1:1 is a decided duplicate now
    let mut fresh = log[0].1.clone();
    fresh.events[0].key = "s1:2:1".to_owned();
    fresh.events[0].id = beckon_engine::EventId::parse("s1:2:1").unwrap();
    store
        .commit(&beckon_store::WriteBatch {
            batches: vec![fresh],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.log(&shop, 3, 10).await.unwrap()[0].0, 4);
    store.replace_rules(&shop, &rules[..1]).await.unwrap();
    assert_eq!(store.site_versions().await.unwrap(), [(shop.clone(), 2)]);
    assert_eq!(
        store.rule_set(&shop, 1).await.unwrap().unwrap().rules,
        rules
    );

    // Migrating again is a no-op.
    store.migrate().await.unwrap();
}
