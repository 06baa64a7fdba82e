//! [`Membership`] on PostgreSQL: one row of `nodes` per node name, its lease end reckoned by
//! the database's clock, its epoch drawn from the `node_epochs` sequence.
//!
//! Each verb is one statement, so two nodes joining under one name at once cannot both win:
//! the primary key on `name` decides, and a lapsed lease is replaced only by a statement that
//! still sees it lapsed.

use std::time::Duration;

use async_trait::async_trait;
use beckon_store::cluster::{Membership, NodeLease};
use beckon_store::{Result, StoreError};
use sqlx::postgres::PgRow;

use crate::rows::col;
use crate::{PgStore, db};

/// A lease's length as whole microseconds, bound as `$n::bigint * interval '1 microsecond'`.
fn micros(lease: Duration) -> Result<i64> {
    i64::try_from(lease.as_micros())
        .map_err(|_| StoreError::Database(format!("a lease of {lease:?} is too long")))
}

/// An epoch as stored; `None` for one too large to have ever been given.
fn stored_epoch(epoch: u64) -> Option<i64> {
    i64::try_from(epoch).ok()
}

fn node_lease(row: &PgRow) -> Result<NodeLease> {
    let epoch: i64 = col(row, "epoch").map_err(StoreError::Corrupt)?;
    Ok(NodeLease {
        name: col(row, "name").map_err(StoreError::Corrupt)?,
        address: col(row, "address").map_err(StoreError::Corrupt)?,
        epoch: u64::try_from(epoch)
            .map_err(|_| StoreError::Corrupt(format!("node epoch {epoch}")))?,
    })
}

#[async_trait]
impl Membership for PgStore {
    async fn join(&self, name: &str, address: &str, lease: Duration) -> Result<NodeLease> {
        // A live row of the same name keeps its lease: the update's WHERE fails, no row comes
        // back, and the join is refused. A lapsed one is taken over with a fresh epoch.
        let row = sqlx::query(
            "INSERT INTO nodes (name, address, epoch, lease_until)
             VALUES ($1, $2, nextval('node_epochs'), now() + $3::bigint * interval '1 microsecond')
             ON CONFLICT (name) DO UPDATE
                SET address = EXCLUDED.address, epoch = EXCLUDED.epoch,
                    lease_until = EXCLUDED.lease_until
                WHERE nodes.lease_until <= now()
             RETURNING name, address, epoch",
        )
        .bind(name)
        .bind(address)
        .bind(micros(lease)?)
        .fetch_optional(self.pool())
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::Conflict(format!("node {name:?} holds a live lease")))?;
        node_lease(&row)
    }

    async fn renew(&self, epoch: u64, lease: Duration) -> Result<bool> {
        let Some(epoch) = stored_epoch(epoch) else {
            return Ok(false);
        };
        let renewed = sqlx::query(
            "UPDATE nodes SET lease_until = now() + $2::bigint * interval '1 microsecond'
             WHERE epoch = $1 AND lease_until > now()",
        )
        .bind(epoch)
        .bind(micros(lease)?)
        .execute(self.pool())
        .await
        .map_err(db)?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn live_nodes(&self) -> Result<Vec<NodeLease>> {
        // Byte order, as Rust sorts strings, whatever the database's collation.
        let rows = sqlx::query(
            "SELECT name, address, epoch FROM nodes WHERE lease_until > now()
             ORDER BY name COLLATE \"C\"",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.iter().map(node_lease).collect()
    }

    async fn leave(&self, epoch: u64) -> Result<()> {
        let Some(epoch) = stored_epoch(epoch) else {
            return Ok(());
        };
        sqlx::query("DELETE FROM nodes WHERE epoch = $1")
            .bind(epoch)
            .execute(self.pool())
            .await
            .map_err(db)?;
        Ok(())
    }
}
