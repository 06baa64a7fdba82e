//! Retention: the raw event log is kept for `limits.retention` and pruned in small steps, so
//! that pruning never holds the database for long. Orders (idempotent forever), exposures and
//! visitor states are kept.

use std::sync::Arc;
use std::time::Duration;

use beckon_store::Store;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// How often the log is pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);
/// Batches deleted per step.
pub const PRUNE_STEP: usize = 1_000;

/// Prunes what is older than `retention` once: returns how many batches went.
pub async fn prune_once(store: &dyn Store, clock: &Clock, retention: Duration) -> usize {
    let before = clock
        .now()
        .plus_ms(-(retention.as_millis().min(i64::MAX as u128) as i64));
    let mut total = 0;
    loop {
        match store.prune_log(before, PRUNE_STEP).await {
            Ok(n) => {
                total += n;
                if n < PRUNE_STEP {
                    break;
                }
                // Let the writer in between steps.
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning the log failed; retrying later");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(batches = total, "pruned the log");
    }
    total
}

/// Prunes every [`PRUNE_EVERY`] until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    clock: Clock,
    retention: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => { prune_once(store.as_ref(), &clock, retention).await; }
            _ = shutdown.cancelled() => break,
        }
    }
}
