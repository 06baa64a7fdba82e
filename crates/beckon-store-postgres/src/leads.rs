//! [`Leads`] on PostgreSQL. A lead is inserted with its announcements by [`insert_lead`], inside
//! whichever transaction captured it (the group commit, a conversation change, the API's).

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
