//! Whether the server's background tasks still run: the readiness probe's cheap check. A
//! shard or the writer that ended (a panic, or shutdown) can take no more events, so the
//! node must leave the load balancer's rotation.

use std::sync::Arc;

use tokio::task::AbortHandle;

/// Handles on the engine shards' tasks and the writer's, to ask whether they have ended.
#[derive(Clone, Debug)]
pub struct Liveness {
    shards: Arc<Vec<AbortHandle>>,
    writer: AbortHandle,
}

impl Liveness {
    /// Watches these tasks (it never aborts them).
    pub fn new(shards: Vec<AbortHandle>, writer: AbortHandle) -> Liveness {
        Liveness {
            shards: Arc::new(shards),
            writer,
        }
    }

    /// `Err` naming the first task that has ended.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.shards.iter().any(AbortHandle::is_finished) {
            return Err("an engine shard has stopped");
        }
        if self.writer.is_finished() {
            return Err("the writer has stopped");
        }
        Ok(())
    }
}
