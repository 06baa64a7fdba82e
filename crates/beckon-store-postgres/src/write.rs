//! The group commit: one transaction, one statement per table.
//!
//! Each table's rows are bound column by column, as arrays, and spread back into rows by
//! `UNNEST`: however many batches a commit holds, the statement text is the same, so it is
//! prepared once per connection, and a commit costs a handful of round trips.
//!
//! Duplicates are found from what the inserts did: event rows go in with `ON CONFLICT DO
//! NOTHING … RETURNING`, which names the rows that went in. `order:` keys, unique per site rather
//! than per visitor, go into `orders` first, the same way: an order another commit (of any node)
//! logged, or is logging at this moment, does not come back, and its event is a duplicate.
//! Nothing here takes a lock wider than the rows written, so the commits of several nodes run
//! side by side.

use std::collections::{HashMap, HashSet};

use beckon_engine::{Profile, SiteId, VisitorId};
use beckon_store::{
    Applied, CommitReport, LoggedEvent, Result, StoreError, VISITOR_SCHEMA, VisitorWrite,
    WriteBatch,
};
use sqlx::{PgConnection, Row};

use crate::rows::arm_name;
use crate::{db, json};

/// The prefix of an idempotency key that is unique per site, not per visitor.
pub(crate) const ORDER_PREFIX: &str = "order:";

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

/// Writes `batch` inside the open transaction on `conn`. On error the caller rolls back.
pub(crate) async fn commit(conn: &mut PgConnection, batch: &WriteBatch) -> Result<CommitReport> {
    let mut report = CommitReport::default();

    // The fences first: a write built on a version another node moved on is refused as stale,
    // whatever else of it would have failed (a batch the new owner logged already is a
    // duplicate too, but the writer must hear that it lost the visitor).
    if !batch.visitors.is_empty() {
        write_visitors(conn, &coalesce(&batch.visitors)).await?;
    }

    let positions = positions(conn, batch.batches.len()).await?;
    let seq = |b: usize| positions[b];

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
    let new_orders = claim_orders(conn, &planned, &seq).await?;
    let mut orders_seen: HashSet<(&SiteId, &str)> = HashSet::new();
    let mut to_insert: Vec<&Planned<'_>> = Vec::with_capacity(planned.len());
    for p in &planned {
        if let Some(order) = p.order_id() {
            let key = (p.site, order);
            if !new_orders.contains(&key) || !orders_seen.insert(key) {
                if p.event.applied == Applied::Decided {
                    return Err(p.duplicate());
                }
                report.skipped += 1;
                continue;
            }
        }
        to_insert.push(p);
    }

    if !batch.batches.is_empty() {
        insert_batches(conn, batch, &positions).await?;
    }

    if !to_insert.is_empty() {
        let went_in = insert_events(conn, &to_insert, &seq).await?;
        report.inserted = went_in.len();
        for p in &to_insert {
            if !went_in.contains(&(seq(p.batch), p.position as i64)) {
                // The key was already logged (or repeated within this commit).
                if p.event.applied == Applied::Decided {
                    return Err(p.duplicate());
                }
                report.skipped += 1;
            }
        }
    }

    if !batch.exposures.is_empty() {
        let x = &batch.exposures;
        // No conflict clause: an exposure id is issued once, so a repeat is a bug upstream and
        // must fail the commit rather than vanish.
        sqlx::query(
            "INSERT INTO exposures (id, site_id, visitor_id, session_id, rule_id, arm, at, message)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::bigint[], $8::text[])",
        )
        .bind(x.iter().map(|x| x.id.as_str()).collect::<Vec<_>>())
        .bind(x.iter().map(|x| x.site.as_str()).collect::<Vec<_>>())
        .bind(x.iter().map(|x| x.visitor.as_str()).collect::<Vec<_>>())
        .bind(x.iter().map(|x| x.session.as_str()).collect::<Vec<_>>())
        .bind(x.iter().map(|x| x.rule.as_str()).collect::<Vec<_>>())
        .bind(x.iter().map(|x| arm_name(x.arm)).collect::<Vec<_>>())
        .bind(x.iter().map(|x| x.at.as_millis()).collect::<Vec<_>>())
        .bind(x.iter().map(|x| x.message.as_str()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }

    // Leads are rare (an address left in a form): a statement or two each is fine.
    for lead in &batch.leads {
        crate::leads::insert_lead(conn, lead).await?;
    }
    Ok(report)
}

/// `n` new log positions, in increasing order.
async fn positions(conn: &mut PgConnection, n: usize) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut taken: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('batch_positions') FROM generate_series(1, $1)")
            .bind(n as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
    taken.sort_unstable();
    Ok(taken)
}

/// Inserts the commit's batches at `positions`, one each.
async fn insert_batches(
    conn: &mut PgConnection,
    batch: &WriteBatch,
    positions: &[i64],
) -> Result<()> {
    let b = &batch.batches;
    let verdicts = b
        .iter()
        .map(|b| json(&b.verdict))
        .collect::<Result<Vec<_>>>()?;
    let begins = b
        .iter()
        .map(|b| b.begins.as_ref().map(json).transpose())
        .collect::<Result<Vec<_>>>()?;
    sqlx::query(
        "INSERT INTO batches (seq, site_id, visitor_id, session_id, at, source, user_agent,
                              language, tz_offset, verdict, rules_version, begins)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                              $6::text[], $7::text[], $8::text[], $9::smallint[], $10::text[],
                              $11::bigint[], $12::text[])",
    )
    .bind(positions)
    .bind(b.iter().map(|b| b.site.as_str()).collect::<Vec<_>>())
    .bind(b.iter().map(|b| b.visitor.as_str()).collect::<Vec<_>>())
    .bind(
        b.iter()
            .map(|b| b.session.as_ref().map(|s| s.as_str()))
            .collect::<Vec<_>>(),
    )
    .bind(b.iter().map(|b| b.at.as_millis()).collect::<Vec<_>>())
    .bind(b.iter().map(|b| b.source.as_str()).collect::<Vec<_>>())
    .bind(
        b.iter()
            .map(|b| b.context.user_agent.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        b.iter()
            .map(|b| b.context.language.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        b.iter()
            .map(|b| b.context.tz_offset_minutes)
            .collect::<Vec<_>>(),
    )
    .bind(verdicts)
    .bind(b.iter().map(|b| b.rules_version as i64).collect::<Vec<_>>())
    .bind(begins)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Inserts the events whose keys are new; returns the (batch, position) of those that went in.
async fn insert_events(
    conn: &mut PgConnection,
    events: &[&Planned<'_>],
    seq: &impl Fn(usize) -> i64,
) -> Result<HashSet<(i64, i64)>> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "INSERT INTO events (batch, position, site_id, visitor_id, key, event_id, kind, body,
                             applied)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::text[])
         ON CONFLICT (site_id, visitor_id, key) DO NOTHING
         RETURNING batch, position",
    )
    .bind(events.iter().map(|p| seq(p.batch)).collect::<Vec<_>>())
    .bind(events.iter().map(|p| p.position as i64).collect::<Vec<_>>())
    .bind(events.iter().map(|p| p.site.as_str()).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|p| p.visitor.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|p| p.event.key.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|p| p.event.id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|p| p.event.kind.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|p| p.event.body.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|p| p.event.applied.to_stored())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().collect())
}

