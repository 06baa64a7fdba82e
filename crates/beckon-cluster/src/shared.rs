//! What the heartbeat and the [`crate::Cluster`] handle share: the published view, and until
//! when this node's lease surely holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use beckon_store::cluster::NodeLease;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::view::View;

/// The node's published view and the local reckoning of its lease.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The view, published to every watcher.
    views: watch::Sender<Arc<View>>,
    /// How long a lease lasts from each renewal.
    lease: Duration,
    /// When the last successful renewal (or join) was *sent*; `None` while the lease may have
    /// lapsed. The database started the lease at or after that moment, so the lease surely
    /// holds until this plus `lease`, whatever the database's clock says.
    renewed: Mutex<Option<Instant>>,
    /// Set once the node has stopped (it left, or its handle was dropped): nothing is published
    /// after the view in which it owns nothing.
    stopped: AtomicBool,
}

impl Shared {
    /// The state of a node that has just joined, its lease sent at `sent`, seeing `first`.
    pub(crate) fn new(first: View, lease: Duration, sent: Instant) -> Shared {
        Shared {
            views: watch::Sender::new(Arc::new(first)),
            lease,
            renewed: Mutex::new(Some(sent)),
            stopped: AtomicBool::new(false),
        }
    }

    /// How long a lease lasts from each renewal.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// The current view.
    pub(crate) fn view(&self) -> Arc<View> {
        self.views.borrow().clone()
    }

    /// A receiver of every view from now on.
    pub(crate) fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.views.subscribe()
    }

    /// Publishes `nodes` with `me` as the view, if that changes it and the node has not stopped.
    pub(crate) fn publish(&self, me: &NodeLease, nodes: Vec<NodeLease>) {
        self.views.send_if_modified(|view| {
            // Checked under the channel's lock, which `retire` takes too: a beat that was
            // running when the node stopped cannot publish over the final view.
            if self.stopped.load(Ordering::SeqCst) {
                return false;
            }
            match view.next(me, nodes) {
                Some(next) => {
                    *view = Arc::new(next);
                    true
                }
                None => false,
            }
        });
    }

    /// Stops the node for good: publishes a view in which it owns nothing, and nothing after.
    pub(crate) fn retire(&self) {
        self.views.send_if_modified(|view| {
            self.stopped.store(true, Ordering::SeqCst);
            let others = without(&view.me, view.nodes.clone());
            match view.next(&view.me, others) {
                Some(next) => {
                    *view = Arc::new(next);
                    true
                }
                None => false,
            }
        });
    }

    /// Records a successful renewal (or join) sent at `sent`.
    pub(crate) fn renewed(&self, sent: Instant) {
        *self.renewed.lock().unwrap_or_else(PoisonError::into_inner) = Some(sent);
    }

    /// Records that the lease may have lapsed; true when it was held until now.
    pub(crate) fn lapsed(&self) -> bool {
        self.renewed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some()
    }

    /// Until when the lease surely holds; `None` while it may have lapsed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let renewed = *self.renewed.lock().unwrap_or_else(PoisonError::into_inner);
        renewed.map(|sent| sent + self.lease)
    }

    /// Whether the lease surely holds now: the last renewal succeeded within the lease.
    pub(crate) fn healthy(&self) -> bool {
        self.deadline().is_some_and(|end| Instant::now() < end)
    }
}

/// `nodes` with `me` among them (in place of any other lease of its name).
pub(crate) fn with(me: &NodeLease, mut nodes: Vec<NodeLease>) -> Vec<NodeLease> {
    nodes.retain(|node| node.name != me.name);
    nodes.push(me.clone());
    nodes
}

/// `nodes` without any lease of `me`'s name: a view in which this node owns nothing.
pub(crate) fn without(me: &NodeLease, mut nodes: Vec<NodeLease>) -> Vec<NodeLease> {
    nodes.retain(|node| node.name != me.name);
    nodes
}
