//! Three `beckon serve` nodes on one PostgreSQL database, visitors browsing through whichever
//! node a load balancer that knows nothing of visitors hands them, and one node killed with
//! SIGKILL in the middle of it. "Several nodes" in `ARCHITECTURE.md` promises that every
//! visitor is served by its owner (a request reaching another node is forwarded there), that a
//! dead node's visitors move to the others once its lease lapses, and that the store's fences
//! keep a visitor's log whole through the move; so the promises the single node keeps across
//! kills (`crash.rs`: an acknowledged event is in the log exactly once, the guardrails count
//! what was durably decided) must hold across the cluster too. The clients and the checks are
//! `process_support::visitors`, shared with `crash.rs`.
//!
//! Needs PostgreSQL (`BECKON_TEST_POSTGRES`, by default the CI machine's): each run gets a
//! scratch schema of its own, dropped when the test passes.

mod process_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use beckon_cluster::NodeLease;
use beckon_store::cluster::Membership;
use beckon_store_postgres::testing::Scratch;
use process_support::visitors::{
    Client, LIMITS, POLICY, Stats, check_promises, finish_and_resend, spawn_visitors,
};
use process_support::*;
use tokio::sync::watch;

/// Visitors browsing at once, each its own client task.
const VISITORS: usize = 30;
/// The seed of the visitors' choices, unless `BECKON_CLUSTER_SEED` gives another.
const SEED: u64 = 0xc105_7e42_2026;
/// The nodes, by name. The one killed is not the first (which started alone and migrated).
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// The node killed with SIGKILL.
const VICTIM: usize = 1;
/// Each node's lease and heartbeat: short, so that the test sees a dead node's visitors move.
const LEASE: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long after the visitors start the victim is killed. Visitors arrive over the first
/// three seconds (see `process_support::visitors`), so most are known by then.
const BEFORE_KILL: Duration = Duration::from_millis(2_000);
/// How long the visitors browse on the two survivors after the kill: past the lease, so that
/// the dead node's visitors are served by their new owners for a while.
const AFTER_KILL: Duration = Duration::from_millis(5_000);
/// The longest a dead node's visitor may go unserved: the lease, a few heartbeats for the
/// survivors to see it lapse, and the visitor's reload from the store.
const FAILOVER_BOUND: Duration = Duration::from_millis(6_000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_loses_its_visitors_to_the_others_and_every_promise_holds() {
    let seed = std::env::var("BECKON_CLUSTER_SEED")
        .ok()
        .and_then(|s| match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        })
        .unwrap_or(SEED);
    let scratch = Scratch::new().await;
    let store = scratch.store().await;
    let dir = tempfile::tempdir().unwrap();
    let settings: Vec<NodeSettings> = NODES
        .iter()
        .zip(free_addrs(NODES.len()))
        .map(|(name, addr)| NodeSettings {
            name: (*name).to_owned(),
            addr,
            lease: LEASE,
            heartbeat: HEARTBEAT,
        })
        .collect();
    // One after another: the first migrates the empty schema.
    let mut nodes = Vec::new();
    for node in &settings {
        let config = write_cluster_config(dir.path(), node, &scratch.url(), POLICY, LIMITS);
        nodes.push(Beckon::start(&config).await);
    }

    // 1. Every node is live before the visitors start.
    let live = live_nodes_become(&store, NODES.len()).await;
    let names: Vec<&str> = live.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, NODES, "the live nodes");
    for (lease, node) in live.iter().zip(&settings) {
        assert_eq!(
            lease.address,
            node.addr.to_string(),
            "{}'s address",
            lease.name
        );
    }

    // 2. The visitors browse through random nodes; a second or two in, one node dies without
    // a word and the load balancer stops sending to it.
    let (base_tx, base_rx) = watch::channel(nodes.iter().map(Beckon::base).collect::<Vec<_>>());
    let browsing = Arc::new(AtomicBool::new(true));
    let clients = spawn_visitors(VISITORS, seed, &base_rx, &browsing);
    tokio::time::sleep(BEFORE_KILL).await;
    let victim = nodes.remove(VICTIM);
    let killed_at = Instant::now();
    victim.sigkill().await;
    base_tx.send_replace(nodes.iter().map(Beckon::base).collect());
    let survivors = live_nodes_become(&store, NODES.len() - 1).await;
    let lapsed = killed_at.elapsed();
    assert!(
        survivors.iter().all(|n| n.name != NODES[VICTIM]),
        "{survivors:?}"
    );
    // The run goes on on two nodes, then the clients finish (every batch they have not had
    // acknowledged is sent again until it is) and send every batch once more: each is
    // answered as all duplicates, by whichever node now owns its visitor.
    tokio::time::sleep_until((killed_at + AFTER_KILL).into()).await;
    browsing.store(false, Ordering::SeqCst);
    let visitors = finish_and_resend(clients).await;

    // 4. What reached a node for another node's visitor was forwarded to it.
    let mut forwarded = Vec::new();
    for node in &nodes {
        let metrics = scrape(&node.base()).await;
        let count = |name: &str| metric(&metrics, name).unwrap_or(0.0) as u64;
        forwarded.push((
            count(r#"beckon_forwarded_total{how="http"}"#),
            count(r#"beckon_forwarded_total{how="unreachable"}"#),
            count("beckon_stale_writes_total"),
        ));
    }
    for node in nodes {
        node.stop(PATIENCE).await;
    }

    // 3. Every promise of the single node holds over the cluster's log: every acknowledged
    // event in it exactly once, no key twice, the session cap and the cooldown held across
    // the move, profiles counting what was decided, every intervention sent stored.
    let checked = check_promises(&store, &visitors).await;
    let stats = Stats::of(&visitors);

    // 5. The victim's visitors waited for its lease to lapse, then were served again.
    let failover = Failover::of(&visitors, &settings, killed_at);

    println!(
        "{} acknowledged events checked on {} nodes, {} killed {} ms into the run (seed \
         {seed:#x}): {} batches acknowledged, {} sends unanswered and sent again (of the \
         batches, {} stored by an attempt whose answer was lost), {} resends answered as \
         duplicates; {} interventions to {} visitors, {} dismissals, {} distinct orders",
        checked.events,
        NODES.len(),
        NODES[VICTIM],
        BEFORE_KILL.as_millis(),
        stats.acked,
        stats.unanswered,
        stats.stored_unanswered,
        stats.resent,
        checked.exposures,
        checked.exposed_sessions,
        checked.dismissals,
        checked.orders,
    );
    for (node, (http, unreachable, stale)) in nodes_left().zip(&forwarded) {
        println!(
            "{node}: {http} requests forwarded to their visitor's node, {unreachable} to a node \
             that did not answer, {stale} stale writes refused"
        );
    }
    println!(
        "{}'s lease seen lapsed {} ms after its SIGKILL; {} of its {} visitors waited for it",
        NODES[VICTIM],
        lapsed.as_millis(),
        failover.waited,
        failover.owned,
    );
    println!(
        "failover: {} ms (its first visitor served again after {} ms)",
        failover.last.as_millis(),
        failover.first.as_millis(),
    );

    for (node, (http, _, _)) in nodes_left().zip(&forwarded) {
        assert!(*http > 0, "{node} forwarded nothing over HTTP");
    }
    assert!(
        failover.owned > 0,
        "{} owned none of the visitors",
        NODES[VICTIM]
    );
    assert!(
        failover.waited > 0,
        "none of {}'s visitors had a batch unanswered after its death",
        NODES[VICTIM]
    );
    assert!(
        failover.last < FAILOVER_BOUND,
        "a visitor of the dead node was served again only after {:?}",
        failover.last
    );
    // The run tested something: batches were lost to the kill and sent again, guardrails
    // were reached, orders repeated.
    checked.assert_exercised(&stats);
    scratch.drop().await;
}

/// The names of the nodes still running, in order.
fn nodes_left() -> impl Iterator<Item = &'static str> {
    NODES
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != VICTIM)
        .map(|(_, n)| *n)
}

