//! The group commit: one transaction, and as few statements as the data allows.
//!
//! A group commit from the server's writer holds up to a few hundred batches of about ten
//! events. Every statement is a round trip through sqlx's SQLite worker thread, so each table
//! gets multi-row `INSERT`s, not a statement per row: the rows go in chunks whose sizes are
//! powers of two (so that a handful of statement texts cover every commit and stay in the
//! connection's prepared-statement cache), each under SQLite's bound-parameter limit.
//!
//! Duplicates are found from what the inserts did, not by reading before every insert: event
//! rows go in with `ON CONFLICT DO NOTHING`, and only when fewer rows went in than were sent
//! does one range read name the ones that did not. `order:` keys, unique per site rather than
//! per visitor and rare (a conversion with an order id), are checked against `orders` first.

use std::collections::{HashMap, HashSet};

use beckon_engine::{Profile, SiteId, VisitorId};
use beckon_store::{
    Applied, CommitReport, LoggedEvent, Result, StoreError, VISITOR_SCHEMA, VisitorWrite,
    WriteBatch,
};
use serde::Serialize;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Row, Sqlite, SqliteConnection};

use crate::rows::arm_name;
use crate::{db, encode};

/// The most parameters one statement may bind: SQLite's `SQLITE_MAX_VARIABLE_NUMBER` (the
/// default since 3.32, and the value of the bundled library).
const MAX_PARAMS: usize = 32_766;

/// The most rows one `INSERT` carries. Larger statements save little (the round trip is paid
/// once per chunk either way) and cost more to prepare and to keep in the statement cache.
const MAX_ROWS: usize = 256;

/// The prefix of an idempotency key that is unique per site, not per visitor.
const ORDER_PREFIX: &str = "order:";

/// One bound value.
enum Param<'a> {
    Int(i64),
    Text(&'a str),
    Owned(String),
    Null,
}

/// Rows for one table, flattened: `cols` values per row.
struct Rows<'a> {
    cols: usize,
    params: Vec<Param<'a>>,
}

impl<'a> Rows<'a> {
    fn new(cols: usize, rows: usize) -> Self {
        Rows {
            cols,
            params: Vec::with_capacity(cols * rows),
        }
    }

    fn len(&self) -> usize {
        self.params.len() / self.cols
    }

    fn int(&mut self, v: i64) -> &mut Self {
        self.params.push(Param::Int(v));
        self
    }

    fn text(&mut self, v: &'a str) -> &mut Self {
        self.params.push(Param::Text(v));
        self
    }

    fn owned(&mut self, v: String) -> &mut Self {
        self.params.push(Param::Owned(v));
        self
    }

    fn opt_text(&mut self, v: Option<&'a str>) -> &mut Self {
        self.params.push(v.map_or(Param::Null, Param::Text));
        self
    }

    fn opt_owned(&mut self, v: Option<String>) -> &mut Self {
        self.params.push(v.map_or(Param::Null, Param::Owned));
        self
    }
}

/// The sizes of the chunks `n` rows go in: the largest power of two that fits, repeatedly.
fn chunk_sizes(mut n: usize, cols: usize) -> impl Iterator<Item = usize> {
    let cap = MAX_ROWS.min(MAX_PARAMS / cols);
    // The largest power of two not above the cap, so that every size is one of a few.
    let cap = 1usize << (usize::BITS - 1 - cap.leading_zeros());
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= cap {
            cap
        } else {
            1usize << (usize::BITS - 1 - n.leading_zeros())
        };
        n -= size;
        Some(size)
    })
}

/// `head` + `(?, …), (?, …)` for `rows` rows of `cols` + `tail`.
fn values_sql(head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * (row.len() + 2));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql.push_str(tail);
    sql
}

/// Inserts `rows` with as few statements as the limits allow; returns the rows affected.
async fn insert(
    conn: &mut SqliteConnection,
    head: &str,
    tail: &str,
    rows: Rows<'_>,
) -> Result<u64> {
    let cols = rows.cols;
    let n = rows.len();
    let mut params = rows.params.into_iter();
    let mut affected = 0;
    for size in chunk_sizes(n, cols) {
        let sql = values_sql(head, cols, size, tail);
        let mut query = sqlx::query::<Sqlite>(&sql);
        for p in params.by_ref().take(size * cols) {
            query = match p {
                Param::Int(v) => query.bind(v),
                Param::Text(v) => query.bind(v),
                Param::Owned(v) => query.bind(v),
                Param::Null => query.bind(None::<&str>),
            };
        }
        affected += query.execute(&mut *conn).await.map_err(db)?.rows_affected();
    }
    Ok(affected)
}

/// Binds `values` to a query whose text has as many `?`.
fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    values: impl IntoIterator<Item = &'q str>,
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
    for v in values {
        query = query.bind(v);
    }
    query
}

