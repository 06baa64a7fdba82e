//! A cluster's running nodes as a test sees them from outside: the leases the rendezvous
//! places visitors and desks by, the live nodes the store lists, and what each node counts at
//! `/metrics`. Shared by the cluster's scenario and the paused node of [`super::stale`].

use std::time::{Duration, Instant};

use beckon_cluster::NodeLease;
use beckon_store::cluster::Membership;

use super::{NodeSettings, PATIENCE};

/// The leases of the nodes whose place in `nodes` passes `keep`, as every node sees them (the
/// rendezvous reads only the names).
pub fn leases(nodes: &[NodeSettings], keep: impl Fn(usize) -> bool) -> Vec<NodeLease> {
    nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, n)| NodeLease {
            name: n.name.clone(),
            address: n.addr.to_string(),
            epoch: 0,
        })
        .collect()
}

/// Polls the store's live nodes until there are `n`, within [`PATIENCE`]; them.
pub async fn live_nodes_become(store: &dyn Membership, n: usize) -> Vec<NodeLease> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let live = store.live_nodes().await.expect("the live nodes");
        if live.len() == n {
            return live;
        }
        assert!(
            Instant::now() < deadline,
            "{} live nodes after {PATIENCE:?}, not {n}: {live:?}",
            live.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /metrics` of the node at `base`.
pub async fn scrape(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("the metrics answer");
    assert_eq!(r.status(), 200);
    r.text().await.expect("the metrics' text")
}

/// The value of the series `series` (its name and labels as exposed) in `metrics`, if any.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}
