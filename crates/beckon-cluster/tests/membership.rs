//! Clusters of nodes on one PostgreSQL schema: they agree on who is live and who owns whom,
//! and a node that leaves, crashes, loses its lease or loses the database gives up its visitors.

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use beckon_cluster::{Cluster, ClusterConfig, NodeLease, View};
use beckon_store::StoreError;
use beckon_store::cluster::Membership;
use beckon_store_postgres::PgStore;
use beckon_store_postgres::testing::Scratch;
use tokio::time::{Instant, sleep};

const LEASE: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_millis(200);

/// How long a test waits for what should happen within a few heartbeats (or one lease) before
/// it fails: generous, for a loaded machine; the tests poll and never wait it out when right.
const PATIENCE: Duration = Duration::from_secs(15);

/// A lease no test outlives, where lapsing must not explain what is seen.
const LONG_LEASE: Duration = Duration::from_secs(60);

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "still not so after {PATIENCE:?}: {what}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

fn config(name: &str, lease: Duration) -> ClusterConfig {
    ClusterConfig {
        lease,
        heartbeat: HEARTBEAT,
        ..ClusterConfig::new(name, format!("{name}.internal:7000"))
    }
}

async fn node(scratch: &Scratch, name: &str, lease: Duration) -> Cluster {
    let store: Arc<dyn Membership> = Arc::new(scratch.store().await);
    Cluster::start(store, config(name, lease))
        .await
        .expect("start a node")
}

async fn three(scratch: &Scratch, lease: Duration) -> [Cluster; 3] {
    let nodes = [
        node(scratch, "node-a", lease).await,
        node(scratch, "node-b", lease).await,
        node(scratch, "node-c", lease).await,
    ];
    eventually("every node sees all three", || {
        nodes.iter().all(|n| n.view().nodes.len() == 3)
    })
    .await;
    nodes
}

fn names(view: &View) -> Vec<&str> {
    view.nodes.iter().map(|n| n.name.as_str()).collect()
}

/// A thousand visitors over two sites, as (site, visitor).
fn visitors() -> Vec<(String, String)> {
    (0..1000)
        .map(|i| (format!("site-{}", i % 2), format!("v_{i:04}")))
        .collect()
}

/// Each visitor's owner by name, as `view` has it.
fn owners(view: &View) -> Vec<String> {
    visitors()
        .iter()
        .map(|(site, visitor)| view.owner(site, visitor).expect("an owner").name.clone())
        .collect()
}

/// Asserts that the nodes agree on every owner, and that exactly the owner calls it its own;
/// returns how many visitors each node owns.
fn assert_agreed(nodes: &[&Cluster]) -> Vec<usize> {
    let views: Vec<Arc<View>> = nodes.iter().map(|n| n.view()).collect();
    for view in &views {
        assert_eq!(view.nodes, views[0].nodes, "the nodes' views differ");
    }
    let mut owned = vec![0; nodes.len()];
    for (site, visitor) in visitors() {
        let owner = views[0].owner(&site, &visitor).expect("an owner");
        let mine: Vec<usize> = (0..views.len())
            .filter(|&i| views[i].is_mine(&site, &visitor))
            .collect();
        assert_eq!(mine.len(), 1, "{site}/{visitor} is claimed by {mine:?}");
        assert_eq!(views[mine[0]].me, *owner);
        owned[mine[0]] += 1;
    }
    owned
}

/// Whether the database still has a row of `name`'s lease, live or lapsed.
async fn has_row(store: &PgStore, name: &str) -> bool {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes WHERE name = $1")
        .bind(name)
        .fetch_one(store.pool())
        .await
        .expect("count the node's rows");
    rows == 1
}

