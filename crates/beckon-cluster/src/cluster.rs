//! The handle of a node's membership: its view, its health, and its clean departure.

use std::sync::Arc;

use beckon_store::cluster::Membership;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::heartbeat::{Heartbeat, bounded};
use crate::shared::Shared;
use crate::view::View;

/// This node's place in the cluster, kept alive by a background heartbeat.
///
/// Dropping it without [`Cluster::leave`] stops the heartbeat at once without ending the lease,
/// as a crash would: the node owns nothing from then on, and the other nodes take its visitors
/// when the lease lapses.
pub struct Cluster {
    membership: Arc<dyn Membership>,
    shared: Arc<Shared>,
    /// The heartbeat's stop signal and its task; taken by `leave` or on drop.
    heartbeat: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Cluster {
    /// Joins the cluster as `config.name` and starts the heartbeat. Fails when the
    /// configuration cannot work, when another live node holds the name, or when the store
    /// cannot be reached. Must be called within a tokio runtime.
    pub async fn start(
        membership: Arc<dyn Membership>,
        config: ClusterConfig,
    ) -> Result<Cluster, String> {
        config.check()?;
        let heartbeat = Heartbeat::join(membership.clone(), config).await?;
        let shared = heartbeat.shared();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(heartbeat.run(stopped));
        Ok(Cluster {
            membership,
            shared,
            heartbeat: Some((stop, task)),
        })
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.shared.view()
    }

    /// A receiver of every new view, to act when owners may have moved.
    pub fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.shared.watch()
    }

    /// Whether this node's lease surely holds: its last renewal succeeded within the lease.
    /// For the readiness check: a node that is not healthy owns nothing.
    pub fn healthy(&self) -> bool {
        self.shared.healthy()
    }

    /// Leaves the cluster cleanly: lets the heartbeat finish its beat, publishes a view in
    /// which this node owns nothing, then ends the lease, so the other nodes take its visitors
    /// at their next beat. An error means the lease could not be ended; it lapses on its own.
    pub async fn leave(mut self) -> Result<(), String> {
        if let Some((stop, task)) = self.heartbeat.take() {
            // An error means the task has already ended; waiting for it below says how.
            let _ = stop.send(());
            let ended = task.await;
            self.shared.retire();
            ended.map_err(|e| format!("the heartbeat failed: {e}"))?;
        }
        let epoch = self.shared.view().me.epoch;
        bounded(self.shared.lease(), self.membership.leave(epoch))
            .await
            .map_err(|e| format!("cannot end the lease of epoch {epoch}: {e}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((_, task)) = self.heartbeat.take() {
            task.abort();
            self.shared.retire();
        }
    }
}
