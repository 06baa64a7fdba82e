//! [`Leads`] on PostgreSQL. A lead is inserted with its announcements by [`insert_lead`], inside
//! whichever transaction captured it (the group commit, a conversation change, the API's).
//!
//! A change locks the lead it reads (`FOR UPDATE`), and the overdue sweep marks its leads in the
//! statement that picks them, skipping those that another node's sweep holds (`FOR UPDATE SKIP
//! LOCKED`), so that each overdue lead is announced once however many nodes sweep.

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp, VisitorId};
use beckon_store::leads::{
    AnnounceOverdue, Consent, Lead, LeadChange, LeadFigures, LeadId, LeadQuery, LeadSettings,
    LeadSource, LeadStatus, Leads, NewLead,
};
use beckon_store::outbox::NewEvent;
use beckon_store::{Result, StoreError};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use crate::outbox::fan_out;
use crate::rows::{col, json_col};
use crate::{PgStore, db, json};

fn corrupt(e: String) -> StoreError {
    StoreError::Corrupt(e)
}

const COLUMNS: &str = "id, site_id, visitor_id, email, name, question, consent_text, consent_at,
    source, context, status, owner, created_at, contacted_at, overdue_at";

fn lead(row: &PgRow) -> Result<Lead> {
    let text = |name: &str| col::<String>(row, name).map_err(corrupt);
    let millis = |name: &str| {
        col::<i64>(row, name)
            .map_err(corrupt)
            .map(Timestamp::from_millis)
    };
    let opt_millis = |name: &str| {
        col::<Option<i64>>(row, name)
            .map_err(corrupt)
            .map(|v| v.map(Timestamp::from_millis))
    };
    let id = text("id")?;
    let source = text("source")?;
    let status = text("status")?;
    Ok(Lead {
        id: LeadId::parse(&id).ok_or_else(|| corrupt(format!("lead id {id:?}")))?,
        site: SiteId::parse(&text("site_id")?).map_err(|e| corrupt(format!("site {e}")))?,
        visitor: col::<Option<String>>(row, "visitor_id")
            .map_err(corrupt)?
            .map(|v| VisitorId::parse(&v).map_err(|e| corrupt(format!("visitor {e}"))))
            .transpose()?,
        email: text("email")?,
        name: text("name")?,
        question: text("question")?,
        consent: Consent {
            text: text("consent_text")?,
            at: millis("consent_at")?,
        },
        source: LeadSource::parse(&source)
            .ok_or_else(|| corrupt(format!("lead source {source:?}")))?,
        context: json_col(row, "context").map_err(corrupt)?,
        status: LeadStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("lead status {status:?}")))?,
        owner: col(row, "owner").map_err(corrupt)?,
        created_at: millis("created_at")?,
        contacted_at: opt_millis("contacted_at")?,
        overdue_at: opt_millis("overdue_at")?,
    })
}

/// Inserts `lead` and fans out its announcements, on `conn` (inside the caller's transaction).
pub(crate) async fn insert_lead(conn: &mut PgConnection, l: &NewLead) -> Result<()> {
    let done = sqlx::query(
        "INSERT INTO leads (id, site_id, visitor_id, email, name, question, consent_text,
             consent_at, source, context, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
    )
    .bind(l.id.as_str())
    .bind(l.site.as_str())
    .bind(l.visitor.as_ref().map(|v| v.as_str()))
    .bind(&l.email)
    .bind(&l.name)
    .bind(&l.question)
    .bind(&l.consent.text)
    .bind(l.consent.at.as_millis())
    .bind(l.source.as_str())
    .bind(json(&l.context)?)
    .bind(l.at.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("lead {} exists", l.id)));
    }
    fan_out(conn, &l.site, &l.announce, l.at).await?;
    Ok(())
}

/// One lead of a site's, on `conn`; with `lock`, locked (`FOR UPDATE`) until the transaction
/// ends.
async fn one_lead(
    conn: &mut PgConnection,
    site: &SiteId,
    id: &LeadId,
    lock: bool,
) -> Result<Option<Lead>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM leads WHERE site_id = $1 AND id = $2{lock}"
    ))
    .bind(site.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    row.as_ref().map(lead).transpose()
}

