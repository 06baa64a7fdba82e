//! Which node serves a visitor: this one when it runs alone; in a cluster, the owner in this
//! node's view (`beckon_cluster`), to which the routes forward what reaches them for another
//! node's visitor (see [`crate::forward`]).
//!
//! A request another node forwarded is always served here: views can differ for a moment,
//! and a request must never travel in a circle. What a node serves for a visitor it does not
//! own is fenced by the store (a write built on a version another node moved on is refused).

use std::sync::Arc;

use axum::http::HeaderMap;
use beckon_cluster::View;
use beckon_engine::{SiteId, VisitorId};
use beckon_store::cluster::NodeLease;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

/// The header a node's forwarded request carries: the cluster's shared secret, which proves
/// the request comes from a node of this installation (whose edge already bounded it).
pub const FORWARDED: &str = "x-beckon-forwarded";

/// What a site's desk is placed by, in place of a visitor's id (no visitor's id holds `#`).
pub const DESK: &str = "#desk";

/// Where a visitor is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Here.
    Here,
    /// At this node, its owner.
    Owner(NodeLease),
}

/// This node's place among the nodes.
#[derive(Clone)]
pub struct Placement {
    view: Option<watch::Receiver<Arc<View>>>,
    /// The secret a forwarded request carries, derived from the installation's key.
    secret: String,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement")
            .field("clustered", &self.view.is_some())
            .finish_non_exhaustive()
    }
}

impl Placement {
    /// A node alone (`view: None`) or one of a cluster whose views arrive on `view`;
    /// `server_key` is the installation's key, shared by every node.
    pub fn new(view: Option<watch::Receiver<Arc<View>>>, server_key: &[u8; 32]) -> Placement {
        let mut mac = Hmac::<Sha256>::new_from_slice(server_key).expect("HMAC takes any key");
        mac.update(b"beckon: a request forwarded between nodes");
        let secret = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            mac.finalize().into_bytes(),
        );
        Placement { view, secret }
    }

    /// Whether this node is one of a cluster.
    pub fn clustered(&self) -> bool {
        self.view.is_some()
    }

    /// Where `visitor` of `site` is served. With no live node known (this node's own lease in
    /// doubt and no other seen), here: the store's fence keeps that safe.
    pub fn route(&self, site: &SiteId, visitor: &VisitorId) -> Route {
        self.owner_of(site, visitor.as_str())
    }

    /// Where `site`'s desk runs: its routing board, its people's consoles and its open
    /// conversations' clocks are on one node, which every chat frame and every action of the
    /// site's people reaches (the desk's news reaches every node's tabs over the bus).
    pub fn desk(&self, site: &SiteId) -> Route {
        self.owner_of(site, DESK)
    }

    /// Whether `site`'s desk runs on this node (always, alone).
    pub fn desk_is_here(&self, site: &SiteId) -> bool {
        self.desk(site) == Route::Here
    }

    fn owner_of(&self, site: &SiteId, key: &str) -> Route {
        let Some(view) = &self.view else {
            return Route::Here;
        };
        let view = view.borrow();
        match view.owner(site.as_str(), key) {
            Some(owner) if *owner != view.me => Route::Owner(owner.clone()),
            _ => Route::Here,
        }
    }

    /// Whether this node owns `visitor` of `site` (always, alone).
    pub fn is_mine(&self, site: &SiteId, visitor: &VisitorId) -> bool {
        self.route(site, visitor) == Route::Here
    }

    /// Whether this node's lease surely holds (always, alone): a node whose lease may have
    /// lapsed is left out of its own view, and owns nothing until it renews or rejoins.
    pub fn holds_lease(&self) -> bool {
        self.view.as_ref().is_none_or(|view| {
            let view = view.borrow();
            view.nodes.contains(&view.me)
        })
    }

    /// A receiver of the cluster's views, to act when owners move.
    pub fn watch(&self) -> Option<watch::Receiver<Arc<View>>> {
        self.view.clone()
    }

    /// The header value a forwarded request carries.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `headers` prove a request forwarded by another node of this installation.
    pub fn forwarded(&self, headers: &HeaderMap) -> bool {
        headers
            .get(FORWARDED)
            .is_some_and(|v| same_secret(v.as_bytes(), self.secret.as_bytes()))
    }
}

/// A layer's function for the nodes' own routes: a request without the cluster's secret is
/// refused at once, before its body is read.
pub async fn nodes_only(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !state.placement.forwarded(req.headers()) {
        return crate::error::ApiError::Unauthorized.into_response();
    }
    next.run(req).await
}

/// Whether two secrets are equal, compared in constant time.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str) -> NodeLease {
        NodeLease {
            name: name.to_owned(),
            address: format!("{name}:8080"),
            epoch: 1,
        }
    }

    #[test]
    fn a_node_alone_serves_everyone_and_a_cluster_node_only_its_own() {
        let site = SiteId::parse("shop").unwrap();
        let alone = Placement::new(None, &[1; 32]);
        let (tx, rx) = watch::channel(Arc::new(View {
            me: lease("a"),
            nodes: vec![lease("a"), lease("b"), lease("c")],
            changes: 0,
        }));
        let clustered = Placement::new(Some(rx), &[1; 32]);
        let mut here = 0;
        for i in 0..300 {
            let v = VisitorId::parse(&format!("v_{i}")).unwrap();
            assert_eq!(alone.route(&site, &v), Route::Here);
            match clustered.route(&site, &v) {
                Route::Here => here += 1,
                Route::Owner(n) => assert_ne!(n.name, "a"),
            }
        }
        assert!((70..130).contains(&here), "{here} of 300 are a's");
        // Alone in the view again, the node serves everyone.
        tx.send(Arc::new(View {
            me: lease("a"),
            nodes: vec![lease("a")],
            changes: 1,
        }))
        .unwrap();
        assert!(clustered.is_mine(&site, &VisitorId::parse("v_1").unwrap()));
    }

    #[test]
    fn only_the_installation_s_nodes_can_forward() {
        let ours = Placement::new(None, &[1; 32]);
        let theirs = Placement::new(None, &[2; 32]);
        let mut headers = HeaderMap::new();
        assert!(!ours.forwarded(&headers));
        headers.insert(FORWARDED, ours.secret().parse().unwrap());
        assert!(ours.forwarded(&headers));
        assert!(!theirs.forwarded(&headers));
        headers.insert(FORWARDED, "guess".parse().unwrap());
        assert!(!ours.forwarded(&headers));
    }
}
