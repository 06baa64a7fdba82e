//! [`Outbox`] on SQLite. Claims and settlements run in `BEGIN IMMEDIATE` transactions on the
//! write connection, so two workers never hold one delivery: the one writer is the lock that
//! PostgreSQL's `FOR UPDATE SKIP LOCKED` would be.

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp};
use beckon_store::leads::LeadId;
use beckon_store::outbox::{
    Attempt, Claimed, Delivery, DeliveryId, DeliveryQuery, DeliveryStatus, Destination,
    DestinationId, NewEvent, Outbox, Settle, Settlement, Target, Topic,
};
use beckon_store::{Result, StoreError};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::rows::{col, json_col};
use crate::{SqliteStore, db, json};

fn corrupt(e: String) -> StoreError {
    StoreError::Corrupt(e)
}

const DESTINATION_COLUMNS: &str =
    "id, site_id, name, target, topics, enabled, disabled_reason, created_at";

const DELIVERY_COLUMNS: &str = "id, site_id, destination, topic, payload, to_visitor, lead_id,
    status, attempts, next_at, created_at, delivered_at, last_error";

fn destination(row: &SqliteRow) -> Result<Destination> {
    let id: String = col(row, "id").map_err(corrupt)?;
    let site: String = col(row, "site_id").map_err(corrupt)?;
    Ok(Destination {
        id: DestinationId::parse(&id).ok_or_else(|| corrupt(format!("destination id {id:?}")))?,
        site: SiteId::parse(&site).map_err(|e| corrupt(format!("site {e}")))?,
        name: col(row, "name").map_err(corrupt)?,
        target: json_col::<Target>(row, "target").map_err(corrupt)?,
        topics: json_col::<Vec<Topic>>(row, "topics").map_err(corrupt)?,
        enabled: col::<i64>(row, "enabled").map_err(corrupt)? != 0,
        disabled_reason: col(row, "disabled_reason").map_err(corrupt)?,
        created_at: Timestamp::from_millis(col(row, "created_at").map_err(corrupt)?),
    })
}

