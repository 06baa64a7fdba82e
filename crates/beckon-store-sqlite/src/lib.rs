//! Beckon's embedded storage: [`beckon_store::Store`] on SQLite, the default for `beckon demo`
//! and single-node installs.
//!
//! The database runs in WAL mode with `synchronous = FULL`: a batch acknowledged to a client has
//! reached the disk. Group commit in the server keeps that affordable: one transaction, one
//! sync, for many events, written with a few multi-row statements (see [`write`]); and the
//! server's group commits sync after they return (see [`deferred`]), so that the next group is
//! written while the last one syncs.
//!
//! Two pools share the database. Every write goes through one connection, since SQLite admits
//! one writer at a time anyway and a single connection keeps its prepared statements warm.
//! Reads go through a pool of their own: in WAL mode readers never wait for the writer, so a
//! shard's cold load or key check is never stuck behind a group commit's sync.
//!
//! No commit checkpoints the WAL: [`checkpoint`] does, in the background.

mod accounts;
mod analytics;
pub mod checkpoint;
mod conversations;
mod deferred;
mod insight;
mod leads;
mod outbox;
mod rows;
mod write;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use beckon_engine::rules::RuleSpec;
use beckon_engine::{SessionId, SiteId, Timestamp, VisitorId};
use beckon_store::{
    ActiveVisitors, CommitReport, Exposure, LoggedBatch, Result, RuleSetVersion, SecretDigest,
    SiteRecord, Store, StoreError, StoredEvent, VisitorRecord, WriteBatch,
};
use checkpoint::Checkpointer;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection};

/// How many connections serve reads. Reads are short (one visitor, a few keys, a page of the
/// log); a few connections let a cold-load burst run side by side without holding many files.
pub const READ_CONNECTIONS: u32 = 4;

/// How long a statement waits for a lock before failing (another process writing: `beckon
/// rules import` beside a running server).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, in KiB. What a group commit touches sits at the ends of the trees
/// (the log grows at its end; visitor ids begin with their time, see `Tokens::mint`), so a
/// small cache holds it; anything else is read back from the OS's page cache, not the disk.
/// The cache is memory of the server's own: at 64 MiB it was a sixth of what 20,000 idle
/// sockets cost in `load-report`, and commits ran no faster (SQLite walks the whole cache's
/// hash at the end of each transaction).
const WRITER_CACHE_KIB: u32 = 8 * 1024;

/// Prepared statements kept per connection: the commit path's few multi-row shapes per table,
/// and every read, with room to spare.
const STATEMENT_CACHE: usize = 256;

/// The most keys one `IN (…)` list of a read carries.
const MAX_KEYS_PER_QUERY: usize = 500;

