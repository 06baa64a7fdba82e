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

/// How long a checkpoint waits for the writer or a reader. Shorter than the writer's own
/// wait ([`crate::BUSY_TIMEOUT`]), so that a restart stuck behind a reader gives up before a
/// commit waiting behind the restart would fail.
pub const CHECKPOINT_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Failed checkpoints in a row after which the connection is opened again.
const FAILURES_BEFORE_REOPEN: u32 = 20;

/// The running checkpointer; it stops when this is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: oneshot::Sender<()>,
}

impl Checkpointer {
    /// Opens a connection with `options` and checkpoints through it until dropped.
    pub async fn start(options: &SqliteConnectOptions) -> Result<Checkpointer, sqlx::Error> {
        let options = options.clone().busy_timeout(CHECKPOINT_BUSY_TIMEOUT);
        let conn = SqliteConnection::connect_with(&options).await?;
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(run(options, conn, stopped));
        Ok(Checkpointer { _stop: stop })
    }
}

/// What one checkpoint reported.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Report {
    /// It could not finish: the writer or a reader was in the way.
    busy: bool,
    /// Frames in the WAL.
    frames: i64,
    /// Frames copied back into the database file.
    copied: i64,
}

async fn run(
    options: SqliteConnectOptions,
    mut conn: SqliteConnection,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0;
    // The WAL as the last restart left it: until the next commit resets it, it still reports
    // its old length, and restarting it again would only take the write lock for nothing.
    let mut restarted: Option<Report> = None;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => {}
        }
        // A restart right after a passive checkpoint has only the commits made meanwhile left
        // to copy, so the writer waits for little.
        let passive = checkpoint(&mut conn, "PASSIVE").await;
        let result = match passive {
            Some(p) if p.frames > RESTART_FRAMES && restarted != Some(p) => {
                let restart = checkpoint(&mut conn, "RESTART").await;
                restarted = restart.filter(|r| !r.busy);
                restart
            }
            other => other,
        };
        if result.is_some() {
            failures = 0;
            continue;
        }
        failures += 1;
        if failures >= FAILURES_BEFORE_REOPEN {
            // The writer never checkpoints, so a checkpointer that cannot work lets the WAL
            // grow without end: start again on a fresh connection.
            match SqliteConnection::connect_with(&options).await {
                Ok(fresh) => {
                    let _ = std::mem::replace(&mut conn, fresh).close().await;
                    failures = 0;
                }
                Err(e) => tracing::warn!(error = %e, "cannot reopen the checkpointer's connection"),
            }
        }
    }
    let _ = conn.close().await;
}

/// Runs one checkpoint; `None` when it failed (it is retried at the next tick, and the WAL
/// only grows meanwhile).
async fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> Option<Report> {
    let result: Result<(i64, i64, i64), _> =
        sqlx::query_as(&format!("PRAGMA wal_checkpoint({mode})"))
            .fetch_one(conn)
            .await;
    match result {
        Ok((busy, frames, copied)) => Some(Report {
            busy: busy != 0,
            frames,
            copied,
        }),
        Err(e) => {
            tracing::warn!(error = %e, mode, "WAL checkpoint failed");
            None
        }
    }
}
