//! A node's view of the cluster: who is live, and so who owns each visitor.

use beckon_store::cluster::NodeLease;

use crate::rendezvous;

/// The live nodes as one node last saw them. Nodes with the same view compute the same owner
/// for every visitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// This node's lease (its latest epoch).
    pub me: NodeLease,
    /// The live nodes, sorted by name. It holds `me` while this node's lease holds, and not
    /// while the lease may have lapsed: then this node owns nothing.
    pub nodes: Vec<NodeLease>,
    /// How many times the view has changed since the node started (0 for the first): a
    /// watcher that sees it move knows owners may have moved.
    pub changes: u64,
}

impl View {
    /// The node that owns `visitor` of `site`; `None` when no node is known to be live.
    pub fn owner(&self, site: &str, visitor: &str) -> Option<&NodeLease> {
        rendezvous::owner(site, visitor, &self.nodes)
    }

    /// Whether this node owns `visitor` of `site`: never while its lease may have lapsed.
    pub fn is_mine(&self, site: &str, visitor: &str) -> bool {
        self.owner(site, visitor) == Some(&self.me)
    }

    /// A node's first view: `me` among `nodes`.
    pub(crate) fn first(me: NodeLease, nodes: Vec<NodeLease>) -> View {
        View {
            nodes: sorted(nodes),
            me,
            changes: 0,
        }
    }

    /// The next view, with `nodes` and this node as `me`; `None` when nothing changed.
    pub(crate) fn next(&self, me: &NodeLease, nodes: Vec<NodeLease>) -> Option<View> {
        let nodes = sorted(nodes);
        (self.me != *me || self.nodes != nodes).then(|| View {
            me: me.clone(),
            nodes,
            changes: self.changes + 1,
        })
    }
}

/// `nodes` by name (byte order, as the store lists them).
fn sorted(mut nodes: Vec<NodeLease>) -> Vec<NodeLease> {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}