/// The Store on one SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    /// The single write connection.
    writer: SqlitePool,
    /// Connections for reads only (`query_only`).
    readers: SqlitePool,
    /// For an in-memory database, a connection held for the store's lifetime: a shared-cache
    /// memory database lives only while some connection has it open, and the pools may close
    /// theirs.
    _keep_alive: Option<Mutex<SqliteConnection>>,
    /// For a database on disk, the task that copies the WAL back (see [`checkpoint`]).
    _checkpointer: Option<Checkpointer>,
    /// Whether the writer may be at `synchronous = NORMAL` (see [`deferred`]).
    unsynced: deferred::Unsynced,
    /// For a database on disk, its WAL, which [`Store::sync`] syncs.
    wal: Option<deferred::Wal>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .statement_cache_capacity(STATEMENT_CACHE);
        // The writer first: it creates the file and puts it in WAL mode before any reader
        // opens it.
        let unsynced = deferred::Unsynced::default();
        let writer = writer_pool(
            options
                .clone()
                .create_if_missing(true)
                .pragma("wal_autocheckpoint", "0"),
            &unsynced,
        )
        .await?;
        let wal = deferred::Wal::open(&writer).await?;
        let checkpointer = Checkpointer::start(&options).await.map_err(db)?;
        let readers = reader_pool(options).await?;
        Ok(SqliteStore {
            writer,
            readers,
            _keep_alive: None,
            _checkpointer: Some(checkpointer),
            unsynced,
            wal: Some(wal),
        })
    }

    /// A private in-memory database, for tests: a named shared-cache memory database, so that
    /// the writer and the readers see the same data.
    pub async fn in_memory() -> Result<SqliteStore> {
        let name: u64 = rand::random();
        let options = SqliteConnectOptions::new()
            .filename(format!("file:beckon-{name:016x}"))
            .in_memory(true)
            .shared_cache(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .statement_cache_capacity(STATEMENT_CACHE);
        let keep = SqliteConnection::connect_with(&options).await.map_err(db)?;
        let unsynced = deferred::Unsynced::default();
        let writer = writer_pool(options.clone(), &unsynced).await?;
        let readers = reader_pool(options).await?;
        Ok(SqliteStore {
            writer,
            readers,
            _keep_alive: Some(Mutex::new(keep)),
            _checkpointer: None,
            unsynced,
            wal: None,
        })
    }

    /// A group commit in one IMMEDIATE transaction on the writer; `synced`: durable when it
    /// returns, else once [`Store::sync`] has returned after it.
    async fn group_commit(&self, batch: &WriteBatch, synced: bool) -> Result<CommitReport> {
        if batch.is_empty() {
            return Ok(CommitReport::default());
        }
        let mut conn = self.writer.acquire().await.map_err(db)?;
        if !synced {
            self.unsynced.begin(&mut conn).await?;
        }
        // IMMEDIATE: take the write lock at once, so that the positions the commit gives its
        // batches cannot be taken by another process between reading and writing.
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
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
}

/// How long a call may wait for a connection. Connections here are only ever held by Beckon's
/// own short statements (one writer, a few readers), so a wait ends when they do; the edge's
/// request timeout and load shedding bound what a client sees. A short timeout would only fire
/// spuriously — on a test's paused clock, tokio jumps straight to it while SQLite works on its
/// own thread.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

// Neither pool pings a connection before lending it (sqlx's default): each ping is one more
// round trip to the connection's thread on every read and every commit, and a SQLite
// connection is a file, not a socket that can go stale; a statement that fails says so.
async fn writer_pool(
    options: SqliteConnectOptions,
    unsynced: &deferred::Unsynced,
) -> Result<SqlitePool> {
    // One connection, never recycled: its statement cache holds the commit path's statements.
    // Statement journals (the undo copies a multi-row insert keeps so that it can fail alone)
    // stay in memory rather than in a temporary file written on every statement.
    let options = options
        .pragma("cache_size", format!("-{}", WRITER_CACHE_KIB))
        .pragma("temp_store", "MEMORY");
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .after_release(unsynced.hook())
        .connect_with(options)
        .await
        .map_err(db)
}

async fn reader_pool(options: SqliteConnectOptions) -> Result<SqlitePool> {
    // Every reader is opened at once and kept: a read never waits for a connection to be
    // made (nor, on a test's paused clock, for a connect timeout to be jumped to).
    SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .min_connections(READ_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options.pragma("query_only", "ON"))
        .await
        .map_err(db)
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

/// A SQL placeholder list of `n` parameters: `?, ?, ?`.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Writes `rules` as a site's next rule-set version (its policy carried over), in one
/// transaction: when `base` is given the site must still be at that version, else
/// [`StoreError::Conflict`]; `change` records who, when and what. Returns the new version.
pub(crate) async fn new_rule_set(
    writer: &SqlitePool,
    site: &SiteId,
    base: Option<u64>,
    rules: &[RuleSpec],
    change: Option<&beckon_store::accounts::Change>,
) -> Result<u64> {
    let rules = json(&rules)?;
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let row = sqlx::query("SELECT policy, version FROM sites WHERE id = ?")
        .bind(site.as_str())
        .fetch_optional(&mut *tx)
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
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(site.as_str())
    .bind(version as i64)
    .bind(policy)
    .bind(rules)
    .bind(change.and_then(|c| c.author))
    .bind(change.map(|c| c.at.as_millis()))
    .bind(change.map(|c| c.summary.as_str()))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query("UPDATE sites SET version = ? WHERE id = ?")
        .bind(version as i64)
        .bind(site.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(version)
}

/// Replaces secret keys stored in the clear (by versions before digests were kept) with their
/// digests. Runs on every migration; once done it finds nothing.
async fn digest_plain_secrets(writer: &SqlitePool) -> Result<()> {
    let plain: Vec<(String, String)> =
        sqlx::query_as("SELECT id, secret FROM sites WHERE substr(secret, 1, 7) <> 'sha256:'")
            .fetch_all(writer)
            .await
            .map_err(db)?;
    for (id, secret) in plain {
        sqlx::query("UPDATE sites SET secret = ? WHERE id = ?")
            .bind(SecretDigest::of(&secret).as_str())
            .bind(&id)
            .execute(writer)
            .await
            .map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations")
            .run(&self.writer)
            .await
            .map_err(db)?;
        digest_plain_secrets(&self.writer).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn server_key(&self) -> Result<[u8; 32]> {
        // Made at most once: whichever process inserts first wins, and everyone reads that.
        let fresh: [u8; 32] = rand::random();
        sqlx::query("INSERT OR IGNORE INTO server_key (id, key) VALUES (1, ?)")
            .bind(&fresh[..])
            .execute(&self.writer)
            .await
            .map_err(db)?;
        let key: Vec<u8> = sqlx::query_scalar("SELECT key FROM server_key WHERE id = 1")
            .fetch_one(&self.writer)
            .await
            .map_err(db)?;
        key.try_into()
            .map_err(|k: Vec<u8>| StoreError::Corrupt(format!("server key of {} bytes", k.len())))
    }

    async fn put_site(&self, site: &SiteRecord) -> Result<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let current =
            sqlx::query("SELECT id, secret, origins, policy, version FROM sites WHERE id = ?")
                .bind(site.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let version = match current {
            Some(row) => {
                // A record that does not decode counts as changed: the new one replaces it.
                let stored = rows::site(&row).ok();
                let old_version =
                    rows::version_col(&row, "version").map_err(StoreError::Corrupt)?;
                if stored.is_some_and(|s| {
                    s.secret == site.secret && s.origins == site.origins && s.policy == site.policy
                }) {
                    return tx.rollback().await.map_err(db);
                }
                old_version + 1
            }
            None => 1,
        };
        // The rules in force carry over to the new version.
        let rules: Option<String> = sqlx::query_scalar(
            "SELECT r.rules FROM sites s JOIN rule_sets r ON r.site_id = s.id AND r.version = s.version
             WHERE s.id = ?",
        )
        .bind(site.id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let policy = json(&site.policy)?;
        sqlx::query(
            "INSERT INTO sites (id, secret, origins, policy, version) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET secret = excluded.secret, origins = excluded.origins,
             policy = excluded.policy, version = excluded.version",
        )
        .bind(site.id.as_str())
        .bind(site.secret.as_str())
        .bind(json(&site.origins)?)
        .bind(&policy)
        .bind(version as i64)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("INSERT INTO rule_sets (site_id, version, policy, rules) VALUES (?, ?, ?, ?)")
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
                .fetch_all(&self.readers)
                .await
                .map_err(db)?;
        rows.iter().map(rows::site).collect()
    }

    async fn site_versions(&self) -> Result<Vec<(SiteId, u64)>> {
        let rows = sqlx::query("SELECT id, version FROM sites ORDER BY id")
            .fetch_all(&self.readers)
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
        new_rule_set(&self.writer, site, None, rules, None)
            .await
            .map(|_| ())
    }

    async fn rules(&self, site: &SiteId) -> Result<Vec<RuleSpec>> {
        let rules: Option<String> = sqlx::query_scalar(
            "SELECT r.rules FROM sites s JOIN rule_sets r ON r.site_id = s.id AND r.version = s.version
             WHERE s.id = ?",
        )
        .bind(site.as_str())
        .fetch_optional(&self.readers)
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
            sqlx::query("SELECT policy, rules FROM rule_sets WHERE site_id = ? AND version = ?")
                .bind(site.as_str())
                .bind(v)
                .fetch_optional(&self.readers)
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
        self.group_commit(batch, true).await
    }

    async fn commit_unsynced(&self, batch: &WriteBatch) -> Result<CommitReport> {
        self.group_commit(batch, false).await
    }

    async fn sync(&self) -> Result<()> {
        match &self.wal {
            Some(wal) => wal.sync().await,
            // A memory database has nothing to sync.
            None => Ok(()),
        }
    }

    async fn known_keys(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        keys: &[String],
    ) -> Result<Vec<String>> {
        let (orders, own): (Vec<&String>, Vec<&String>) =
            keys.iter().partition(|k| k.starts_with("order:"));
        let mut known = Vec::new();
        for chunk in own.chunks(MAX_KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT key FROM events WHERE site_id = ? AND visitor_id = ? AND key IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql)
                .bind(site.as_str())
                .bind(visitor.as_str());
            for k in chunk {
                query = query.bind(k.as_str());
            }
            known.extend(query.fetch_all(&self.readers).await.map_err(db)?);
        }
        for chunk in orders.chunks(MAX_KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT 'order:' || order_id FROM orders WHERE site_id = ? AND order_id IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind(site.as_str());
            for k in chunk {
                query = query.bind(&k["order:".len()..]);
            }
            known.extend(query.fetch_all(&self.readers).await.map_err(db)?);
        }
        Ok(known)
    }

    async fn visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Option<VisitorRecord>> {
        let row = sqlx::query(
            "SELECT site_id, visitor_id, schema, profile, session, last_seen, version FROM visitors
             WHERE site_id = ? AND visitor_id = ?",
        )
        .bind(site.as_str())
        .bind(visitor.as_str())
        .fetch_optional(&self.readers)
        .await
        .map_err(db)?;
        row.map(|r| rows::visitor(&r)).transpose()
    }

    async fn visitor_version(&self, site: &SiteId, visitor: &VisitorId) -> Result<u64> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM visitors WHERE site_id = ? AND visitor_id = ?")
                .bind(site.as_str())
                .bind(visitor.as_str())
                .fetch_optional(&self.readers)
                .await
                .map_err(db)?;
        u64::try_from(version.unwrap_or(0)).map_err(|_| {
            StoreError::Corrupt(format!("visitor {visitor} of {site}: negative version"))
        })
    }

    async fn active_visitors(&self, since: Timestamp) -> Result<ActiveVisitors> {
        let rows = sqlx::query(
            "SELECT site_id, visitor_id, schema, profile, session, last_seen, version FROM visitors
             WHERE last_seen >= ? AND session IS NOT NULL ORDER BY last_seen",
        )
        .bind(since.as_millis())
        .fetch_all(&self.readers)
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
             WHERE site_id = ? ORDER BY at, rowid",
        )
        .bind(site.as_str())
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        rows.iter().map(rows::exposure).collect()
    }

    async fn session_events(&self, site: &SiteId, session: &SessionId) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT b.site_id, b.visitor_id, b.session_id, b.at, e.event_id, e.key, e.kind, e.body,
                    e.applied
             FROM batches b JOIN events e ON e.batch = b.seq
             WHERE b.site_id = ? AND b.session_id = ? ORDER BY b.seq, e.position",
        )
        .bind(site.as_str())
        .bind(session.as_str())
        .fetch_all(&self.readers)
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
             FROM batches WHERE site_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(site.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        let mut batches = rows
            .iter()
            .map(rows::batch)
            .collect::<Result<Vec<(u64, LoggedBatch)>>>()?;
        let (Some((first, _)), Some((last, _))) = (batches.first(), batches.last()) else {
            return Ok(batches);
        };
        let events = sqlx::query(
            "SELECT batch, key, event_id, kind, body, applied FROM events
             WHERE batch BETWEEN ? AND ? AND +site_id = ? ORDER BY batch, position",
        )
        .bind(*first as i64)
        .bind(*last as i64)
        .bind(site.as_str())
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        // (`+site_id`: the batch range, not the site's whole index, drives the read, so a page
        // costs its own size however long the log grows.) Both lists are in position order:
        // walk them together.
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
        // By age, through `batches_by_age`: ordering by `seq` would scan the whole log on every
        // call (and the last call of a prune finds nothing), holding the writer meanwhile.
        let oldest = "SELECT seq FROM batches WHERE at < ? ORDER BY at LIMIT ?";
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        // Events first, explicitly, so that pruning does not depend on each connection having
        // foreign keys (and so the cascade) enabled.
        sqlx::query(&format!("DELETE FROM events WHERE batch IN ({oldest})"))
            .bind(before.as_millis())
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let gone = sqlx::query(&format!("DELETE FROM batches WHERE seq IN ({oldest})"))
            .bind(before.as_millis())
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(gone as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sync_level(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.writer)
            .await
            .unwrap()
    }

    fn one_event(key: &str) -> WriteBatch {
        events_batch(&[key])
    }

    fn events_batch(keys: &[&str]) -> WriteBatch {
        use beckon_engine::EventId;
        use beckon_store::{Applied, BatchContext, LoggedBatch, LoggedEvent, Source, Verdict};
        WriteBatch {
            batches: vec![LoggedBatch {
                site: SiteId::parse("deferred").unwrap(),
                visitor: VisitorId::parse("v").unwrap(),
                session: Some(SessionId::parse("s").unwrap()),
                at: Timestamp::from_millis(1),
                source: Source::Browser,
                context: BatchContext::default(),
                verdict: Verdict::Human,
                rules_version: 1,
                begins: None,
                events: keys
                    .iter()
                    .map(|key| LoggedEvent {
                        key: (*key).to_owned(),
                        id: EventId::parse(key).unwrap(),
                        kind: "activity".to_owned(),
                        body: "{}".to_owned(),
                        applied: Applied::Decided,
                    })
                    .collect(),
            }],
            ..WriteBatch::default()
        }
    }

    /// A deferred group commit runs at `synchronous = NORMAL`, and every other write must still
    /// sync as it commits: the writer is back at `FULL` (2) however the deferred commit ended —
    /// landed, refused, or dropped half-way.
    #[tokio::test]
    async fn the_writer_syncs_every_other_write_however_a_deferred_commit_ended() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("beckon.db"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        assert_eq!(sync_level(&store).await, 2);
        store.commit_unsynced(&one_event("k1")).await.unwrap();
        assert_eq!(sync_level(&store).await, 2, "after a commit that landed");
        store.sync().await.unwrap();
        assert!(store.commit_unsynced(&one_event("k1")).await.is_err());
        assert_eq!(sync_level(&store).await, 2, "after a refused commit");
        // Driven until it has put the writer at NORMAL, then on into its transaction (thousands
        // of rows take several statements), and dropped there.
        let keys: Vec<String> = (0..4_000).map(|i| format!("cut{i}")).collect();
        let big = events_batch(&keys.iter().map(String::as_str).collect::<Vec<_>>());
        let mut commit = Box::pin(store.commit_unsynced(&big));
        while !store.unsynced.is_set() {
            assert!(futures::poll!(commit.as_mut()).is_pending(), "not cut off");
            tokio::task::yield_now().await;
        }
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_micros(300)).await;
            assert!(futures::poll!(commit.as_mut()).is_pending(), "not cut off");
        }
        drop(commit);
        assert_eq!(sync_level(&store).await, 2, "after a commit cut off");
        assert!(store.commit_unsynced(&one_event("k3")).await.is_ok());
        store.sync().await.unwrap();
    }

    /// The WAL synced is the one SQLite writes, also when the database is a symlink (SQLite
    /// puts the WAL beside the link's target).
    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlinked_database_syncs_the_wal_beside_its_target() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real").join("beckon.db");
        SqliteStore::open(&target)
            .await
            .unwrap()
            .migrate()
            .await
            .unwrap();
        let link = dir.path().join("beckon.db");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let store = SqliteStore::open(&link).await.unwrap();
        store.commit_unsynced(&one_event("k1")).await.unwrap();
        store.sync().await.unwrap();
        let synced = store.wal.as_ref().unwrap().file().metadata().unwrap();
        let written = std::fs::metadata(dir.path().join("real").join("beckon.db-wal")).unwrap();
        assert_eq!((synced.dev(), synced.ino()), (written.dev(), written.ino()));
        assert!(!dir.path().join("beckon.db-wal").exists());
    }

    /// Reads go through their own pool: with the store's own write connection in the middle of
    /// a transaction (as during a group commit's sync), a cold load still answers at once. With
    /// one shared connection the read would queue behind the transaction and time out here.
    #[tokio::test]
    async fn reads_answer_while_the_writer_holds_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("beckon.db"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let site = SiteId::parse("held").unwrap();
        let visitor = VisitorId::parse("v").unwrap();
        let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query(
            "INSERT INTO visitors (site_id, visitor_id, schema, profile, session, last_seen)
             VALUES ('held', 'v', 2, '{}', NULL, 1)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        let read = tokio::time::timeout(Duration::from_secs(2), async {
            (
                store.visitor(&site, &visitor).await,
                store.known_keys(&site, &visitor, &["k".to_owned()]).await,
                store.ping().await,
            )
        })
        .await
        .expect("reads answered while the write transaction was open");
        // The uncommitted row is not visible; the reads did not wait for it.
        assert!(read.0.unwrap().is_none());
        assert!(read.1.unwrap().is_empty());
        read.2.unwrap();
        tx.commit().await.unwrap();
        assert!(store.visitor(&site, &visitor).await.unwrap().is_some());
    }
}
