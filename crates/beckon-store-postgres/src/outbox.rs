//! [`Outbox`] on PostgreSQL.

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp};
use beckon_store::leads::LeadId;
use beckon_store::outbox::{
    Attempt, Claimed, Delivery, DeliveryId, DeliveryQuery, DeliveryStatus, Destination,
    DestinationId, NewEvent, Outbox, Settle, Settlement, Target, Topic,
};
use beckon_store::{Result, StoreError};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::rows::{col, json_col};
use crate::{PgStore, db, json};

fn corrupt(e: String) -> StoreError {
    StoreError::Corrupt(e)
}

const DESTINATION_COLUMNS: &str =
    "id, site_id, name, target, topics, enabled, disabled_reason, created_at";

const DELIVERY_COLUMNS: &str = "id, site_id, destination, topic, payload, to_visitor, lead_id,
    status, attempts, next_at, created_at, delivered_at, last_error";

fn destination(row: &PgRow) -> Result<Destination> {
    let id: String = col(row, "id").map_err(corrupt)?;
    let site: String = col(row, "site_id").map_err(corrupt)?;
    Ok(Destination {
        id: DestinationId::parse(&id).ok_or_else(|| corrupt(format!("destination id {id:?}")))?,
        site: SiteId::parse(&site).map_err(|e| corrupt(format!("site {e}")))?,
        name: col(row, "name").map_err(corrupt)?,
        target: json_col::<Target>(row, "target").map_err(corrupt)?,
        topics: json_col::<Vec<Topic>>(row, "topics").map_err(corrupt)?,
        enabled: col(row, "enabled").map_err(corrupt)?,
        disabled_reason: col(row, "disabled_reason").map_err(corrupt)?,
        created_at: Timestamp::from_millis(col(row, "created_at").map_err(corrupt)?),
    })
}

fn delivery(row: &PgRow) -> Result<Delivery> {
    let text = |name: &str| col::<String>(row, name).map_err(corrupt);
    let millis = |name: &str| {
        col::<i64>(row, name)
            .map_err(corrupt)
            .map(Timestamp::from_millis)
    };
    let id = text("id")?;
    let dest = text("destination")?;
    let topic = text("topic")?;
    let status = text("status")?;
    let lead = col::<Option<String>>(row, "lead_id")
        .map_err(corrupt)?
        .map(|l| LeadId::parse(&l).ok_or_else(|| corrupt(format!("lead id {l:?}"))))
        .transpose()?;
    Ok(Delivery {
        id: DeliveryId::parse(&id).ok_or_else(|| corrupt(format!("delivery id {id:?}")))?,
        site: SiteId::parse(&text("site_id")?).map_err(|e| corrupt(format!("site {e}")))?,
        destination: DestinationId::parse(&dest)
            .ok_or_else(|| corrupt(format!("destination id {dest:?}")))?,
        topic: Topic::parse(&topic).ok_or_else(|| corrupt(format!("topic {topic:?}")))?,
        payload: text("payload")?,
        to_visitor: col(row, "to_visitor").map_err(corrupt)?,
        lead,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("delivery status {status:?}")))?,
        attempts: col::<i64>(row, "attempts").map_err(corrupt)?.max(0) as u32,
        next_at: millis("next_at")?,
        created_at: millis("created_at")?,
        delivered_at: col::<Option<i64>>(row, "delivered_at")
            .map_err(corrupt)?
            .map(Timestamp::from_millis),
        last_error: col(row, "last_error").map_err(corrupt)?,
    })
}

fn attempt(row: &PgRow) -> Result<Attempt> {
    Ok(Attempt {
        at: Timestamp::from_millis(col(row, "at").map_err(corrupt)?),
        status: col::<Option<i64>>(row, "status")
            .map_err(corrupt)?
            .and_then(|s| u16::try_from(s).ok()),
        error: col(row, "error").map_err(corrupt)?,
        took_ms: col::<i64>(row, "took_ms").map_err(corrupt)?.max(0) as u32,
    })
}

/// Fans `events` out to the site's enabled destinations that take them, on `conn` (inside the
/// caller's transaction). An e-mail destination that confirms to visitors gets a second
/// delivery for a new lead: the visitor's confirmation.
pub(crate) async fn fan_out(
    conn: &mut PgConnection,
    site: &SiteId,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<DeliveryId>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(&format!(
        "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE site_id = $1 AND enabled
         ORDER BY created_at, id"
    ))
    .bind(site.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let destinations = rows.iter().map(destination).collect::<Result<Vec<_>>>()?;
    let mut ids = Vec::new();
    for event in events {
        for d in destinations
            .iter()
            .filter(|d| d.topics.contains(&event.topic))
        {
            ids.push(insert_delivery(conn, site, &d.id, event, false, now).await?);
            let confirms = matches!(
                d.target,
                Target::Email {
                    confirm_visitor: true,
                    ..
                }
            );
            if confirms && event.topic == Topic::LeadCreated && event.lead.is_some() {
                ids.push(insert_delivery(conn, site, &d.id, event, true, now).await?);
            }
        }
    }
    Ok(ids)
}

async fn insert_delivery(
    conn: &mut PgConnection,
    site: &SiteId,
    destination: &DestinationId,
    event: &NewEvent,
    to_visitor: bool,
    now: Timestamp,
) -> Result<DeliveryId> {
    let id = DeliveryId::random();
    sqlx::query(
        "INSERT INTO deliveries (id, site_id, destination, topic, payload, to_visitor, lead_id,
             status, next_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)",
    )
    .bind(id.as_str())
    .bind(site.as_str())
    .bind(destination.as_str())
    .bind(event.topic.as_str())
    .bind(&event.payload)
    .bind(to_visitor)
    .bind(event.lead.as_ref().map(|l| l.as_str()))
    .bind(now.as_millis())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(id)
}
