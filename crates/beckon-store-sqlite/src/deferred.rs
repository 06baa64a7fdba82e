//! Group commits whose sync comes after them, so that the writer commits the next group while
//! the disk syncs the last.
//!
//! With `synchronous = FULL`, SQLite syncs the WAL inside `COMMIT`: the writer waits for the
//! disk once per group, and nothing else is written meanwhile. A group commit from
//! [`crate::SqliteStore`]'s `commit_unsynced` instead runs at `synchronous = NORMAL`, where
//! `COMMIT` only writes its frames to the WAL, and [`Wal::sync`] then syncs the WAL file itself:
//! once that returns, every frame written before it is on the disk, so every commit that
//! returned before it is durable. The WAL is appended to and each frame carries a checksum of
//! all before it, so recovery after a crash keeps a prefix of the commits: never a later one
//! without an earlier. SQLite still syncs what `NORMAL` syncs (the WAL before a checkpoint
//! copies it back, and its header when it restarts).
//!
//! Every other write (accounts, rules, conversations, …) must stay durable by itself, so the
//! writer connection goes back to `FULL` before anything else can use it: the pool's
//! `after_release` hook restores it whenever a deferred commit left it at `NORMAL` — after an
//! error or a cancelled future too — and closes the connection if it cannot (the pool then
//! opens a fresh one, at `FULL`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use beckon_store::{Result, StoreError};
use futures::future::BoxFuture;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::{Sqlite, SqliteConnection};

use crate::db;

/// Whether the writer connection may be at `synchronous = NORMAL`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unsynced(Arc<AtomicBool>);

impl Unsynced {
    /// Puts `conn` (the writer, acquired) at `NORMAL` for one deferred commit.
    pub(crate) async fn begin(&self, conn: &mut SqliteConnection) -> Result<()> {
        // Set first: a failure half-way still leaves the hook to restore `FULL`.
        self.0.store(true, Ordering::SeqCst);
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(conn)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Whether a deferred commit may have left the writer at `NORMAL`.
    #[cfg(test)]
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The pool's `after_release` hook: a connection a deferred commit left at `NORMAL` goes
    /// back to `FULL` before anyone else gets it, or is closed.
    pub(crate) fn hook(
        &self,
    ) -> impl for<'c> Fn(
        &'c mut SqliteConnection,
        PoolConnectionMetadata,
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>>
    + Send
    + Sync
    + 'static {
        let flag = self.0.clone();
        move |conn, _| {
            let flag = flag.clone();
            Box::pin(async move {
                if !flag.swap(false, Ordering::SeqCst) {
                    return Ok(true);
                }
                match sqlx::query::<Sqlite>("PRAGMA synchronous = FULL")
                    .execute(conn)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot put the writer back to synchronous = FULL; closing it");
                        Ok(false)
                    }
                }
            })
        }
    }
}

/// The WAL of an open database, kept open for its syncs.
///
/// One descriptor for the store's lifetime, opened once the writer has the database open: on
/// Linux a descriptor reports a write-back error that happened since *it* was opened or last
/// reported one, so a descriptor opened for each sync would hear `Ok` when the checkpointer's
/// or the writer's own descriptor had already been told the pages were lost. The WAL is the
/// one SQLite writes: its name comes from the database's path as SQLite resolved it (a
/// symlinked database has its WAL beside the link's target), and it is not deleted while any
/// connection is open, which the store's are until it is dropped.
#[derive(Debug)]
pub(crate) struct Wal(Arc<std::fs::File>);

impl Wal {
    /// Opens the WAL of the database `writer` has open.
    pub(crate) async fn open(writer: &sqlx::SqlitePool) -> Result<Wal> {
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(writer)
                .await
                .map_err(db)?;
        let mut path = std::ffi::OsString::from(file);
        path.push("-wal");
        let path = PathBuf::from(path);
        let wal = std::fs::File::open(&path).map_err(|e| {
            StoreError::Database(format!("cannot open the WAL {}: {e}", path.display()))
        })?;
        Ok(Wal(Arc::new(wal)))
    }

    /// The open WAL.
    #[cfg(test)]
    pub(crate) fn file(&self) -> &std::fs::File {
        &self.0
    }

    /// Syncs the WAL's data and length, as SQLite's own commit sync does.
    pub(crate) async fn sync(&self) -> Result<()> {
        let wal = self.0.clone();
        tokio::task::spawn_blocking(move || wal.sync_data())
            .await
            .map_err(|e| StoreError::Database(format!("the WAL sync did not finish: {e}")))?
            .map_err(|e| StoreError::Database(format!("cannot sync the WAL: {e}")))
    }
}
