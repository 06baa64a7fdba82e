//! [`Outbox`] on PostgreSQL. Workers on any number of nodes share the deliveries through row
//! locks: a claim takes the due deliveries `FOR UPDATE SKIP LOCKED`, so that two workers never
//! hold one delivery (each skips what another is claiming at that moment, and what another has
//! claimed is no longer due); a settlement locks its deliveries and writes only those whose
//! lease it still holds.
//!
//! Locks are taken in one order, deliveries (by id) before destinations, so that a settlement,
//! a removal of a destination and a replay never wait on each other in a circle.

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp};
use beckon_store::leads::LeadId;
use beckon_store::outbox::{
    Attempt, Claimed, Delivery, DeliveryId, DeliveryQuery, DeliveryStatus, Destination,
    DestinationId, NewEvent, Outbox, Settle, Settlement, Target, Topic,
};
use beckon_store::{Result, StoreError};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

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
/// delivery for a new lead: the visitor's confirmation. The destinations are held (`FOR KEY
/// SHARE`) until the transaction ends: one removed at the same moment is removed after it, and
/// its new deliveries die with it, rather than wait for ever for a destination that is gone.
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
         ORDER BY created_at, id FOR KEY SHARE"
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

/// Claimed deliveries with their destinations as they stand and the leads' addresses, on `conn`.
async fn claimed(
    conn: &mut PgConnection,
    deliveries: Vec<Delivery>,
    token: &str,
) -> Result<Vec<Claimed>> {
    let mut out = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let row = sqlx::query(&format!(
            "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = $1"
        ))
        .bind(delivery.destination.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
        let destination = destination(&row)?;
        let visitor_email = match &delivery.lead {
            Some(lead) => {
                sqlx::query_scalar("SELECT email FROM leads WHERE id = $1 AND site_id = $2")
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

#[async_trait]
impl Outbox for PgStore {
    async fn put_destination(&self, d: &Destination) -> Result<()> {
        // One statement, so that two nodes putting one id for two sites cannot both pass a
        // check: a destination of another site's is left as it is (no row written), and a
        // site that does not exist fails the foreign key.
        let done = sqlx::query(
            "INSERT INTO destinations (id, site_id, name, target, topics, enabled,
                 disabled_reason, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, target = excluded.target,
                 topics = excluded.topics, enabled = excluded.enabled,
                 disabled_reason = excluded.disabled_reason
             WHERE destinations.site_id = excluded.site_id",
        )
        .bind(d.id.as_str())
        .bind(d.site.as_str())
        .bind(&d.name)
        .bind(json(&d.target)?)
        .bind(json(&d.topics)?)
        .bind(d.enabled)
        .bind(&d.disabled_reason)
        .bind(d.created_at.as_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(x) if x.is_foreign_key_violation() => {
                StoreError::NotFound(format!("site {}", d.site))
            }
            _ => db(e),
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "destination {} belongs to another site",
                d.id
            )));
        }
        Ok(())
    }

    async fn destinations(&self, site: &SiteId) -> Result<Vec<Destination>> {
        let rows = sqlx::query(&format!(
            "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE site_id = $1
             ORDER BY created_at, id"
        ))
        .bind(site.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(destination).collect()
    }

    async fn destination(&self, site: &SiteId, id: &DestinationId) -> Result<Option<Destination>> {
        let row = sqlx::query(&format!(
            "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE site_id = $1 AND id = $2"
        ))
        .bind(site.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Its pending deliveries first, by id, as a settlement locks them before it turns a
        // destination off.
        sqlx::query(
            "SELECT id FROM deliveries WHERE site_id = $1 AND destination = $2
                 AND status = 'pending'
             ORDER BY id FOR UPDATE",
        )
        .bind(site.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let gone = sqlx::query("DELETE FROM destinations WHERE site_id = $1 AND id = $2")
            .bind(site.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("destination {id}")));
        }
        // Now that the destination is gone, a fan-out that held it has committed: its
        // deliveries are seen here too.
        sqlx::query(
            "UPDATE deliveries SET status = 'dead', last_error = 'destination removed',
                 lease_owner = NULL, lease_token = NULL, lease_until = NULL, next_at = $1
             WHERE destination = $2 AND status = 'pending'",
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
        let mut tx = self.pool.begin().await.map_err(db)?;
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Held until the commit, as a fan-out holds its destinations.
        let found =
            sqlx::query("SELECT 1 FROM destinations WHERE site_id = $1 AND id = $2 FOR KEY SHARE")
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let token = format!("{worker}/{}", beckon_store::outbox::random_chars(16));
        // The due deliveries are locked as they are picked, skipping those another worker is
        // claiming (or settling) right now; one that another worker claimed since this
        // statement began is no longer due once its lock is had, and is left out.
        let rows = sqlx::query(&format!(
            "WITH due AS MATERIALIZED (
                 SELECT d.id FROM deliveries d JOIN destinations t ON t.id = d.destination
                 WHERE d.status = 'pending' AND d.next_at <= $4 AND t.enabled
                   AND (d.lease_until IS NULL OR d.lease_until <= $4)
                 ORDER BY d.next_at, d.id LIMIT $5
                 FOR UPDATE OF d SKIP LOCKED)
             UPDATE deliveries SET lease_owner = $1, lease_token = $2, lease_until = $3
             WHERE id IN (SELECT id FROM due)
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(worker)
        .bind(&token)
        .bind(lease_until.as_millis())
        .bind(now.as_millis())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let deliveries = rows.iter().map(delivery).collect::<Result<Vec<_>>>()?;
        let claimed = claimed(&mut tx, deliveries, &token).await?;
        tx.commit().await.map_err(db)?;
        Ok(claimed)
    }

    async fn release_leases(&self, worker: &str) -> Result<usize> {
        let done = sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
             WHERE lease_owner = $1 AND status = 'pending'",
        )
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() as usize)
    }

    async fn settle(&self, settled: &[Settle]) -> Result<Vec<bool>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The batch's deliveries, locked in id order: a claim taking one over at this moment
        // commits first, and the lease check below then sees its new lease.
        let ids: Vec<&str> = settled.iter().map(|s| s.id.as_str()).collect();
        sqlx::query("SELECT id FROM deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(settled.len());
        let mut turn_off = Vec::new();
        for s in settled {
            out.push(settle_one(&mut tx, s, &mut turn_off).await?);
        }
        // The destinations that answered "gone", last and by id.
        turn_off.sort();
        for (destination, why) in turn_off {
            sqlx::query(
                "UPDATE destinations SET enabled = FALSE, disabled_reason = $1 WHERE id = $2",
            )
            .bind(why)
            .bind(destination)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn deliveries(&self, site: &SiteId, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let limit = if q.limit == 0 { 100 } else { q.limit.min(1000) };
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE site_id = $1 AND ($2 IS NULL OR status = $2)
               AND ($3 IS NULL OR destination = $3) AND ($4 IS NULL OR lead_id = $4)
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(site.as_str())
        .bind(q.status.map(DeliveryStatus::as_str))
        .bind(q.destination.as_ref().map(|d| d.as_str()))
        .bind(q.lead.as_ref().map(|l| l.as_str()))
        .bind(limit as i64)
        .fetch_all(&self.pool)
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
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE site_id = $1 AND id = $2"
        ))
        .bind(site.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT at, status, error, took_ms FROM delivery_attempts WHERE delivery_id = $1
             ORDER BY n",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(Some((
            delivery(&row)?,
            attempts.iter().map(attempt).collect::<Result<_>>()?,
        )))
    }

    async fn replay(&self, site: &SiteId, id: &DeliveryId, now: Timestamp) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The delivery, then its destination (held until the commit, as a fan-out holds it).
        let found: Option<(String, Option<i64>, String)> = sqlx::query_as(
            "SELECT status, lease_until, destination FROM deliveries
             WHERE site_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(site.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some((status, lease_until, destination)) = found else {
            return Err(StoreError::NotFound(format!("delivery {id}")));
        };
        let enabled: Option<bool> =
            sqlx::query_scalar("SELECT enabled FROM destinations WHERE id = $1 FOR KEY SHARE")
                .bind(&destination)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let refused = if status == "delivered" {
            Some(format!("delivery {id} was delivered already"))
        } else if lease_until.is_some_and(|u| u > now.as_millis()) {
            Some(format!("delivery {id} is being tried right now"))
        } else if enabled.is_none() {
            Some(format!("the destination of delivery {id} was removed"))
        } else if enabled == Some(false) {
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
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_at = $1,
                 lease_owner = NULL, lease_token = NULL, lease_until = NULL
             WHERE id = $2",
        )
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(GREATEST(d.next_at, COALESCE(d.lease_until, 0)))
             FROM deliveries d JOIN destinations t ON t.id = d.destination
             WHERE d.status = 'pending' AND t.enabled",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(due.map(Timestamp::from_millis))
    }
}

/// One settlement, inside the caller's transaction, which has locked the delivery. A
/// destination gone is added to `turn_off`, with the reason, for the caller to turn off.
async fn settle_one(
    conn: &mut PgConnection,
    s: &Settle,
    turn_off: &mut Vec<(String, String)>,
) -> Result<bool> {
    let held: Option<(String, i64)> = sqlx::query_as(
        "SELECT destination, attempts FROM deliveries
         WHERE id = $1 AND status = 'pending' AND lease_token = $2",
    )
    .bind(s.id.as_str())
    .bind(&s.lease)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some((destination, attempts)) = held else {
        return Ok(false);
    };
    let (attempt, status, next, delivered) = match &s.settlement {
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
         VALUES ($1, (SELECT COALESCE(MAX(n), 0) + 1 FROM delivery_attempts
                      WHERE delivery_id = $1), $2, $3, $4, $5)",
    )
    .bind(s.id.as_str())
    .bind(attempt.at.as_millis())
    .bind(attempt.status.map(i64::from))
    .bind(&attempt.error)
    .bind(i64::from(attempt.took_ms))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "UPDATE deliveries SET status = $1, attempts = $2, next_at = $3, delivered_at = $4,
             last_error = $5, lease_owner = NULL, lease_token = NULL, lease_until = NULL
         WHERE id = $6",
    )
    .bind(status.as_str())
    .bind(attempts + 1)
    .bind(next.as_millis())
    .bind(delivered.map(Timestamp::as_millis))
    .bind(&attempt.error)
    .bind(s.id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if let Settlement::Gone(a) = &s.settlement {
        let why = format!(
            "turned off: the endpoint answered {} (gone)",
            a.status.unwrap_or(410)
        );
        turn_off.push((destination, why));
    }
    Ok(true)
}