/// One visitor's writes in a commit, folded into one.
struct Coalesced<'a> {
    site: &'a SiteId,
    visitor: &'a VisitorId,
    profile: Option<&'a Profile>,
    write: &'a VisitorWrite,
    /// The first write's fence: the version the stored state must be at.
    expect: Option<u64>,
    /// How many writes were folded: the version goes up by this much.
    writes: u64,
    /// Every folded write's fence follows the first's (the n-th names the first's version plus
    /// n - 1): writes built on one state in turn. Otherwise the fold is stale.
    in_turn: bool,
}

/// Folds repeated writes of a visitor: the last session (and last-seen time) wins, and the last
/// profile that is set wins; a visitor none of whose writes set a profile keeps the stored one.
fn coalesce(writes: &[VisitorWrite]) -> Vec<Coalesced<'_>> {
    let mut index: HashMap<(&SiteId, &VisitorId), usize> = HashMap::new();
    let mut out: Vec<Coalesced<'_>> = Vec::with_capacity(writes.len());
    for w in writes {
        match index.get(&(&w.site, &w.visitor)) {
            Some(&i) => {
                let c = &mut out[i];
                c.in_turn &= match (c.expect, w.expect) {
                    (Some(first), Some(e)) => e == first + c.writes,
                    // A fenced write after an unfenced one cannot be checked: refused.
                    (None, Some(_)) => false,
                    (_, None) => true,
                };
                c.write = w;
                c.writes += 1;
                if let Some(p) = &w.profile {
                    c.profile = Some(p);
                }
            }
            None => {
                index.insert((&w.site, &w.visitor), out.len());
                out.push(Coalesced {
                    site: &w.site,
                    visitor: &w.visitor,
                    profile: w.profile.as_ref(),
                    write: w,
                    expect: w.expect,
                    writes: 1,
                    in_turn: true,
                });
            }
        }
    }
    out
}

/// An event of the commit, with where it goes.
struct Planned<'a> {
    batch: usize,
    position: usize,
    site: &'a SiteId,
    visitor: &'a VisitorId,
    event: &'a LoggedEvent,
}

impl Planned<'_> {
    fn order_id(&self) -> Option<&str> {
        self.event.key.strip_prefix(ORDER_PREFIX)
    }

    fn duplicate(&self) -> StoreError {
        StoreError::Duplicate {
            site: self.site.clone(),
            visitor: self.visitor.clone(),
            key: self.event.key.clone(),
        }
    }
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(encode)
}