#[tokio::test]
async fn three_nodes_converge_and_agree_on_every_owner() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    let nodes = three(&scratch, LEASE).await;
    assert_eq!(names(&nodes[0].view()), ["node-a", "node-b", "node-c"]);
    for n in &nodes {
        assert!(n.healthy());
        assert!(n.view().nodes.contains(&n.view().me));
    }
    let owned = assert_agreed(&nodes.each_ref().map(|n| n));
    // A third each is 333; rendezvous hashing is far more even than this bound.
    assert!(owned.iter().all(|&n| n > 250), "uneven shares: {owned:?}");

    for n in nodes {
        n.leave().await.expect("leave");
    }
    assert_eq!(store.live_nodes().await.unwrap(), vec![]);
    scratch.drop().await;
}

#[tokio::test]
async fn a_node_that_leaves_hands_its_visitors_to_the_others() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    // With leases this long, only the departure itself can take node-c out of the views.
    let [a, b, c] = three(&scratch, LONG_LEASE).await;
    let before = owners(&a.view());
    let c_views = c.watch();

    c.leave().await.expect("leave");
    let last = c_views.borrow().clone();
    assert!(
        visitors().iter().all(|(s, v)| !last.is_mine(s, v)),
        "a node that left still claims visitors: {last:?}"
    );
    assert!(!has_row(&store, "node-c").await, "the lease was not ended");

    eventually("the others see two nodes", || {
        [&a, &b]
            .iter()
            .all(|n| names(&n.view()) == ["node-a", "node-b"])
    })
    .await;
    assert_agreed(&[&a, &b]);
    let after = owners(&a.view());
    let mut moved = 0;
    for (old, new) in before.iter().zip(&after) {
        if old == "node-c" {
            moved += 1;
        } else {
            assert_eq!(old, new, "a visitor of a node that stayed moved");
        }
    }
    assert!(moved > 250, "node-c had only {moved} visitors");

    a.leave().await.expect("leave");
    b.leave().await.expect("leave");
    scratch.drop().await;
}

#[tokio::test]
async fn a_crashed_node_disappears_from_the_views_when_its_lease_lapses() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    let [a, b, c] = three(&scratch, LEASE).await;
    let before = owners(&a.view());

    drop(c);
    eventually("the others see two nodes", || {
        [&a, &b]
            .iter()
            .all(|n| names(&n.view()) == ["node-a", "node-b"])
    })
    .await;
    // Its row is still there: it lapsed, nobody ended it.
    assert!(has_row(&store, "node-c").await);
    assert_agreed(&[&a, &b]);
    for (old, new) in before.iter().zip(owners(&a.view())) {
        if old != "node-c" {
            assert_eq!(*old, new, "a visitor of a node that stayed moved");
        }
    }

    a.leave().await.expect("leave");
    b.leave().await.expect("leave");
    scratch.drop().await;
}

/// What [`Flaky`] does with each call.
const UP: u8 = 0;
const REFUSING_JOINS: u8 = 1;
const HUNG: u8 = 2;

/// The store, as seen through a network that can fail: every call hangs while `HUNG`, and
/// joins fail while `REFUSING_JOINS`.
struct Flaky {
    store: PgStore,
    mode: AtomicU8,
}

impl Flaky {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    async fn gate(&self) {
        if self.mode.load(Ordering::SeqCst) == HUNG {
            pending::<()>().await;
        }
    }
}

#[async_trait]
impl Membership for Flaky {
    async fn join(
        &self,
        name: &str,
        address: &str,
        lease: Duration,
    ) -> beckon_store::Result<NodeLease> {
        self.gate().await;
        if self.mode.load(Ordering::SeqCst) == REFUSING_JOINS {
            return Err(StoreError::Database("connection refused".to_owned()));
        }
        self.store.join(name, address, lease).await
    }

    async fn renew(&self, epoch: u64, lease: Duration) -> beckon_store::Result<bool> {
        self.gate().await;
        self.store.renew(epoch, lease).await
    }

    async fn live_nodes(&self) -> beckon_store::Result<Vec<NodeLease>> {
        self.gate().await;
        self.store.live_nodes().await
    }

    async fn leave(&self, epoch: u64) -> beckon_store::Result<()> {
        self.gate().await;
        self.store.leave(epoch).await
    }
}

