//! Login sessions in Beckon's own database: tower-sessions' store trait on [`Accounts`].
//!
//! The cookie carries the session id; the database keeps only its SHA-256, so a copy of the
//! database cannot be replayed as a cookie.

use std::sync::Arc;

use async_trait::async_trait;
use beckon_engine::Timestamp;
use beckon_store::accounts::{Accounts, LoginRecord};
use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result};
use tower_sessions::{ExpiredDeletion, SessionStore};

use crate::clock::now;

/// tower-sessions' view of the login sessions.
#[derive(Clone)]
pub struct Logins {
    accounts: Arc<dyn Accounts>,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Logins")
    }
}

impl Logins {
    /// Sessions kept in `accounts`.
    pub fn new(accounts: Arc<dyn Accounts>) -> Logins {
        Logins { accounts }
    }
}

fn digest(id: &Id) -> [u8; 32] {
    Sha256::digest(id.to_string().as_bytes()).into()
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

fn to_row(record: &Record) -> Result<LoginRecord> {
    Ok(LoginRecord {
        id_hash: digest(&record.id),
        data: serde_json::to_string(&record.data).map_err(|e| Error::Encode(e.to_string()))?,
        expires: Timestamp::from_millis(
            (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64,
        ),
    })
}

#[async_trait]
impl SessionStore for Logins {
    async fn create(&self, record: &mut Record) -> Result<()> {
        // An id is 128 random bits; a collision is astronomically rare, but handled.
        loop {
            if self
                .accounts
                .create_login(&to_row(record)?)
                .await
                .map_err(backend)?
            {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> Result<()> {
        self.accounts
            .save_login(&to_row(record)?)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let Some(row) = self
            .accounts
            .login(&digest(id), now())
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_str(&row.data).map_err(|e| Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(row.expires.as_millis()) * 1_000_000,
        )
        .map_err(|e| Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.accounts
            .delete_login(&digest(id))
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl ExpiredDeletion for Logins {
    async fn delete_expired(&self) -> Result<()> {
        self.accounts
            .prune_logins(now())
            .await
            .map(|_| ())
            .map_err(backend)
    }
}
