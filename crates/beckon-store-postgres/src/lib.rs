//! Beckon's scale-out storage: [`beckon_store::Store`] and the other store interfaces on
//! PostgreSQL, for installations that run several nodes on one database.
//!
//! It tells the same story as the SQLite backend (one suite, `beckon_store::suite`, runs against
//! both) and stores the same bytes: JSON columns hold the interface's serde shapes as text.
//! What differs is how concurrency is had:
//!
//! - Every call takes a connection from one pool; PostgreSQL runs writers side by side, so
//!   there is no single writer connection.
//! - A group commit takes its log positions from a sequence and locks only the rows it writes,
//!   so the commits of several nodes run side by side. Order ids and event keys are claimed by
//!   their unique indexes (an insert that finds one being written waits for it, then yields);
//!   visitor rows are locked and their versions checked (see [`write`]).
//! - Many rows go in as one statement per table, their columns bound as arrays and spread by
//!   `UNNEST`.
//! - Read-then-write transactions lock what they read (`FOR UPDATE`) where SQLite relied on
//!   `BEGIN IMMEDIATE` taking the whole database.

mod accounts;
mod analytics;
mod cluster;
mod conversations;
mod insight;
mod leads;
mod outbox;
mod rows;
pub mod testing;
mod write;

use std::time::Duration;

use async_trait::async_trait;
use beckon_engine::rules::RuleSpec;
use beckon_engine::{SessionId, SiteId, Timestamp, VisitorId};
use beckon_store::{
    ActiveVisitors, CommitReport, Exposure, LoggedBatch, Result, RuleSetVersion, SiteRecord, Store,
    StoreError, StoredEvent, VisitorRecord, WriteBatch,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Row};

/// How many connections one node keeps to the database: its group commits, the outbox's worker,
/// the dashboard's reads and the shards' cold loads side by side, well under PostgreSQL's
/// default of 100 connections for three nodes.
pub const MAX_CONNECTIONS: u32 = 16;

/// How long a call may wait for a free connection before it fails. The edge's request timeout
/// and load shedding bound what a client sees; this bounds a stuck pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a statement may run before the database cancels it: a runaway query must not
/// hold a connection (and the locks it took) for ever.
const STATEMENT_TIMEOUT: &str = "60s";

/// The Store on one PostgreSQL database (and schema).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/database`). The schema is
    /// the connection's default, unless `schema` names another (which must exist).
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<PgStore> {
        let mut options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Database(format!("database URL: {e}")))?;
        options = options.options([("statement_timeout", STATEMENT_TIMEOUT)]);
        if let Some(schema) = schema {
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db)?;
        Ok(PgStore { pool })
    }

    /// The pool, for the crate's own modules and for tests that inspect the tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

pub(crate) fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

pub(crate) fn encode(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("cannot encode a record: {e}"))
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(encode)
}

