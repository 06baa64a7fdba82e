//! Scratch databases for tests: each store gets a schema of its own on the test server, so
//! tests run side by side (and CI runs after CI) without seeing each other's rows.
//!
//! The server is `BECKON_TEST_POSTGRES`, by default the CI machine's
//! `postgres://postgres@127.0.0.1:5432/test`. A test that needs PostgreSQL fails when it cannot
//! reach it: a suite that skipped silently would pass without having run.

use beckon_store::Store;
use sqlx::Connection;

use crate::PgStore;

/// The test server's URL.
pub fn url() -> String {
    std::env::var("BECKON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own on the test server, dropped (with everything in it) by [`Scratch::drop`].
#[derive(Debug)]
pub struct Scratch {
    /// The schema's name.
    pub schema: String,
    url: String,
}

impl Scratch {
    /// Creates a fresh, empty schema named `beckon_test_<random>`.
    pub async fn new() -> Scratch {
        let url = url();
        let schema = format!("beckon_test_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} is not reachable ({e}); set BECKON_TEST_POSTGRES")
        });
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create the test schema");
        Scratch { schema, url }
    }

    /// A store on this schema, not yet migrated.
    pub async fn store(&self) -> PgStore {
        PgStore::connect(&self.url, Some(&self.schema))
            .await
            .expect("connect to the test schema")
    }

    /// A migrated store on this schema.
    pub async fn migrated(&self) -> PgStore {
        let store = self.store().await;
        store.migrate().await.expect("migrate the test schema");
        store
    }

    /// A URL of this schema: the server's, with the schema as the connections' search path,
    /// for a `beckon` process or a copy under test.
    pub fn url(&self) -> String {
        let join = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{join}options=-c%20search_path%3D{}",
            self.url, self.schema
        )
    }

    /// Drops the schema and everything in it. A test that fails before calling this leaves its
    /// schema behind, to look at.
    pub async fn drop(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.url).await {
            let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
                .execute(&mut conn)
                .await;
        }
    }
}
