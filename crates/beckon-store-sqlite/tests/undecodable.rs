//! A visitor row that cannot be read back (damaged by hand, or written by another version)
//! is reported as undecodable, so that the visitor starts afresh, and start-up never fails
//! because of it.

use beckon_engine::{Profile, SiteId, Timestamp, VisitorId};
use beckon_store::{Store, StoreError, VisitorWrite, WriteBatch};
use beckon_store_sqlite::SqliteStore;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

#[tokio::test]
async fn undecodable_visitor_rows_are_reported_and_counted_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beckon.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    let site = SiteId::parse("shop").unwrap();
    let now = Timestamp::from_millis(10_000);

    // Two good rows, written through the store.
    let write = |v: &str| VisitorWrite {
        site: site.clone(),
        visitor: VisitorId::parse(v).unwrap(),
        profile: Some(Profile {
            visits: 2,
            ..Profile::default()
        }),
        session: None,
        last_seen: now,
        expect: None,
    };
    store
        .commit(&WriteBatch {
            visitors: vec![write("good"), write("old-schema")],
            ..WriteBatch::default()
        })
        .await
        .unwrap();

    // Damage beside it, by hand.
    let raw = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    for sql in [
        // Live sessions for every row, so that all of them are candidates for resuming.
        "UPDATE visitors SET session = 'null'",
        // The good row, in the shape this build writes, but marked as another version's.
        "UPDATE visitors SET schema = 1 WHERE visitor_id = 'old-schema'",
        "INSERT INTO visitors (site_id, visitor_id, schema, profile, session, last_seen)
         VALUES ('shop', 'garbage', 2, 'not json at all', 'null', 10000)",
        "INSERT INTO visitors (site_id, visitor_id, schema, profile, session, last_seen)
         VALUES ('shop', 'bad-session', 2, '{}', '{\"id\": 5}', 10000)",
        "INSERT INTO visitors (site_id, visitor_id, schema, profile, session, last_seen)
         VALUES ('shop', 'wrong-type', 2, 12345, 'null', 10000)",
        "INSERT INTO visitors (site_id, visitor_id, schema, profile, session, last_seen)
         VALUES ('shop', 'future', 3, '{}', 'null', 10000)",
    ] {
        sqlx::query(sql).execute(&raw).await.unwrap();
    }
    // A session of JSON `null` reads as no session for a good row; make "good" live for real.
    sqlx::query("UPDATE visitors SET session = NULL WHERE visitor_id = 'good'")
        .execute(&raw)
        .await
        .unwrap();

    for v in [
        "old-schema",
        "garbage",
        "bad-session",
        "wrong-type",
        "future",
    ] {
        let got = store.visitor(&site, &VisitorId::parse(v).unwrap()).await;
        assert!(
            matches!(got, Err(StoreError::Undecodable(_))),
            "{v}: expected Undecodable, got {got:?}"
        );
    }
    let good = store
        .visitor(&site, &VisitorId::parse("good").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(good.profile.visits, 2);

    let active = store.active_visitors(Timestamp::EPOCH).await.unwrap();
    assert_eq!(active.undecodable, 5);
    assert!(
        active.records.is_empty(),
        "the good row has no live session"
    );

    // A fresh write of an undecodable visitor (with its profile, as a first write has)
    // replaces the row, and it reads again.
    store
        .commit(&WriteBatch {
            visitors: vec![write("old-schema")],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    assert!(
        store
            .visitor(&site, &VisitorId::parse("old-schema").unwrap())
            .await
            .unwrap()
            .is_some()
    );
}
