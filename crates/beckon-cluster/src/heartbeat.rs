//! The heartbeat: the background task that keeps a node's lease alive and its view current.
//!
//! Every beat renews the lease and reads the live nodes. The node claims visitors only while
//! its lease surely holds: from the moment a renewal is refused (the lease lapsed: the process
//! was paused, the database was out of reach for longer than the lease) or the lease's local
//! deadline passes without a renewal, it publishes a view in which it owns nothing, and then
//! rejoins under a new epoch. Every call to the store is bounded by the time the lease has
//! left, so a database that hangs cannot keep the node claiming past its lease.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use beckon_store::cluster::{Membership, NodeLease};
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::ClusterConfig;
use crate::shared::{Shared, with, without};
use crate::view::View;

/// The task's state: who it is and what it publishes to.
pub(crate) struct Heartbeat {
    membership: Arc<dyn Membership>,
    config: ClusterConfig,
    /// The lease this node holds, or last held.
    me: NodeLease,
    shared: Arc<Shared>,
}

impl Heartbeat {
    /// Joins the cluster and reads the first view.
    pub(crate) async fn join(
        membership: Arc<dyn Membership>,
        config: ClusterConfig,
    ) -> Result<Heartbeat, String> {
        let sent = Instant::now();
        let me = bounded(
            config.lease,
            membership.join(&config.name, &config.address, config.lease),
        )
        .await
        .map_err(|e| format!("cannot join the cluster as {:?}: {e}", config.name))?;
        let left = (sent + config.lease).saturating_duration_since(Instant::now());
        let nodes = match bounded(left, membership.live_nodes()).await {
            Ok(nodes) => nodes,
            Err(e) => {
                // Without a view the node cannot start; its lease must not hold the name.
                if let Err(left) = bounded(config.lease, membership.leave(me.epoch)).await {
                    tracing::warn!(node = %me.name, error = %left, "cannot leave after a failed start; the lease will lapse");
                }
                return Err(format!("cannot read the cluster's nodes: {e}"));
            }
        };
        let first = View::first(me.clone(), with(&me, nodes));
        Ok(Heartbeat {
            shared: Arc::new(Shared::new(first, config.lease, sent)),
            membership,
            config,
            me,
        })
    }

    /// What the task shares with the handle.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Beats every heartbeat until `stop` fires (or its sender is dropped). A beat that has
    /// begun is finished first, so that a rejoin is never cut off with its epoch unknown.
    pub(crate) async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let start = Instant::now() + self.config.heartbeat;
        let mut beats = tokio::time::interval_at(start, self.config.heartbeat);
        beats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let deadline = self.shared.deadline();
            tokio::select! {
                biased;
                _ = &mut stop => return,
                () = tokio::time::sleep_until(deadline.unwrap_or(start)), if deadline.is_some() => {
                    self.lapse("no renewal within the lease");
                }
                _ = beats.tick() => self.beat().await,
            }
        }
    }

    /// One beat: renew, then refresh the view; or, the lease lapsed, own nothing and rejoin.
    async fn beat(&mut self) {
        let sent = Instant::now();
        let renewal = self.membership.renew(self.me.epoch, self.config.lease);
        match bounded(self.time_left(sent), renewal).await {
            Ok(true) => {
                self.shared.renewed(sent);
                self.refresh().await;
            }
            Ok(false) => {
                self.lapse("the lease lapsed");
                self.rejoin().await;
            }
            Err(e) => {
                tracing::warn!(node = %self.me.name, error = %e, "cannot renew the lease; retrying at the next beat");
                if self
                    .shared
                    .deadline()
                    .is_some_and(|end| Instant::now() >= end)
                {
                    self.lapse("no renewal within the lease");
                }
            }
        }
    }

    /// Reads the live nodes and publishes them, this node among them. When they cannot be read
    /// the last view's nodes stand, with this node back among them.
    async fn refresh(&mut self) {
        let read = bounded(self.time_left(Instant::now()), self.membership.live_nodes()).await;
        let nodes = read.unwrap_or_else(|e| {
            tracing::warn!(node = %self.me.name, error = %e, "cannot read the cluster's nodes; keeping the last view");
            self.shared.view().nodes.clone()
        });
        self.shared.publish(&self.me, with(&self.me, nodes));
    }

    /// Stops claiming at once: publishes the last view without this node.
    fn lapse(&mut self, why: &str) {
        if self.shared.lapsed() {
            tracing::warn!(node = %self.me.name, epoch = self.me.epoch, why, "lease lost; owning nothing until it is renewed or rejoined");
        }
        let others = without(&self.me, self.shared.view().nodes.clone());
        self.shared.publish(&self.me, others);
    }

    /// Joins again under a new epoch, and publishes the view with the new lease.
    async fn rejoin(&mut self) {
        let sent = Instant::now();
        let config = &self.config;
        let join = self
            .membership
            .join(&config.name, &config.address, config.lease);
        match bounded(config.lease, join).await {
            Ok(me) => {
                tracing::info!(node = %me.name, epoch = me.epoch, "rejoined the cluster");
                self.me = me;
                self.shared.renewed(sent);
                self.refresh().await;
            }
            Err(e) => {
                tracing::warn!(node = %config.name, error = %e, "cannot rejoin the cluster; retrying at the next beat");
            }
        }
    }

    /// How long a call begun at `now` may take: until the lease's local deadline while it
    /// holds (a later answer would come after this node must stop claiming), else a lease.
    fn time_left(&self, now: Instant) -> Duration {
        match self.shared.deadline() {
            Some(end) => end.saturating_duration_since(now),
            None => self.config.lease,
        }
    }
}

/// `call`, given at most `limit` to answer; its error (or silence) as text.
pub(crate) async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = beckon_store::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}
