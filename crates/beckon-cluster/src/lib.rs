//! Beckon's cluster: several nodes on one database, each visitor owned by exactly one of them.
//!
//! A node [`Cluster::start`]s by joining (a lease in the database, through
//! [`beckon_store::cluster::Membership`]) and keeps its lease alive with a heartbeat that also
//! reads the live nodes: that is its [`View`]. Every node computes a visitor's owner from its
//! view by [`rendezvous`] hashing over the live nodes' names, so nodes with the same view agree,
//! and a node's arrival or departure moves only its own share of visitors.
//!
//! Nodes tell each other of changes over the [`bus`] (Redis pub/sub), news only: what must not
//! be lost is in the database first.
//!
//! The crate knows no SQL (the store does) and no HTTP (forwarding is the server's).

pub mod bus;
mod cluster;
mod config;
mod heartbeat;
pub mod rendezvous;
mod shared;
pub mod testing;
mod view;

pub use beckon_store::cluster::NodeLease;
pub use bus::{Bus, BusError, Heard, Note};
pub use cluster::Cluster;
pub use config::{ClusterConfig, DEFAULT_HEARTBEAT, DEFAULT_LEASE};
pub use view::View;
