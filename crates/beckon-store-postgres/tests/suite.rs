//! The storage story, told by PostgreSQL: each test on a schema of its own.

use beckon_store_postgres::testing::Scratch;

#[tokio::test]
async fn postgres_passes_the_store_suite() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    beckon_store::suite::run_all(&store).await;
    scratch.drop().await;
}

/// Two nodes writing one visitor at the same moment, each on the version it read: exactly one
/// write lands at each version, whichever node's commit comes first; the other is stale.
#[tokio::test]
async fn two_nodes_writing_one_visitor_at_once_land_one_write_per_version() {
    use beckon_engine::{Profile, SiteId, Timestamp, VisitorId};
    use beckon_store::{Store, StoreError, VisitorWrite, WriteBatch};

    let scratch = Scratch::new().await;
    let a = scratch.migrated().await;
    let b = scratch.store().await;
    let site = SiteId::parse("race").unwrap();
    let write = |visitor: &str, expect: u64| WriteBatch {
        visitors: vec![VisitorWrite {
            site: site.clone(),
            visitor: VisitorId::parse(visitor).unwrap(),
            profile: Some(Profile::default()),
            session: None,
            last_seen: Timestamp::from_millis(1),
            expect: Some(expect),
        }],
        ..WriteBatch::default()
    };
    for round in 0..20 {
        let visitor = format!("v{round}");
        for expect in 0..3 {
            let (wa, wb) = (write(&visitor, expect), write(&visitor, expect));
            let (x, y) = tokio::join!(a.commit(&wa), b.commit(&wb));
            let landed = [&x, &y].iter().filter(|r| r.is_ok()).count();
            assert_eq!(landed, 1, "round {round}, version {expect}: {x:?} {y:?}");
            assert!(
                [x, y]
                    .into_iter()
                    .any(|r| matches!(r, Err(StoreError::Stale { .. })))
            );
        }
        let version = a
            .visitor_version(&site, &VisitorId::parse(&visitor).unwrap())
            .await
            .unwrap();
        assert_eq!(version, 3);
    }
    scratch.drop().await;
}