async fn flaky(scratch: &Scratch) -> Arc<Flaky> {
    Arc::new(Flaky {
        store: scratch.store().await,
        mode: AtomicU8::new(UP),
    })
}

fn claims_nothing(view: &View) -> bool {
    view.nodes.iter().all(|n| n.name != view.me.name)
        && visitors().iter().all(|(s, v)| !view.is_mine(s, v))
}

#[tokio::test]
async fn a_node_whose_lease_lapsed_owns_nothing_until_it_rejoins_under_a_new_epoch() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    let link = flaky(&scratch).await;
    let a = Cluster::start(link.clone(), config("node-a", LEASE))
        .await
        .expect("start a node");
    let first = a.view();
    assert!(visitors().iter().all(|(s, v)| first.is_mine(s, v)));

    // The lease ends behind the node's back, as after a pause longer than the lease; and it
    // cannot join again for now.
    link.set(REFUSING_JOINS);
    store.leave(first.me.epoch).await.unwrap();
    eventually("the node owns nothing", || claims_nothing(&a.view())).await;
    assert!(!a.healthy());
    // It keeps owning nothing while it cannot rejoin.
    sleep(3 * HEARTBEAT).await;
    assert!(claims_nothing(&a.view()));
    assert!(!a.healthy());

    link.set(UP);
    eventually("the node is back under a new epoch", || {
        let view = a.view();
        view.me.epoch > first.me.epoch && view.nodes == vec![view.me.clone()]
    })
    .await;
    assert!(a.healthy());
    let back = a.view();
    assert!(visitors().iter().all(|(s, v)| back.is_mine(s, v)));
    assert!(
        back.changes >= first.changes + 2,
        "{back:?} after {first:?}"
    );

    a.leave().await.expect("leave");
    scratch.drop().await;
}

#[tokio::test]
async fn a_node_that_loses_the_database_stops_claiming_before_the_others_take_over() {
    let scratch = Scratch::new().await;
    scratch.migrated().await;
    let link = flaky(&scratch).await;
    let a = Cluster::start(link.clone(), config("node-a", LEASE))
        .await
        .expect("start a node");
    let b = node(&scratch, "node-b", LEASE).await;
    eventually("both see two nodes", || {
        [&a, &b].iter().all(|n| n.view().nodes.len() == 2)
    })
    .await;
    let first = a.view();

    link.set(HUNG);
    eventually("node-b sees node-a gone", || names(&b.view()) == ["node-b"]).await;
    // node-a stopped claiming at its own reckoning of the lease, which ends no later than the
    // database's: by the time node-b takes over, node-a claims nothing.
    assert!(claims_nothing(&a.view()), "{:?}", a.view());
    assert!(!a.healthy());
    assert!(visitors().iter().all(|(s, v)| b.view().is_mine(s, v)));

    link.set(UP);
    eventually("node-a is back under a new epoch", || {
        let view = a.view();
        view.me.epoch > first.me.epoch && view.nodes.contains(&view.me)
    })
    .await;
    assert!(a.healthy());
    eventually("both see two nodes again", || {
        [&a, &b].iter().all(|n| n.view().nodes.len() == 2)
    })
    .await;
    assert_agreed(&[&a, &b]);

    a.leave().await.expect("leave");
    b.leave().await.expect("leave");
    scratch.drop().await;
}

#[tokio::test]
async fn a_name_held_by_a_live_node_or_a_heartbeat_as_long_as_the_lease_is_refused() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    let a = node(&scratch, "node-a", LEASE).await;
    let twin: Arc<dyn Membership> = Arc::new(scratch.store().await);
    let refused = Cluster::start(twin.clone(), config("node-a", LEASE)).await;
    assert!(refused.is_err(), "two live nodes named node-a");

    let slow = ClusterConfig {
        heartbeat: LEASE,
        ..config("node-b", LEASE)
    };
    assert!(Cluster::start(twin, slow).await.is_err());
    assert!(!has_row(&store, "node-b").await, "a refused start joined");
    assert_eq!(names(&a.view()), ["node-a"]);

    a.leave().await.expect("leave");
    scratch.drop().await;
}
