//! `beckon copy`: an SQLite installation moved into PostgreSQL holds every row it had, reads
//! back the same through the store interfaces, and goes on from where it was.

use std::collections::BTreeMap;

use beckon_engine::{EventId, SiteId, Timestamp, VisitorId};
use beckon_store::{
    Applied, BatchContext, LoggedBatch, LoggedEvent, Source, Store, Verdict, WriteBatch,
};
use beckon_store_postgres::testing::Scratch;
use beckon_store_sqlite::SqliteStore;
use sqlx::{Row, postgres::PgRow, sqlite::SqliteRow};

/// An installation that has been through every chapter of every store suite: sites, rule
/// versions, the log, visitors, accounts, conversations, files, leads, deliveries, analytics.
async fn busy_installation(dir: &std::path::Path) {
    let store = SqliteStore::open(&dir.join("beckon.db")).await.unwrap();
    store.migrate().await.unwrap();
    beckon_store::suite::run_all(&store).await;
    beckon_store::accounts_suite::run_all(&store, &store).await;
    beckon_store::conversations_suite::run_all(&store, &store, &store).await;
    beckon_store::outbox_suite::run_all(&store, &store, &store).await;
    beckon_store::analytics_suite::run_all(&store, &store, &store, &store).await;
}

/// Every row of `table` as text, sorted: `(column, value)` pairs the two databases must agree on.
type Rows = Vec<BTreeMap<String, String>>;

async fn pg_columns(pg: &sqlx::PgPool, table: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 AND column_name <> 'ord'
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pg)
    .await
    .unwrap()
}

fn sqlite_value(row: &SqliteRow, name: &str, pg_type: &str) -> String {
    match pg_type {
        "bigint" | "smallint" => format!("{:?}", row.get::<Option<i64>, _>(name)),
        "boolean" => format!("{:?}", row.get::<Option<i64>, _>(name).map(|b| b != 0)),
        "double precision" => format!("{:?}", row.get::<Option<f64>, _>(name)),
        "bytea" => format!("{:?}", row.get::<Option<Vec<u8>>, _>(name)),
        _ => format!("{:?}", row.get::<Option<String>, _>(name)),
    }
}

fn pg_value(row: &PgRow, name: &str, pg_type: &str) -> String {
    match pg_type {
        "bigint" => format!("{:?}", row.get::<Option<i64>, _>(name)),
        "smallint" => format!("{:?}", row.get::<Option<i16>, _>(name).map(i64::from)),
        "boolean" => format!("{:?}", row.get::<Option<bool>, _>(name)),
        "double precision" => format!("{:?}", row.get::<Option<f64>, _>(name)),
        "bytea" => format!("{:?}", row.get::<Option<Vec<u8>>, _>(name)),
        _ => format!("{:?}", row.get::<Option<String>, _>(name)),
    }
}

async fn both(sqlite: &sqlx::SqlitePool, pg: &sqlx::PgPool, table: &str) -> (Rows, Rows) {
    let columns = pg_columns(pg, table).await;
    let list = columns
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {list} FROM {table}");
    let mut from_sqlite: Rows = sqlx::query(&sql)
        .fetch_all(sqlite)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|(n, t)| (n.clone(), sqlite_value(r, n, t)))
                .collect()
        })
        .collect();
    let mut from_pg: Rows = sqlx::query(&sql)
        .fetch_all(pg)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|(n, t)| (n.clone(), pg_value(r, n, t)))
                .collect()
        })
        .collect();
    from_sqlite.sort();
    from_pg.sort();
    (from_sqlite, from_pg)
}