/// Writes `batch` inside the open transaction on `conn`. On error the caller rolls back.
pub(crate) async fn commit(
    conn: &mut SqliteConnection,
    batch: &WriteBatch,
) -> Result<CommitReport> {
    let mut report = CommitReport::default();

    // The fences first: a write built on a version another node moved on is refused as stale,
    // whatever else of it would have failed (a batch the new owner logged already is a
    // duplicate too, but the writer must hear that it lost the visitor).
    if !batch.visitors.is_empty() {
        write_visitors(conn, &coalesce(&batch.visitors)).await?;
    }

    // Which events go in. Order keys first: they are unique per site, which the events table's
    // per-visitor constraint cannot see, and they are few, so one read of the ones in this
    // commit is cheap.
    let mut planned: Vec<Planned<'_>> = Vec::with_capacity(batch.event_count());
    for (b, logged) in batch.batches.iter().enumerate() {
        for (p, event) in logged.events.iter().enumerate() {
            planned.push(Planned {
                batch: b,
                position: p,
                site: &logged.site,
                visitor: &logged.visitor,
                event,
            });
        }
    }
    let known_orders = known_orders(conn, &planned).await?;
    let mut orders_seen: HashSet<(&SiteId, &str)> = HashSet::new();
    let mut to_insert: Vec<&Planned<'_>> = Vec::with_capacity(planned.len());
    for p in &planned {
        if let Some(order) = p.order_id() {
            let key = (p.site, order);
            if known_orders.contains(&key) || !orders_seen.insert(key) {
                if p.event.applied == Applied::Decided {
                    return Err(p.duplicate());
                }
                report.skipped += 1;
                continue;
            }
        }
        to_insert.push(p);
    }

    // Batches take positions after the last ever given (AUTOINCREMENT's record, so that a
    // position is never reused even after every batch before it was pruned). The transaction
    // holds the write lock, so nobody else can take them meanwhile.
    let base: i64 = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'batches'")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .unwrap_or(0);
    let seq = |b: usize| base + 1 + b as i64;

    if !batch.batches.is_empty() {
        let encoded: Vec<(String, Option<String>)> = batch
            .batches
            .iter()
            .map(|b| Ok((json(&b.verdict)?, b.begins.as_ref().map(json).transpose()?)))
            .collect::<Result<_>>()?;
        let mut rows = Rows::new(12, batch.batches.len());
        for (i, (b, (verdict, begins))) in batch.batches.iter().zip(encoded).enumerate() {
            rows.int(seq(i))
                .text(b.site.as_str())
                .text(b.visitor.as_str())
                .opt_text(b.session.as_ref().map(|s| s.as_str()))
                .int(b.at.as_millis())
                .text(b.source.as_str())
                .text(&b.context.user_agent)
                .opt_text(b.context.language.as_deref())
                .int(i64::from(b.context.tz_offset_minutes))
                .owned(verdict)
                .int(b.rules_version as i64)
                .opt_owned(begins);
        }
        insert(
            conn,
            "INSERT INTO batches (seq, site_id, visitor_id, session_id, at, source, user_agent, \
             language, tz_offset, verdict, rules_version, begins) VALUES ",
            "",
            rows,
        )
        .await?;
    }

    if !to_insert.is_empty() {
        let mut rows = Rows::new(9, to_insert.len());
        for p in &to_insert {
            rows.int(seq(p.batch))
                .int(p.position as i64)
                .text(p.site.as_str())
                .text(p.visitor.as_str())
                .text(&p.event.key)
                .text(p.event.id.as_str())
                .text(&p.event.kind)
                .text(&p.event.body)
                .owned(p.event.applied.to_stored());
        }
        let inserted = insert(
            conn,
            "INSERT INTO events (batch, position, site_id, visitor_id, key, event_id, kind, body, \
             applied) VALUES ",
            " ON CONFLICT (site_id, visitor_id, key) DO NOTHING",
            rows,
        )
        .await? as usize;
        report.inserted = inserted;

        let mut went_in: Option<HashSet<(i64, i64)>> = None;
        if inserted < to_insert.len() {
            // Some keys were already logged (or repeated within this commit): find which.
            let rows =
                sqlx::query("SELECT batch, position FROM events WHERE batch BETWEEN ? AND ?")
                    .bind(seq(0))
                    .bind(seq(batch.batches.len() - 1))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db)?;
            let present: HashSet<(i64, i64)> = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<std::result::Result<_, sqlx::Error>>()
                .map_err(db)?;
            for p in &to_insert {
                if !present.contains(&(seq(p.batch), p.position as i64)) {
                    if p.event.applied == Applied::Decided {
                        return Err(p.duplicate());
                    }
                    report.skipped += 1;
                }
            }
            went_in = Some(present);
        }

        let mut rows = Rows::new(4, 0);
        for p in &to_insert {
            let Some(order) = p.order_id() else { continue };
            let logged = went_in
                .as_ref()
                .is_none_or(|w| w.contains(&(seq(p.batch), p.position as i64)));
            if logged {
                rows.text(p.site.as_str())
                    .text(order)
                    .text(p.visitor.as_str())
                    .int(seq(p.batch));
            }
        }
        if rows.len() > 0 {
            insert(
                conn,
                "INSERT INTO orders (site_id, order_id, visitor_id, batch) VALUES ",
                " ON CONFLICT (site_id, order_id) DO NOTHING",
                rows,
            )
            .await?;
        }
    }

    if !batch.exposures.is_empty() {
        let mut rows = Rows::new(8, batch.exposures.len());
        for x in &batch.exposures {
            rows.text(&x.id)
                .text(x.site.as_str())
                .text(x.visitor.as_str())
                .text(x.session.as_str())
                .text(x.rule.as_str())
                .text(arm_name(x.arm))
                .int(x.at.as_millis())
                .text(&x.message);
        }
        // No conflict clause: an exposure id is issued once, so a repeat is a bug upstream and
        // must fail the commit rather than vanish.
        insert(
            conn,
            "INSERT INTO exposures (id, site_id, visitor_id, session_id, rule_id, arm, at, \
             message) VALUES ",
            "",
            rows,
        )
        .await?;
    }

    // Leads are rare (an address left in a form): a statement or two each is fine.
    for lead in &batch.leads {
        crate::leads::insert_lead(conn, lead).await?;
    }
    Ok(report)
}