/// Whether `e` is a unique or primary-key violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Writes `rules` as a site's next rule-set version (its policy carried over), in the open
/// transaction on `conn`: when `base` is given the site must still be at that version, else
/// [`StoreError::Conflict`]; `change` records who, when and what. Returns the new version.
/// The site's row is locked until the transaction ends, so concurrent changes queue.
pub(crate) async fn new_rule_set(
    conn: &mut PgConnection,
    site: &SiteId,
    base: Option<u64>,
    rules: &[RuleSpec],
    change: Option<&beckon_store::accounts::Change>,
) -> Result<u64> {
    let rules = json(&rules)?;
    let row = sqlx::query("SELECT policy, version FROM sites WHERE id = $1 FOR NO KEY UPDATE")
        .bind(site.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound(format!("site {site}")))?;
    let current = rows::version_col(&row, "version").map_err(StoreError::Corrupt)?;
    if let Some(base) = base.filter(|b| *b != current) {
        return Err(StoreError::Conflict(format!(
            "the rules of {site} changed since version {base} (now {current}); reload them"
        )));
    }
    let policy: String = rows::col(&row, "policy").map_err(StoreError::Corrupt)?;
    let version = current + 1;
    sqlx::query(
        "INSERT INTO rule_sets (site_id, version, policy, rules, author, changed_at, summary)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(site.as_str())
    .bind(version as i64)
    .bind(policy)
    .bind(rules)
    .bind(change.and_then(|c| c.author))
    .bind(change.map(|c| c.at.as_millis()))
    .bind(change.map(|c| c.summary.as_str()))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query("UPDATE sites SET version = $1 WHERE id = $2")
        .bind(version as i64)
        .bind(site.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(version)
}

/// The rules in force for `site`, as stored (a JSON array), if the site exists.
const RULES_IN_FORCE: &str = "SELECT r.rules FROM sites s
     JOIN rule_sets r ON r.site_id = s.id AND r.version = s.version WHERE s.id = $1";

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(db)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn server_key(&self) -> Result<[u8; 32]> {
        // Made at most once: whichever node inserts first wins, and everyone reads that.
        let fresh: [u8; 32] = rand::random();
        sqlx::query("INSERT INTO server_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(&fresh[..])
            .execute(&self.pool)
            .await
            .map_err(db)?;
        let key: Vec<u8> = sqlx::query_scalar("SELECT key FROM server_key WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        key.try_into()
            .map_err(|k: Vec<u8>| StoreError::Corrupt(format!("server key of {} bytes", k.len())))
    }

    async fn put_site(&self, site: &SiteRecord) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A first record of a site is inserted bare, so that there is a row to lock: two nodes
        // putting the same new site then queue on it instead of both inserting version 1.
        let policy = json(&site.policy)?;
        let origins = json(&site.origins)?;
        let created = sqlx::query(
            "INSERT INTO sites (id, secret, origins, policy, version) VALUES ($1, $2, $3, $4, 1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(site.id.as_str())
        .bind(site.secret.as_str())
        .bind(&origins)
        .bind(&policy)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        let version = if created {
            1
        } else {
            let row = sqlx::query(
                "SELECT id, secret, origins, policy, version FROM sites WHERE id = $1 FOR NO KEY UPDATE",
            )
            .bind(site.id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            // A record that does not decode counts as changed: the new one replaces it.
            let stored = rows::site(&row).ok();
            let old_version = rows::version_col(&row, "version").map_err(StoreError::Corrupt)?;
            if stored.is_some_and(|s| {
                s.secret == site.secret && s.origins == site.origins && s.policy == site.policy
            }) {
                return tx.rollback().await.map_err(db);
            }
            old_version + 1
        };
        // The rules in force carry over to the new version.
        let rules: Option<String> = if created {
            None
        } else {
            sqlx::query_scalar(RULES_IN_FORCE)
                .bind(site.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
        };
        sqlx::query(
            "UPDATE sites SET secret = $2, origins = $3, policy = $4, version = $5 WHERE id = $1",
        )
        .bind(site.id.as_str())
        .bind(site.secret.as_str())
        .bind(&origins)
        .bind(&policy)
        .bind(version as i64)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "INSERT INTO rule_sets (site_id, version, policy, rules) VALUES ($1, $2, $3, $4)",
        )
        .bind(site.id.as_str())
        .bind(version as i64)
        .bind(&policy)
        .bind(rules.unwrap_or_else(|| "[]".to_owned()))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>> {
        let rows =
            sqlx::query("SELECT id, secret, origins, policy, version FROM sites ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.iter().map(rows::site).collect()
    }

    async fn site_versions(&self) -> Result<Vec<(SiteId, u64)>> {
        let rows = sqlx::query("SELECT id, version FROM sites ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let id: &str = rows::col(r, "id").map_err(StoreError::Corrupt)?;
                Ok((
                    SiteId::parse(id)
                        .map_err(|e| StoreError::Corrupt(format!("site {id:?} {e}")))?,
                    rows::version_col(r, "version").map_err(StoreError::Corrupt)?,
                ))
            })
            .collect()
    }

    async fn replace_rules(&self, site: &SiteId, rules: &[RuleSpec]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        new_rule_set(&mut tx, site, None, rules, None).await?;
        tx.commit().await.map_err(db)
    }

    async fn rules(&self, site: &SiteId) -> Result<Vec<RuleSpec>> {
        let rules: Option<String> = sqlx::query_scalar(RULES_IN_FORCE)
            .bind(site.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match rules {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("rules of {site}: {e}"))),
            None => Ok(Vec::new()),
        }
    }

    async fn rule_set(&self, site: &SiteId, version: u64) -> Result<Option<RuleSetVersion>> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        let row =
            sqlx::query("SELECT policy, rules FROM rule_sets WHERE site_id = $1 AND version = $2")
                .bind(site.as_str())
                .bind(v)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.map(|r| {
            Ok(RuleSetVersion {
                version,
                policy: rows::json_col(&r, "policy").map_err(StoreError::Corrupt)?,
                rules: rows::json_col(&r, "rules").map_err(StoreError::Corrupt)?,
            })
        })
        .transpose()
    }

    async fn commit(&self, batch: &WriteBatch) -> Result<CommitReport> {
        if batch.is_empty() {
            return Ok(CommitReport::default());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        match write::commit(&mut tx, batch).await {
            Ok(report) => {
                tx.commit().await.map_err(db)?;
                Ok(report)
            }
            Err(e) => {
                // A failed rollback leaves the transaction to sqlx, which rolls it back before
                // the connection is used again; the commit's error is the one to report.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn known_keys(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        keys: &[String],
    ) -> Result<Vec<String>> {
        let (orders, own): (Vec<&String>, Vec<&String>) = keys
            .iter()
            .partition(|k| k.starts_with(write::ORDER_PREFIX));
        let mut known = Vec::new();
        if !own.is_empty() {
            let own: Vec<&str> = own.iter().map(|k| k.as_str()).collect();
            known.extend(
                sqlx::query_scalar::<_, String>(
                    "SELECT key FROM events
                     WHERE site_id = $1 AND visitor_id = $2 AND key = ANY($3)",
                )
                .bind(site.as_str())
                .bind(visitor.as_str())
                .bind(&own)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?,
            );
        }
        if !orders.is_empty() {
            let ids: Vec<&str> = orders
                .iter()
                .map(|k| &k[write::ORDER_PREFIX.len()..])
                .collect();
            known.extend(
                sqlx::query_scalar::<_, String>(
                    "SELECT 'order:' || order_id FROM orders
                     WHERE site_id = $1 AND order_id = ANY($2)",
                )
                .bind(site.as_str())
                .bind(&ids)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?,
            );
        }
        Ok(known)
    }

    async fn visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Option<VisitorRecord>> {
        let row = sqlx::query(
            "SELECT site_id, visitor_id, schema, profile, session, last_seen, version FROM visitors
             WHERE site_id = $1 AND visitor_id = $2",
        )
        .bind(site.as_str())
        .bind(visitor.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| rows::visitor(&r)).transpose()
    }

    async fn visitor_version(&self, site: &SiteId, visitor: &VisitorId) -> Result<u64> {
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM visitors WHERE site_id = $1 AND visitor_id = $2",
        )
        .bind(site.as_str())
        .bind(visitor.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        u64::try_from(version.unwrap_or(0)).map_err(|_| {
            StoreError::Corrupt(format!("visitor {visitor} of {site}: negative version"))
        })
    }

    async fn active_visitors(&self, since: Timestamp) -> Result<ActiveVisitors> {
        let rows = sqlx::query(
            "SELECT site_id, visitor_id, schema, profile, session, last_seen, version FROM visitors
             WHERE last_seen >= $1 AND session IS NOT NULL ORDER BY last_seen",
        )
        .bind(since.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut active = ActiveVisitors::default();
        for row in &rows {
            match rows::visitor(row) {
                Ok(record) => active.records.push(record),
                Err(e) => {
                    let site: Option<&str> = row.try_get("site_id").ok();
                    let visitor: Option<&str> = row.try_get("visitor_id").ok();
                    tracing::warn!(?site, ?visitor, error = %e, "visitor state not resumed");
                    active.undecodable += 1;
                }
            }
        }
        Ok(active)
    }

    async fn exposures(&self, site: &SiteId) -> Result<Vec<Exposure>> {
        let rows = sqlx::query(
            "SELECT id, site_id, visitor_id, session_id, rule_id, arm, at, message FROM exposures
             WHERE site_id = $1 ORDER BY at, ord",
        )
        .bind(site.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::exposure).collect()
    }

    async fn session_events(&self, site: &SiteId, session: &SessionId) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT b.site_id, b.visitor_id, b.session_id, b.at, e.event_id, e.key, e.kind, e.body,
                    e.applied
             FROM batches b JOIN events e ON e.batch = b.seq
             WHERE b.site_id = $1 AND b.session_id = $2 ORDER BY b.seq, e.position",
        )
        .bind(site.as_str())
        .bind(session.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::stored_event).collect()
    }

    async fn log(
        &self,
        site: &SiteId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, LoggedBatch)>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT seq, site_id, visitor_id, session_id, at, source, user_agent, language,
                    tz_offset, verdict, rules_version, begins
             FROM batches WHERE site_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(site.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut batches = rows
            .iter()
            .map(rows::batch)
            .collect::<Result<Vec<(u64, LoggedBatch)>>>()?;
        if batches.is_empty() {
            return Ok(batches);
        }
        let seqs: Vec<i64> = batches.iter().map(|(seq, _)| *seq as i64).collect();
        let events = sqlx::query(
            "SELECT batch, key, event_id, kind, body, applied FROM events
             WHERE batch = ANY($1) ORDER BY batch, position",
        )
        .bind(&seqs)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        // Both lists are in position order: walk them together.
        let mut i = 0;
        for row in &events {
            let (batch, event) = rows::logged_event(row)?;
            while i < batches.len() && batches[i].0 < batch {
                i += 1;
            }
            match batches.get_mut(i) {
                Some((seq, b)) if *seq == batch => b.events.push(event),
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "event {:?} of a batch {batch} that is not in the log",
                        event.key
                    )));
                }
            }
        }
        Ok(batches)
    }

    async fn prune_log(&self, before: Timestamp, limit: usize) -> Result<usize> {
        if limit == 0 {
            return Ok(0);
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The oldest batches, locked, skipping any another node is pruning at the same moment.
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM batches WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(before.as_millis())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        if seqs.is_empty() {
            return tx.rollback().await.map(|_| 0).map_err(db);
        }
        sqlx::query("DELETE FROM events WHERE batch = ANY($1)")
            .bind(&seqs)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let gone = sqlx::query("DELETE FROM batches WHERE seq = ANY($1)")
            .bind(&seqs)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(gone as usize)
    }
}
