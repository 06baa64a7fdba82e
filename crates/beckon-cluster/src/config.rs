//! How a node takes part in the cluster.

use std::time::Duration;

/// How long a lease lasts without renewal, unless configured otherwise: a node that stops
/// renewing (it crashed, it lost the database) loses its visitors this long after.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// How often a node renews its lease and reads the live nodes, unless configured otherwise:
/// several beats fit in one lease, so one slow or failed beat costs nothing.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// A node's name, address and timing in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The node's name, unique among live nodes: what ownership is hashed over, so a node that
    /// restarts under the same name gets the same visitors back.
    pub name: String,
    /// Where the other nodes reach this one (its internal address), to forward to it.
    pub address: String,
    /// How long the lease lasts from each renewal.
    pub lease: Duration,
    /// How often the lease is renewed and the view refreshed; shorter than `lease`.
    pub heartbeat: Duration,
}

impl ClusterConfig {
    /// A node called `name`, reachable at `address`, with the default lease and heartbeat.
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            name: name.into(),
            address: address.into(),
            lease: DEFAULT_LEASE,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }

    /// Why this configuration cannot work, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("a node needs a name".to_owned());
        }
        if self.heartbeat.is_zero() {
            return Err("the heartbeat must be longer than zero".to_owned());
        }
        if self.heartbeat >= self.lease {
            return Err(format!(
                "the heartbeat ({:?}) must be shorter than the lease ({:?})",
                self.heartbeat, self.lease
            ));
        }
        Ok(())
    }
}
