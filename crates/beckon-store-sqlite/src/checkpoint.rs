//! Checkpoints off the commit path.
//!
//! In WAL mode every commit appends the pages it changed to the WAL, and a checkpoint copies
//! them back into the database file. SQLite's default runs that checkpoint inside the commit
//! that crosses 1,000 pages, so under load nearly every group commit also copied and synced
//! the whole WAL, and every acknowledgement waited for it. Here the writer never checkpoints:
//! a task of its own does, on a connection of its own, every [`INTERVAL`], which also copies
//! a page changed by many commits once rather than once per commit.
//!
//! A passive checkpoint never blocks the writer, but while commits never pause it never
//! catches up either, and the WAL (which restarts from its beginning only once it has been
//! copied whole) keeps growing. Past [`RESTART_FRAMES`] the checkpointer asks for a restart:
//! the writer waits once, for that one checkpoint, and the WAL starts again from the top.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::oneshot;

/// How often the WAL is copied back.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// WAL frames (pages) past which the checkpointer makes the writer wait for a whole copy,
/// so that the WAL restarts: 16 MiB of 4 KiB pages.
pub const RESTART_FRAMES: i64 = 4 * 1024;

/// The running checkpointer; it stops when this is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: oneshot::Sender<()>,
}

impl Checkpointer {
    /// Opens a connection with `options` and checkpoints through it until dropped.
    pub async fn start(options: &SqliteConnectOptions) -> Result<Checkpointer, sqlx::Error> {
        let conn = SqliteConnection::connect_with(options).await?;
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(run(conn, stopped));
        Ok(Checkpointer { _stop: stop })
    }
}

async fn run(mut conn: SqliteConnection, mut stopped: oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => {}
        }
        // A restart right after a passive checkpoint has only the commits made meanwhile left
        // to copy, so the writer waits for little.
        match checkpoint(&mut conn, "PASSIVE").await {
            Some(frames) if frames > RESTART_FRAMES => {
                checkpoint(&mut conn, "RESTART").await;
            }
            _ => {}
        }
    }
    let _ = conn.close().await;
}

/// Runs one checkpoint; the frames in the WAL, or `None` when it failed (it is retried at the
/// next tick, and the WAL only grows meanwhile).
async fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> Option<i64> {
    // (busy, frames in the WAL, frames copied back)
    let result: Result<(i64, i64, i64), _> =
        sqlx::query_as(&format!("PRAGMA wal_checkpoint({mode})"))
            .fetch_one(conn)
            .await;
    match result {
        Ok((_, frames, _)) => Some(frames),
        Err(e) => {
            tracing::warn!(error = %e, mode, "WAL checkpoint failed");
            None
        }
    }
}
