//! Node leases: how the nodes of one installation know of each other.
//!
//! Each node holds a lease in the database under its name. A lease is given an *epoch*, a
//! number unique to it and greater than every earlier one, so that a node that lost its lease
//! and joined again is told apart from its former self. Lease ends are reckoned by the
//! database's clock, so the nodes' own clocks never decide who is live.

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// One node's lease, as the other nodes see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLease {
    /// The node's name, unique among the live nodes; what ownership is hashed over.
    pub name: String,
    /// Where the other nodes reach it (its internal address), to forward what it owns.
    pub address: String,
    /// The lease's epoch: unique, and greater than every epoch given before it.
    pub epoch: u64,
}

/// The membership verbs every backend that runs several nodes implements.
#[async_trait]
pub trait Membership: Send + Sync + 'static {
    /// Joins as `name` (reachable by the other nodes at `address`), with a lease of `lease`
    /// from the database's clock: a fresh epoch, unique and greater than every earlier one.
    /// Refused ([`crate::StoreError::Conflict`]) while another live lease holds the same name.
    async fn join(&self, name: &str, address: &str, lease: Duration) -> Result<NodeLease>;

    /// Extends the lease of `epoch` by `lease` from now; false when it had already lapsed
    /// (or was removed): the node must then rejoin under a new epoch.
    async fn renew(&self, epoch: u64, lease: Duration) -> Result<bool>;

    /// The nodes whose leases are live now (by the database's clock), by name.
    async fn live_nodes(&self) -> Result<Vec<NodeLease>>;

    /// Ends the lease of `epoch` at once (a clean shutdown). Ending a lease that has lapsed or
    /// was ended already does nothing.
    async fn leave(&self, epoch: u64) -> Result<()>;
}

/// The membership story every backend must tell: leases are exclusive per name, lapse on their
/// own, and every new one has a greater epoch.
pub mod suite {
    use std::time::Duration;

    use super::{Membership, NodeLease};
    use crate::StoreError;

    /// A lease that outlives any story.
    const LONG: Duration = Duration::from_secs(60);

    /// A lease short enough to watch lapse.
    const SHORT: Duration = Duration::from_millis(300);

    /// Long enough past [`SHORT`] for any lease of that length to have lapsed.
    const PAST_SHORT: Duration = Duration::from_millis(600);

    /// The first term of a lease that is renewed before it ends.
    const FIRST_TERM: Duration = Duration::from_secs(1);

    /// Runs every story. The backend must start with no nodes.
    pub async fn run_all(m: &dyn Membership) {
        joins_give_increasing_epochs_and_exclusive_names(m).await;
        a_renewed_lease_outlives_its_first_term(m).await;
        a_lapsed_lease_is_not_live_and_its_name_can_be_joined_again(m).await;
        leaving_ends_the_lease_at_once(m).await;
        live_nodes_are_listed_by_name(m).await;
    }

    async fn live(m: &dyn Membership) -> Vec<NodeLease> {
        m.live_nodes().await.expect("live nodes")
    }

    async fn joins_give_increasing_epochs_and_exclusive_names(m: &dyn Membership) {
        let first = m.join("epoch-1", "10.0.0.1:7000", LONG).await.unwrap();
        let second = m.join("epoch-2", "10.0.0.2:7000", LONG).await.unwrap();
        assert_eq!(first.name, "epoch-1");
        assert_eq!(first.address, "10.0.0.1:7000");
        assert!(second.epoch > first.epoch, "{second:?} after {first:?}");

        let taken = m.join("epoch-1", "10.0.0.9:7000", LONG).await;
        assert!(
            matches!(taken, Err(StoreError::Conflict(_))),
            "a second live join of one name: {taken:?}"
        );
        // The refused join changed nothing of the lease it collided with.
        assert!(live(m).await.contains(&first));
        assert!(m.renew(first.epoch, LONG).await.unwrap());

        // Epochs are never given twice, even to a name joined again.
        m.leave(first.epoch).await.unwrap();
        let again = m.join("epoch-1", "10.0.0.1:7000", LONG).await.unwrap();
        assert!(again.epoch > second.epoch, "{again:?} after {second:?}");
        m.leave(again.epoch).await.unwrap();
        m.leave(second.epoch).await.unwrap();
    }

    async fn a_renewed_lease_outlives_its_first_term(m: &dyn Membership) {
        // A first term long enough for the renewal to come within it on a loaded machine.
        let node = m
            .join("renewed", "10.0.0.3:7000", FIRST_TERM)
            .await
            .unwrap();
        assert!(m.renew(node.epoch, LONG).await.unwrap());
        tokio::time::sleep(FIRST_TERM + PAST_SHORT).await;
        assert!(
            live(m).await.contains(&node),
            "a renewed lease lapsed at the end of its first term"
        );
        assert!(m.renew(node.epoch, LONG).await.unwrap());
        m.leave(node.epoch).await.unwrap();
    }

    async fn a_lapsed_lease_is_not_live_and_its_name_can_be_joined_again(m: &dyn Membership) {
        let old = m.join("lapsing", "10.0.0.4:7000", SHORT).await.unwrap();
        tokio::time::sleep(PAST_SHORT).await;
        assert!(
            live(m).await.iter().all(|n| n.name != "lapsing"),
            "a lapsed lease is listed as live"
        );
        assert!(
            !m.renew(old.epoch, LONG).await.unwrap(),
            "a lapsed lease was renewed"
        );

        let new = m.join("lapsing", "10.0.0.5:7000", LONG).await.unwrap();
        assert!(new.epoch > old.epoch, "{new:?} after {old:?}");
        assert_eq!(new.address, "10.0.0.5:7000");
        assert!(live(m).await.contains(&new));
        // The old epoch stays dead: renewing it neither succeeds nor touches the new lease.
        assert!(!m.renew(old.epoch, LONG).await.unwrap());
        assert!(live(m).await.contains(&new));
        m.leave(new.epoch).await.unwrap();
    }

    async fn leaving_ends_the_lease_at_once(m: &dyn Membership) {
        let node = m.join("leaving", "10.0.0.6:7000", LONG).await.unwrap();
        let other = m.join("staying", "10.0.0.7:7000", LONG).await.unwrap();
        m.leave(node.epoch).await.unwrap();
        assert_eq!(live(m).await, vec![other.clone()]);
        assert!(
            !m.renew(node.epoch, LONG).await.unwrap(),
            "renewed after leaving"
        );
        // Leaving twice, or with an epoch never given, does nothing.
        m.leave(node.epoch).await.unwrap();
        m.leave(u64::MAX).await.unwrap();
        assert!(!m.renew(u64::MAX, LONG).await.unwrap());
        assert_eq!(live(m).await, vec![other.clone()]);
        // The name is free at once, without waiting for the lease's end.
        let back = m.join("leaving", "10.0.0.6:7000", LONG).await.unwrap();
        m.leave(back.epoch).await.unwrap();
        m.leave(other.epoch).await.unwrap();
        assert_eq!(live(m).await, vec![]);
    }

    async fn live_nodes_are_listed_by_name(m: &dyn Membership) {
        let mut joined = Vec::new();
        for name in ["node-c", "node-a", "node-d", "node-b"] {
            joined.push(m.join(name, &format!("{name}:7000"), LONG).await.unwrap());
        }
        let names: Vec<String> = live(m).await.into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["node-a", "node-b", "node-c", "node-d"]);
        for node in joined {
            m.leave(node.epoch).await.unwrap();
        }
    }
}