/// The `order:` keys of this commit that the site's orders already hold.
async fn known_orders<'a>(
    conn: &mut SqliteConnection,
    planned: &[Planned<'a>],
) -> Result<HashSet<(&'a SiteId, &'a str)>> {
    let mut by_site: HashMap<&'a SiteId, Vec<&'a str>> = HashMap::new();
    for p in planned {
        if let Some(order) = p.event.key.strip_prefix(ORDER_PREFIX) {
            by_site.entry(p.site).or_default().push(order);
        }
    }
    let mut known = HashSet::new();
    for (site, orders) in by_site {
        for chunk in orders.chunks(MAX_ROWS) {
            let sql = format!(
                "SELECT order_id FROM orders WHERE site_id = ? AND order_id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let query = bind_all(sqlx::query(&sql).bind(site.as_str()), chunk.iter().copied());
            for row in query.fetch_all(&mut *conn).await.map_err(db)? {
                let id: String = row.try_get(0).map_err(db)?;
                if let Some(o) = chunk.iter().find(|o| **o == id) {
                    known.insert((site, *o));
                }
            }
        }
    }
    Ok(known)
}

/// The stored versions of `visitors` (a visitor with no row is at 0), read inside the commit's
/// transaction: the writer's lock holds them until it ends.
async fn stored_versions<'a>(
    conn: &mut SqliteConnection,
    visitors: &[Coalesced<'a>],
) -> Result<HashMap<(&'a SiteId, &'a VisitorId), i64>> {
    let index: HashMap<(&str, &str), (&'a SiteId, &'a VisitorId)> = visitors
        .iter()
        .map(|v| ((v.site.as_str(), v.visitor.as_str()), (v.site, v.visitor)))
        .collect();
    let mut stored = HashMap::with_capacity(visitors.len());
    for chunk in visitors.chunks(MAX_ROWS) {
        let sql = format!(
            "SELECT site_id, visitor_id, version FROM visitors WHERE (site_id, visitor_id) IN \
             (VALUES {})",
            vec!["(?, ?)"; chunk.len()].join(", ")
        );
        let query = bind_all(
            sqlx::query(&sql),
            chunk
                .iter()
                .flat_map(|v| [v.site.as_str(), v.visitor.as_str()]),
        );
        for row in query.fetch_all(&mut *conn).await.map_err(db)? {
            let site: &str = row.try_get(0).map_err(db)?;
            let visitor: &str = row.try_get(1).map_err(db)?;
            let version: i64 = row.try_get(2).map_err(db)?;
            if let Some(key) = index.get(&(site, visitor)) {
                stored.insert(*key, version);
            }
        }
    }
    Ok(stored)
}

/// Upserts the coalesced visitor states: those with a new profile replace the row's profile and
/// schema; the others keep the stored profile (a first write without one stores the default).
/// A write whose fence names another version than the stored one fails the commit as
/// [`StoreError::Stale`].
async fn write_visitors(conn: &mut SqliteConnection, visitors: &[Coalesced<'_>]) -> Result<()> {
    let stored = stored_versions(conn, visitors).await?;
    let default_profile = json(&Profile::default())?;
    let schema = i64::from(VISITOR_SCHEMA);
    let mut with_profile = Rows::new(7, visitors.len());
    let mut without = Rows::new(7, 0);
    for v in visitors {
        let version = stored.get(&(v.site, v.visitor)).copied().unwrap_or(0);
        if !v.in_turn || v.expect.is_some_and(|e| e as i64 != version) {
            return Err(StoreError::Stale {
                site: v.site.clone(),
                visitor: v.visitor.clone(),
            });
        }
        let session = v.write.session.as_ref().map(json).transpose()?;
        let rows = if v.profile.is_some() {
            &mut with_profile
        } else {
            &mut without
        };
        rows.text(v.site.as_str())
            .text(v.visitor.as_str())
            .int(schema)
            .owned(match v.profile {
                Some(p) => json(p)?,
                None => default_profile.clone(),
            })
            .opt_owned(session)
            .int(v.write.last_seen.as_millis())
            .int(version + v.writes as i64);
    }
    let head = "INSERT INTO visitors (site_id, visitor_id, schema, profile, session, last_seen, \
                version) VALUES ";
    if with_profile.len() > 0 {
        insert(
            conn,
            head,
            " ON CONFLICT (site_id, visitor_id) DO UPDATE SET schema = excluded.schema, \
             profile = excluded.profile, session = excluded.session, \
             last_seen = excluded.last_seen, version = excluded.version",
            with_profile,
        )
        .await?;
    }
    if without.len() > 0 {
        // The schema is left as stored: a row of another version keeps reading as undecodable
        // rather than passing off its old profile as a current one.
        insert(
            conn,
            head,
            " ON CONFLICT (site_id, visitor_id) DO UPDATE SET session = excluded.session, \
             last_seen = excluded.last_seen, version = excluded.version",
            without,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_in_a_few_sizes_under_the_limits() {
        for cols in [4, 9, 12] {
            for n in [0, 1, 7, 255, 256, 257, 500, 5_000] {
                let sizes: Vec<usize> = chunk_sizes(n, cols).collect();
                assert_eq!(sizes.iter().sum::<usize>(), n);
                assert!(sizes.iter().all(|s| s.is_power_of_two()));
                assert!(
                    sizes
                        .iter()
                        .all(|s| s * cols <= MAX_PARAMS && *s <= MAX_ROWS)
                );
            }
        }
        // 5000 rows: 19 full chunks, then 128 + 8.
        assert_eq!(chunk_sizes(5_000, 9).count(), 21);
    }
}