/// What the victim's visitors went through.
struct Failover {
    /// Visitors known before the kill whose owner was the victim.
    owned: usize,
    /// Of those, how many had a batch unanswered after the kill and acknowledged later.
    waited: usize,
    /// From the kill to the first acknowledgement, after it, of a batch sent after it: for the
    /// first of them to be served again, and for the last.
    first: Duration,
    last: Duration,
}

impl Failover {
    fn of(visitors: &[Client], nodes: &[NodeSettings], killed_at: Instant) -> Failover {
        // The owners as every node saw them while the three were live.
        let leases: Vec<NodeLease> = nodes
            .iter()
            .map(|n| NodeLease {
                name: n.name.clone(),
                address: n.addr.to_string(),
                epoch: 0,
            })
            .collect();
        let mut failover = Failover {
            owned: 0,
            waited: 0,
            first: Duration::MAX,
            last: Duration::ZERO,
        };
        for v in visitors {
            let id = v.visitor();
            let owner = beckon_cluster::rendezvous::owner(SITE, &id, &leases).expect("an owner");
            let known = v.attempts.iter().any(|a| a.acked && a.ended < killed_at);
            if owner.name != NODES[VICTIM] || !known {
                continue;
            }
            failover.owned += 1;
            let served = v
                .attempts
                .iter()
                .position(|a| a.acked && a.sent >= killed_at)
                .unwrap_or_else(|| panic!("{id} was never served after the kill"));
            let took = v.attempts[served].ended - killed_at;
            failover.first = failover.first.min(took);
            failover.last = failover.last.max(took);
            if v.attempts[..served]
                .iter()
                .any(|a| !a.acked && a.sent >= killed_at)
            {
                failover.waited += 1;
            }
        }
        failover
    }
}

/// Polls the store's live nodes until there are `n`, within [`PATIENCE`]; them.
async fn live_nodes_become(store: &dyn Membership, n: usize) -> Vec<NodeLease> {
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
async fn scrape(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("the metrics answer");
    assert_eq!(r.status(), 200);
    r.text().await.expect("the metrics' text")
}

/// The value of the series `series` (its name and labels as exposed) in `metrics`, if any.
fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}