/// Writes the commit's `order:` keys into `orders` (each at the batch of its first event here),
/// and returns those that went in: an order any commit logged before, or logs at this moment
/// (the unique key makes this insert wait for it), does not come back. Its rows are undone with
/// the commit if the commit fails.
async fn claim_orders<'a>(
    conn: &mut PgConnection,
    planned: &[Planned<'a>],
    seq: &impl Fn(usize) -> i64,
) -> Result<HashSet<(&'a SiteId, &'a str)>> {
    let mut first: HashMap<(&'a SiteId, &'a str), &Planned<'a>> = HashMap::new();
    for p in planned {
        if let Some(order) = p.event.key.strip_prefix(ORDER_PREFIX) {
            first.entry((p.site, order)).or_insert(p);
        }
    }
    if first.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<&Planned<'a>> = first.values().copied().collect();
    let went_in: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO orders (site_id, order_id, visitor_id, batch)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
         ON CONFLICT (site_id, order_id) DO NOTHING
         RETURNING site_id, order_id",
    )
    .bind(rows.iter().map(|p| p.site.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().filter_map(|p| p.order_id()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.visitor.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| seq(p.batch)).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let went_in: HashSet<(String, String)> = went_in.into_iter().collect();
    Ok(first
        .into_keys()
        .filter(|(site, order)| went_in.contains(&(site.as_str().to_owned(), (*order).to_owned())))
        .collect())
}

/// Writes the coalesced visitor states, fenced: each row the commit writes is locked and its
/// version read first (in key order, so that two commits never wait on each other's rows), and a
/// write whose fence names another version fails the commit as [`StoreError::Stale`]. Rows that
/// exist are updated (a write without a profile keeps the stored profile and its schema, so a
/// row of another version keeps reading as undecodable); rows that do not are inserted, and one
/// that another node inserted meanwhile is stale too.
async fn write_visitors(conn: &mut PgConnection, visitors: &[Coalesced<'_>]) -> Result<()> {
    let stored: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT v.site_id, v.visitor_id, v.version
         FROM visitors v JOIN UNNEST($1::text[], $2::text[]) AS u (site_id, visitor_id)
           ON v.site_id = u.site_id AND v.visitor_id = u.visitor_id
         ORDER BY v.site_id, v.visitor_id
         FOR UPDATE OF v",
    )
    .bind(visitors.iter().map(|v| v.site.as_str()).collect::<Vec<_>>())
    .bind(
        visitors
            .iter()
            .map(|v| v.visitor.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let stored: HashMap<(&str, &str), i64> = stored
        .iter()
        .map(|(s, v, n)| ((s.as_str(), v.as_str()), *n))
        .collect();
    let stale = |v: &Coalesced<'_>| StoreError::Stale {
        site: v.site.clone(),
        visitor: v.visitor.clone(),
    };
    let mut existing = Vec::new();
    let mut fresh = Vec::new();
    for v in visitors {
        let version = stored.get(&(v.site.as_str(), v.visitor.as_str())).copied();
        if !v.in_turn || v.expect.is_some_and(|e| e as i64 != version.unwrap_or(0)) {
            return Err(stale(v));
        }
        match version {
            Some(n) => existing.push((v, n + v.writes as i64)),
            None => fresh.push((v, v.writes as i64)),
        }
    }
    let default_profile = json(&Profile::default())?;
    let columns = |rows: &[(&Coalesced<'_>, i64)], default: Option<&str>| -> Result<_> {
        let profiles = rows
            .iter()
            .map(|(v, _)| match (v.profile, default) {
                (Some(p), _) => json(p).map(Some),
                (None, d) => Ok(d.map(str::to_owned)),
            })
            .collect::<Result<Vec<Option<String>>>>()?;
        let sessions = rows
            .iter()
            .map(|(v, _)| v.write.session.as_ref().map(json).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok((profiles, sessions))
    };
    let bind_rows = |sql: &'static str,
                     rows: &[(&Coalesced<'_>, i64)],
                     profiles: Vec<Option<String>>,
                     sessions: Vec<Option<String>>| {
        sqlx::query(sql)
            .bind(
                rows.iter()
                    .map(|(v, _)| v.site.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|(v, _)| v.visitor.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(vec![i64::from(VISITOR_SCHEMA); rows.len()])
            .bind(profiles)
            .bind(sessions)
            .bind(
                rows.iter()
                    .map(|(v, _)| v.write.last_seen.as_millis())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|(_, n)| *n).collect::<Vec<_>>())
    };
    if !existing.is_empty() {
        let (profiles, sessions) = columns(&existing, None)?;
        bind_rows(
            "UPDATE visitors v SET
                 schema = CASE WHEN u.profile IS NULL THEN v.schema ELSE u.schema END,
                 profile = COALESCE(u.profile, v.profile),
                 session = u.session, last_seen = u.last_seen, version = u.version
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                         $6::bigint[], $7::bigint[])
                  AS u (site_id, visitor_id, schema, profile, session, last_seen, version)
             WHERE v.site_id = u.site_id AND v.visitor_id = u.visitor_id",
            &existing,
            profiles,
            sessions,
        )
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    if !fresh.is_empty() {
        // A first write without a profile stores the default one.
        let (profiles, sessions) = columns(&fresh, Some(&default_profile))?;
        let went_in = bind_rows(
            "INSERT INTO visitors (site_id, visitor_id, schema, profile, session, last_seen,
                                   version)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                  $6::bigint[], $7::bigint[])
             ON CONFLICT (site_id, visitor_id) DO NOTHING
             RETURNING site_id, visitor_id",
            &fresh,
            profiles,
            sessions,
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        if went_in.len() < fresh.len() {
            let inserted: HashSet<(String, String)> = went_in
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<std::result::Result<_, sqlx::Error>>()
                .map_err(db)?;
            if let Some((v, _)) = fresh.iter().find(|(v, _)| {
                !inserted.contains(&(v.site.as_str().to_owned(), v.visitor.as_str().to_owned()))
            }) {
                return Err(stale(v));
            }
        }
    }
    Ok(())
}