/// Whether the site exists, on `conn`.
async fn site_exists(conn: &mut PgConnection, site: &SiteId) -> Result<bool> {
    let row = sqlx::query("SELECT 1 FROM sites WHERE id = $1")
        .bind(site.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

/// `%text%` for ILIKE, with LIKE's own characters escaped (by `\`).
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[async_trait]
impl Leads for PgStore {
    async fn capture_lead(&self, l: &NewLead) -> Result<Lead> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Sites are never removed, and the lead's foreign key holds the site until the commit.
        if !site_exists(&mut tx, &l.site).await? {
            return Err(StoreError::NotFound(format!("site {}", l.site)));
        }
        insert_lead(&mut tx, l).await?;
        let stored = one_lead(&mut tx, &l.site, &l.id, false).await?;
        tx.commit().await.map_err(db)?;
        stored.ok_or_else(|| StoreError::Database("a lead just written is gone".to_owned()))
    }

    async fn lead(&self, site: &SiteId, id: &LeadId) -> Result<Option<Lead>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        one_lead(&mut conn, site, id, false).await
    }

    async fn leads(&self, site: &SiteId, q: &LeadQuery) -> Result<Vec<Lead>> {
        let limit = if q.limit == 0 {
            100
        } else {
            q.limit.min(10_000)
        };
        let text = q
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(like_pattern);
        // ILIKE: SQLite's LIKE, which the other backend uses, ignores ASCII case.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM leads
             WHERE site_id = $2
               AND ($1 IS NULL OR email ILIKE $1 ESCAPE '\\' OR name ILIKE $1 ESCAPE '\\'
                    OR question ILIKE $1 ESCAPE '\\')
               AND ($3 IS NULL OR status = $3)
               AND ($4 IS NULL OR (status = 'new' AND created_at < $4))
               AND ($5 IS NULL OR created_at >= $5)
               AND ($6 IS NULL OR created_at < $6)
             ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8"
        ))
        .bind(text)
        .bind(site.as_str())
        .bind(q.status.map(LeadStatus::as_str))
        .bind(q.new_before.map(Timestamp::as_millis))
        .bind(q.from.map(Timestamp::as_millis))
        .bind(q.to.map(Timestamp::as_millis))
        .bind(limit as i64)
        .bind(q.offset as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(lead).collect()
    }

    async fn change_lead(
        &self,
        site: &SiteId,
        id: &LeadId,
        change: &LeadChange,
        now: Timestamp,
        announce: &[NewEvent],
    ) -> Result<Lead> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Locked: two changes at once queue, and the second sees the first's contact time.
        let Some(mut l) = one_lead(&mut tx, site, id, true).await? else {
            return Err(StoreError::NotFound(format!("lead {id}")));
        };
        if let Some(status) = change.status {
            if status != LeadStatus::New && l.contacted_at.is_none() {
                l.contacted_at = Some(now);
            }
            l.status = status;
        }
        if let Some(owner) = change.owner {
            l.owner = owner;
        }
        sqlx::query("UPDATE leads SET status = $1, owner = $2, contacted_at = $3 WHERE id = $4")
            .bind(l.status.as_str())
            .bind(l.owner)
            .bind(l.contacted_at.map(Timestamp::as_millis))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        fan_out(&mut tx, site, announce, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(l)
    }

    async fn lead_settings(&self, site: &SiteId) -> Result<LeadSettings> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT settings FROM lead_settings WHERE site_id = $1")
                .bind(site.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        match text {
            None => Ok(LeadSettings::default()),
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| corrupt(format!("lead settings of {site}: {e}"))),
        }
    }

    async fn put_lead_settings(&self, site: &SiteId, settings: &LeadSettings) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        if !site_exists(&mut conn, site).await? {
            return Err(StoreError::NotFound(format!("site {site}")));
        }
        sqlx::query(
            "INSERT INTO lead_settings (site_id, settings) VALUES ($1, $2)
             ON CONFLICT (site_id) DO UPDATE SET settings = excluded.settings",
        )
        .bind(site.as_str())
        .bind(json(settings)?)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn take_overdue(
        &self,
        now: Timestamp,
        limit: usize,
        announce: &dyn AnnounceOverdue,
    ) -> Result<Vec<Lead>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Each site's limit, defaulting as `LeadSettings::default` does. The leads are picked,
        // locked and marked in one statement: those another node's sweep (or a change) holds
        // are skipped, and one that another sweep marked since this statement began is no
        // longer overdue-and-unmarked once its lock is had, and is left out. So each is marked,
        // and announced, by one sweep only.
        let default_minutes = i64::from(LeadSettings::default().follow_up_minutes);
        let rows = sqlx::query(&format!(
            "WITH due AS MATERIALIZED (
                 SELECT l.id FROM leads l
                 WHERE l.status = 'new' AND l.overdue_at IS NULL
                   AND l.created_at + 60000 * COALESCE(
                       (SELECT (s.settings::jsonb ->> 'follow_up_minutes')::bigint
                        FROM lead_settings s WHERE s.site_id = l.site_id), $2) <= $1
                 ORDER BY l.created_at LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             UPDATE leads SET overdue_at = $1
             WHERE id IN (SELECT id FROM due)
             RETURNING {COLUMNS}"
        ))
        .bind(now.as_millis())
        .bind(default_minutes)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut taken = rows.iter().map(lead).collect::<Result<Vec<_>>>()?;
        // RETURNING keeps no order: oldest first, as they were picked.
        taken.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        for l in &taken {
            fan_out(&mut tx, &l.site, &[announce.announce(l)], now).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(taken)
    }

    async fn lead_figures(
        &self,
        site: &SiteId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<LeadFigures> {
        let settings = self.lead_settings(site).await?;
        let limit_ms = i64::from(settings.follow_up_minutes) * 60_000;
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT status, created_at, contacted_at FROM leads
             WHERE site_id = $1 AND created_at >= $2 AND created_at < $3",
        )
        .bind(site.as_str())
        .bind(from.as_millis())
        .bind(to.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut f = LeadFigures::default();
        let mut waits = Vec::new();
        for (status, created, contacted) in rows {
            f.captured += 1;
            if status == "won" {
                f.won += 1;
            }
            match contacted {
                Some(at) => {
                    f.contacted += 1;
                    if at - created <= limit_ms {
                        f.contacted_in_time += 1;
                    }
                    waits.push((at - created).max(0) / 1000);
                }
                None if created + limit_ms <= now.as_millis() => f.overdue += 1,
                None => {}
            }
        }
        waits.sort_unstable();
        f.median_contact_secs = (!waits.is_empty()).then(|| waits[waits.len() / 2]);
        Ok(f)
    }
}