fn delivery(row: &SqliteRow) -> Result<Delivery> {
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
        to_visitor: col::<i64>(row, "to_visitor").map_err(corrupt)? != 0,
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

fn attempt(row: &SqliteRow) -> Result<Attempt> {
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
    conn: &mut SqliteConnection,
    site: &SiteId,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<DeliveryId>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(&format!(
        "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE site_id = ? AND enabled = 1
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
    conn: &mut SqliteConnection,
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
         VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
    )
    .bind(id.as_str())
    .bind(site.as_str())
    .bind(destination.as_str())
    .bind(event.topic.as_str())
    .bind(&event.payload)
    .bind(i64::from(to_visitor))
    .bind(event.lead.as_ref().map(|l| l.as_str()))
    .bind(now.as_millis())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(id)
}

impl SqliteStore {
    async fn claimed(
        &self,
        conn: &mut SqliteConnection,
        ids: &[String],
        token: &str,
    ) -> Result<Vec<Claimed>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"
            ))
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
            let delivery = delivery(&row)?;
            let row = sqlx::query(&format!(
                "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = ?"
            ))
            .bind(delivery.destination.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
            let destination = destination(&row)?;
            let visitor_email = match &delivery.lead {
                Some(lead) => {
                    sqlx::query_scalar("SELECT email FROM leads WHERE id = ? AND site_id = ?")
                        .bind(lead.as_str())
                        .bind(delivery.site.as_str())
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db)?
                }
                None => None,
            };
            out.push(Claimed {
                delivery,
                destination,
                visitor_email,
                lease: token.to_owned(),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn put_destination(&self, d: &Destination) -> Result<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let owner: Option<String> =
            sqlx::query_scalar("SELECT site_id FROM destinations WHERE id = ?")
                .bind(d.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if owner.is_some_and(|o| o != d.site.as_str()) {
            return Err(StoreError::Conflict(format!(
                "destination {} belongs to another site",
                d.id
            )));
        }
        let site: Option<i64> = sqlx::query_scalar("SELECT 1 FROM sites WHERE id = ?")
            .bind(d.site.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if site.is_none() {
            return Err(StoreError::NotFound(format!("site {}", d.site)));
        }
        sqlx::query(
            "INSERT INTO destinations (id, site_id, name, target, topics, enabled,
                 disabled_reason, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, target = excluded.target,
                 topics = excluded.topics, enabled = excluded.enabled,
                 disabled_reason = excluded.disabled_reason",
        )
        .bind(d.id.as_str())
        .bind(d.site.as_str())
        .bind(&d.name)
        .bind(json(&d.target)?)
        .bind(json(&d.topics)?)
        .bind(i64::from(d.enabled))
        .bind(&d.disabled_reason)
        .bind(d.created_at.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn destinations(&self, site: &SiteId) -> Result<Vec<Destination>> {
        let rows = sqlx::query(&format!(
            "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE site_id = ?
             ORDER BY created_at, id"
        ))
        .bind(site.as_str())
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        rows.iter().map(destination).collect()
    }

    async fn destination(&self, site: &SiteId, id: &DestinationId) -> Result<Option<Destination>> {
        let row = sqlx::query(&format!(
            "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE site_id = ? AND id = ?"
        ))
        .bind(site.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.readers)
        .await
        .map_err(db)?;
        row.as_ref().map(destination).transpose()
    }

    async fn delete_destination(
        &self,
        site: &SiteId,
        id: &DestinationId,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let gone = sqlx::query("DELETE FROM destinations WHERE site_id = ? AND id = ?")
            .bind(site.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("destination {id}")));
        }
        sqlx::query(
            "UPDATE deliveries SET status = 'dead', last_error = 'destination removed',
                 lease_owner = NULL, lease_token = NULL, lease_until = NULL, next_at = ?
             WHERE destination = ? AND status = 'pending'",
        )
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn enqueue(
        &self,
        site: &SiteId,
        events: &[NewEvent],
        now: Timestamp,
    ) -> Result<Vec<DeliveryId>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let ids = fan_out(&mut tx, site, events, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(ids)
    }

    async fn enqueue_to(
        &self,
        site: &SiteId,
        destination: &DestinationId,
        event: &NewEvent,
        now: Timestamp,
    ) -> Result<DeliveryId> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM destinations WHERE site_id = ? AND id = ?")
                .bind(site.as_str())
                .bind(destination.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!("destination {destination}")));
        }
        let id = insert_delivery(&mut tx, site, destination, event, false, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let token = format!("{worker}/{}", beckon_store::outbox::random_chars(16));
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE deliveries SET lease_owner = ?, lease_token = ?, lease_until = ?
             WHERE id IN (
                 SELECT d.id FROM deliveries d JOIN destinations t ON t.id = d.destination
                 WHERE d.status = 'pending' AND d.next_at <= ? AND t.enabled = 1
                   AND (d.lease_until IS NULL OR d.lease_until <= ?)
                 ORDER BY d.next_at, d.id LIMIT ?)
             RETURNING id",
        )
        .bind(worker)
        .bind(&token)
        .bind(lease_until.as_millis())
        .bind(now.as_millis())
        .bind(now.as_millis())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let claimed = self.claimed(&mut tx, &ids, &token).await?;
        tx.commit().await.map_err(db)?;
        Ok(claimed)
    }

    async fn release_leases(&self, worker: &str) -> Result<usize> {
        let done = sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
             WHERE lease_owner = ? AND status = 'pending'",
        )
        .bind(worker)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() as usize)
    }

    async fn settle(&self, settled: &[Settle]) -> Result<Vec<bool>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(settled.len());
        for s in settled {
            out.push(settle_one(&mut tx, &s.id, &s.lease, &s.settlement).await?);
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn deliveries(&self, site: &SiteId, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let limit = if q.limit == 0 { 100 } else { q.limit.min(1000) };
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE site_id = ? AND (? IS NULL OR status = ?) AND (? IS NULL OR destination = ?)
               AND (? IS NULL OR lead_id = ?)
             ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(site.as_str())
        .bind(q.status.map(DeliveryStatus::as_str))
        .bind(q.status.map(DeliveryStatus::as_str))
        .bind(q.destination.as_ref().map(|d| d.as_str()))
        .bind(q.destination.as_ref().map(|d| d.as_str()))
        .bind(q.lead.as_ref().map(|l| l.as_str()))
        .bind(q.lead.as_ref().map(|l| l.as_str()))
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        rows.iter().map(delivery).collect()
    }

    async fn delivery(
        &self,
        site: &SiteId,
        id: &DeliveryId,
    ) -> Result<Option<(Delivery, Vec<Attempt>)>> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE site_id = ? AND id = ?"
        ))
        .bind(site.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.readers)
        .await
        .map_err(db)?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT at, status, error, took_ms FROM delivery_attempts WHERE delivery_id = ?
             ORDER BY n",
        )
        .bind(id.as_str())
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        Ok(Some((
            delivery(&row)?,
            attempts.iter().map(attempt).collect::<Result<_>>()?,
        )))
    }

    async fn replay(&self, site: &SiteId, id: &DeliveryId, now: Timestamp) -> Result<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let found: Option<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT d.status, d.lease_until, t.enabled FROM deliveries d
             LEFT JOIN destinations t ON t.id = d.destination
             WHERE d.site_id = ? AND d.id = ?",
        )
        .bind(site.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some((status, lease_until, enabled)) = found else {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        };
        let refused = if status == "delivered" {
            Some(format!("delivery {id} was delivered already"))
        } else if lease_until.is_some_and(|u| u > now.as_millis()) {
            Some(format!("delivery {id} is being tried right now"))
        } else if enabled.is_none() {
            Some(format!("the destination of delivery {id} was removed"))
        } else if enabled == Some(0) {
            Some(format!(
                "the destination of delivery {id} is turned off; turn it on first"
            ))
        } else {
            None
        };
        if let Some(why) = refused {
            return Err(StoreError::Conflict(why));
        }
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_at = ?,
                 lease_owner = NULL, lease_token = NULL, lease_until = NULL
             WHERE id = ?",
        )
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        let row = sqlx::query(
            "SELECT MIN(MAX(d.next_at, COALESCE(d.lease_until, 0))) AS due
             FROM deliveries d JOIN destinations t ON t.id = d.destination
             WHERE d.status = 'pending' AND t.enabled = 1",
        )
        .fetch_one(&self.readers)
        .await
        .map_err(db)?;
        Ok(row
            .try_get::<Option<i64>, _>("due")
            .map_err(db)?
            .map(Timestamp::from_millis))
    }
}