#[tokio::test]
async fn a_copied_installation_holds_every_row_and_goes_on_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    busy_installation(dir.path()).await;
    let scratch = Scratch::new().await;

    let copied = beckon::copy::sqlite_to_postgres(dir.path(), &scratch.url())
        .await
        .unwrap();

    let sqlite = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("beckon.db").display()
    ))
    .await
    .unwrap();
    let pg = scratch.store().await;
    let mut tables_with_rows = 0;
    for (table, n) in &copied.tables {
        let (from_sqlite, from_pg) = both(&sqlite, pg.pool(), table).await;
        assert_eq!(from_sqlite.len() as u64, *n, "{table}: rows copied");
        assert_eq!(from_sqlite, from_pg, "{table}: every row and value");
        tables_with_rows += usize::from(*n > 0);
    }
    assert!(
        tables_with_rows >= 20,
        "the suites filled most tables: {:?}",
        copied.tables
    );

    // Through the interfaces: the same sites, and each site's log the same, page by page.
    let source = SqliteStore::open(&dir.path().join("beckon.db"))
        .await
        .unwrap();
    let sites = source.sites().await.unwrap();
    assert_eq!(pg.sites().await.unwrap(), sites);
    for site in &sites {
        assert_eq!(
            pg.log(&site.id, 0, 100_000).await.unwrap(),
            source.log(&site.id, 0, 100_000).await.unwrap(),
            "the log of {}",
            site.id
        );
        assert_eq!(
            pg.exposures(&site.id).await.unwrap(),
            source.exposures(&site.id).await.unwrap()
        );
    }

    // The log goes on after its last position, never reusing one; ids of people go on too.
    let last: i64 = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'batches'")
        .fetch_one(&sqlite)
        .await
        .unwrap();
    let site = SiteId::parse(sites[0].id.as_str()).unwrap();
    let visitor = VisitorId::parse("after-the-copy").unwrap();
    pg.commit(&WriteBatch {
        batches: vec![LoggedBatch {
            site: site.clone(),
            visitor: visitor.clone(),
            session: None,
            at: Timestamp::from_millis(1_900_000_000_000),
            source: Source::Backend,
            context: BatchContext::default(),
            verdict: Verdict::Human,
            rules_version: 1,
            begins: None,
            events: vec![LoggedEvent {
                key: "after-1".to_owned(),
                id: EventId::parse("after-1").unwrap(),
                kind: "activity".to_owned(),
                body: "{}".to_owned(),
                applied: Applied::Logged,
            }],
        }],
        ..WriteBatch::default()
    })
    .await
    .unwrap();
    let tail = pg.log(&site, 0, 100_000).await.unwrap();
    let (seq, batch) = tail.last().unwrap();
    assert_eq!(batch.visitor, visitor);
    assert_eq!(
        *seq,
        last as u64 + 1,
        "the next position after the copied log's last"
    );
    let users_before = copied.tables.iter().find(|(t, _)| *t == "users").unwrap().1;
    assert!(users_before > 0);
    use beckon_store::accounts::{Accounts, NewUser, Role};
    let made = pg
        .create_user(&NewUser {
            email: "after-the-copy@example.com".to_owned(),
            name: "After".to_owned(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            role: Role::Agent,
            at: Timestamp::from_millis(1_900_000_000_000),
        })
        .await
        .expect("a new account after the copy takes a fresh id");
    let max_copied: i64 = sqlx::query_scalar("SELECT max(id) FROM users")
        .fetch_one(&sqlite)
        .await
        .unwrap();
    assert!(made.id > max_copied);

    // A second copy into the now busy database is refused, and adds nothing.
    let count = |table: &'static str| {
        let pool = pg.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (batches, events) = (count("batches").await, count("events").await);
    let again = beckon::copy::sqlite_to_postgres(dir.path(), &scratch.url())
        .await
        .unwrap_err();
    assert!(again.contains("already holds data"), "{again}");
    assert_eq!(
        (count("batches").await, count("events").await),
        (batches, events)
    );

    sqlite.close().await;
    pg.pool().close().await;
    scratch.drop().await;
}

#[tokio::test]
async fn a_copy_from_a_folder_without_a_database_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let e = beckon::copy::sqlite_to_postgres(dir.path(), "postgres://127.0.0.1/none")
        .await
        .unwrap_err();
    assert!(e.contains("no database in"), "{e}");
}
