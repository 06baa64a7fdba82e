//! The writer never checkpoints (so that no commit waits for one); the store's own
//! checkpointer copies the WAL back into the database file in the background.

use std::time::Duration;

use beckon_engine::{Profile, SiteId, Timestamp, VisitorId};
use beckon_store::{Store, VisitorWrite, WriteBatch};
use beckon_store_sqlite::SqliteStore;

#[tokio::test]
async fn committed_pages_reach_the_database_file_without_another_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beckon.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    let site = SiteId::parse("shop").unwrap();
    let visitors = (0..5_000)
        .map(|i| VisitorWrite {
            site: site.clone(),
            visitor: VisitorId::parse(&format!("v_{i:06}")).unwrap(),
            profile: Some(Profile {
                visits: i,
                ..Profile::default()
            }),
            session: None,
            last_seen: Timestamp::from_millis(10_000),
            expect: None,
        })
        .collect();
    store
        .commit(&WriteBatch {
            visitors,
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let wal = path.with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 1 << 20,
        "the commit went to the WAL"
    );

    // Nothing more is written: only the checkpointer can bring the rows into the file.
    let mut size = 0;
    for _ in 0..200 {
        size = std::fs::metadata(&path).unwrap().len();
        if size > 1 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        size > 1 << 20,
        "the database file is still {size} bytes: the WAL was never copied back"
    );
    let last = store
        .visitor(&site, &VisitorId::parse("v_004999").unwrap())
        .await
        .unwrap()
        .expect("the last visitor is stored");
    assert_eq!(last.profile.visits, 4_999);
}