/// One settlement, inside the caller's transaction.
async fn settle_one(
    conn: &mut SqliteConnection,
    id: &DeliveryId,
    lease: &str,
    settlement: &Settlement,
) -> Result<bool> {
    let held: Option<(String, i64)> = sqlx::query_as(
        "SELECT destination, attempts FROM deliveries
         WHERE id = ? AND status = 'pending' AND lease_token = ?",
    )
    .bind(id.as_str())
    .bind(lease)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some((destination, attempts)) = held else {
        return Ok(false);
    };
    let (attempt, status, next, delivered) = match settlement {
        Settlement::Delivered(a) => (a, DeliveryStatus::Delivered, a.at, Some(a.at)),
        Settlement::Failed {
            attempt,
            next: Some(at),
        } => (attempt, DeliveryStatus::Pending, *at, None),
        Settlement::Failed {
            attempt,
            next: None,
        }
        | Settlement::Gone(attempt) => (attempt, DeliveryStatus::Dead, attempt.at, None),
    };
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, n, at, status, error, took_ms)
         VALUES (?, (SELECT COALESCE(MAX(n), 0) + 1 FROM delivery_attempts
                     WHERE delivery_id = ?), ?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(id.as_str())
    .bind(attempt.at.as_millis())
    .bind(attempt.status.map(i64::from))
    .bind(&attempt.error)
    .bind(i64::from(attempt.took_ms))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "UPDATE deliveries SET status = ?, attempts = ?, next_at = ?, delivered_at = ?,
             last_error = ?, lease_owner = NULL, lease_token = NULL, lease_until = NULL
         WHERE id = ?",
    )
    .bind(status.as_str())
    .bind(attempts + 1)
    .bind(next.as_millis())
    .bind(delivered.map(Timestamp::as_millis))
    .bind(&attempt.error)
    .bind(id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if let Settlement::Gone(a) = settlement {
        let why = format!(
            "turned off: the endpoint answered {} (gone)",
            a.status.unwrap_or(410)
        );
        sqlx::query("UPDATE destinations SET enabled = 0, disabled_reason = ? WHERE id = ?")
            .bind(why)
            .bind(&destination)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(true)
}
