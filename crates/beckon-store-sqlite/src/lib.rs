//! Beckon's embedded storage: [`beckon_store::Store`] on SQLite, the default for `beckon demo`
//! and single-node installs.
//!
//! The database runs in WAL mode with `synchronous = FULL`: a batch acknowledged to a client has
//! reached the disk. Group commit in the server keeps that affordable: one transaction, one
//! sync, for many events.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use beckon_engine::rules::RuleSpec;
use beckon_engine::session::Arm;
use beckon_engine::{RuleId, SiteId, Timestamp, VisitorId};
use beckon_store::{
    Exposure, Result, SiteRecord, Store, StoreError, StoredEvent, VisitorRecord, WriteBatch,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

/// The Store on one SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5))
            .foreign_keys(true);
        Self::connect(options).await
    }

    /// A private in-memory database, for tests.
    pub async fn in_memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(db)?;
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<SqliteStore> {
        // One writer at a time is SQLite's rule anyway; a single connection also keeps an
        // in-memory database one database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(db)?;
        Ok(SqliteStore { pool })
    }
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn arm_name(arm: Arm) -> &'static str {
    match arm {
        Arm::Treated => "treated",
        Arm::Holdout => "holdout",
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(db)
    }

    async fn put_site(&self, site: &SiteRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sites (id, secret, origins, policy) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET secret = excluded.secret, origins = excluded.origins,
             policy = excluded.policy",
        )
        .bind(site.id.as_str())
        .bind(&site.secret)
        .bind(serde_json::to_string(&site.origins).map_err(corrupt)?)
        .bind(serde_json::to_string(&site.policy).map_err(corrupt)?)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>> {
        let rows = sqlx::query("SELECT id, secret, origins, policy FROM sites ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                Ok(SiteRecord {
                    id: SiteId::parse(r.get("id")).map_err(corrupt)?,
                    secret: r.get("secret"),
                    origins: serde_json::from_str(r.get("origins")).map_err(corrupt)?,
                    policy: serde_json::from_str(r.get("policy")).map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn replace_rules(&self, site: &SiteId, rules: &[RuleSpec]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM rules WHERE site_id = ?")
            .bind(site.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for (i, rule) in rules.iter().enumerate() {
            sqlx::query("INSERT INTO rules (site_id, id, position, spec) VALUES (?, ?, ?, ?)")
                .bind(site.as_str())
                .bind(&rule.id)
                .bind(i as i64)
                .bind(serde_json::to_string(rule).map_err(corrupt)?)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn rules(&self, site: &SiteId) -> Result<Vec<RuleSpec>> {
        let rows = sqlx::query("SELECT spec FROM rules WHERE site_id = ? ORDER BY position")
            .bind(site.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get("spec")).map_err(corrupt))
            .collect()
    }

    async fn commit(&self, batch: &WriteBatch) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let inserted = write_batch(&mut tx, batch).await?;
        tx.commit().await.map_err(db)?;
        Ok(inserted)
    }

    async fn visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Option<VisitorRecord>> {
        let row = sqlx::query(
            "SELECT site_id, visitor_id, profile, session, last_seen FROM visitors
             WHERE site_id = ? AND visitor_id = ?",
        )
        .bind(site.as_str())
        .bind(visitor.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| visitor_record(&r)).transpose()
    }

    async fn active_visitors(&self, since: Timestamp) -> Result<Vec<VisitorRecord>> {
        let rows = sqlx::query(
            "SELECT site_id, visitor_id, profile, session, last_seen FROM visitors
             WHERE last_seen >= ? AND session IS NOT NULL ORDER BY last_seen",
        )
        .bind(since.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(visitor_record).collect()
    }

    async fn exposures(&self, site: &SiteId) -> Result<Vec<Exposure>> {
        let rows = sqlx::query(
            "SELECT id, site_id, visitor_id, session_id, rule_id, arm, at, message FROM exposures
             WHERE site_id = ? ORDER BY at, rowid",
        )
        .bind(site.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(Exposure {
                    id: r.get("id"),
                    site: SiteId::parse(r.get("site_id")).map_err(corrupt)?,
                    visitor: VisitorId::parse(r.get("visitor_id")).map_err(corrupt)?,
                    session: r.get("session_id"),
                    rule: RuleId::parse(r.get("rule_id")).map_err(corrupt)?,
                    arm: match r.get::<&str, _>("arm") {
                        "holdout" => Arm::Holdout,
                        _ => Arm::Treated,
                    },
                    at: Timestamp::from_millis(r.get("at")),
                    message: r.get("message"),
                })
            })
            .collect()
    }

    async fn session_events(&self, site: &SiteId, session: &str) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT site_id, visitor_id, session_id, event_id, at, type, body FROM events
             WHERE site_id = ? AND session_id = ? ORDER BY seq",
        )
        .bind(site.as_str())
        .bind(session)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    site: SiteId::parse(r.get("site_id")).map_err(corrupt)?,
                    visitor: VisitorId::parse(r.get("visitor_id")).map_err(corrupt)?,
                    session: r.get("session_id"),
                    id: r.get("event_id"),
                    at: Timestamp::from_millis(r.get("at")),
                    kind: r.get("type"),
                    body: r.get("body"),
                })
            })
            .collect()
    }
}

async fn write_batch(tx: &mut Transaction<'_, Sqlite>, batch: &WriteBatch) -> Result<usize> {
    let mut inserted = 0;
    for e in &batch.events {
        let done = sqlx::query(
            "INSERT INTO events (site_id, visitor_id, session_id, event_id, at, type, body)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site_id, visitor_id, event_id) DO NOTHING",
        )
        .bind(e.site.as_str())
        .bind(e.visitor.as_str())
        .bind(&e.session)
        .bind(&e.id)
        .bind(e.at.as_millis())
        .bind(&e.kind)
        .bind(&e.body)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        inserted += done.rows_affected() as usize;
    }
    for x in &batch.exposures {
        sqlx::query(
            "INSERT INTO exposures (id, site_id, visitor_id, session_id, rule_id, arm, at, message)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&x.id)
        .bind(x.site.as_str())
        .bind(x.visitor.as_str())
        .bind(&x.session)
        .bind(x.rule.as_str())
        .bind(arm_name(x.arm))
        .bind(x.at.as_millis())
        .bind(&x.message)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    for v in &batch.visitors {
        let session = v
            .session
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO visitors (site_id, visitor_id, profile, session, last_seen) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (site_id, visitor_id) DO UPDATE SET profile = excluded.profile,
             session = excluded.session, last_seen = excluded.last_seen",
        )
        .bind(v.site.as_str())
        .bind(v.visitor.as_str())
        .bind(serde_json::to_string(&v.profile).map_err(corrupt)?)
        .bind(session)
        .bind(v.last_seen.as_millis())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(inserted)
}

fn visitor_record(r: &sqlx::sqlite::SqliteRow) -> Result<VisitorRecord> {
    let session: Option<String> = r.get("session");
    Ok(VisitorRecord {
        site: SiteId::parse(r.get("site_id")).map_err(corrupt)?,
        visitor: VisitorId::parse(r.get("visitor_id")).map_err(corrupt)?,
        profile: serde_json::from_str(r.get("profile")).map_err(corrupt)?,
        session: session
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(corrupt)?,
        last_seen: Timestamp::from_millis(r.get("last_seen")),
    })
}
