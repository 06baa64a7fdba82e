//! The per-site rate limit shared by the nodes of a cluster, through [`Throttle`] as the
//! server checks it: two nodes of one installation let a site through one allowance between
//! them where each alone would let it through one, sites and installations are counted apart,
//! the throttle's background task keeps the count shared, and a node whose Redis is out of
//! reach limits by its own governor, as a node without a bus does.
//!
//! Needs Redis (`BECKON_TEST_REDIS`, by default `redis://127.0.0.1:6379`). Each test counts in
//! an installation of its own, so that parallel tests and runs never share counters, and runs in
//! one long window (a minute) of a clock of its own, so that none straddles a window's edge.

use std::time::Duration;

use beckon_cluster::Bus;
use beckon_engine::{SiteId, Timestamp};
use beckon_server::clock::Clock;
use beckon_server::error::ApiError;
use beckon_server::limits::Limits;
use beckon_server::shared_limit::{self, SharedSiteLimit};
use beckon_server::throttle::Throttle;
use tokio_util::sync::CancellationToken;

/// The tests' window: far longer than any test takes.
const WINDOW: Duration = Duration::from_secs(60);
/// The longest a test waits for the background sync to do its work.
const PATIENCE: Duration = Duration::from_secs(10);

fn redis_url() -> String {
    std::env::var("BECKON_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// An installation of its own.
fn fresh_namespace() -> String {
    format!("test-{:016x}", rand::random::<u64>())
}

/// A site may send `per_second` batches a second, and as many at once: a node alone may take
/// a whole window's allowance.
fn limits(per_second: u32) -> Limits {
    Limits {
        per_site_per_second: per_second,
        per_site_burst: per_second,
        ..Limits::unthrottled()
    }
}

/// One window of a minute, at the start of a window, shared by the nodes of a test.
fn config(allowance: u32, clock: &Clock) -> shared_limit::Config {
    shared_limit::Config {
        window: WINDOW,
        clock: clock.clone(),
        ..shared_limit::Config::per_second(allowance)
    }
}

fn window_start() -> Clock {
    Clock::tokio(Timestamp::from_secs(60 * 29_000_000))
}

/// A node of `namespace`: its throttle, and its shared count (to sync at will).
async fn node(
    namespace: &str,
    name: &str,
    per_second: u32,
    clock: &Clock,
) -> (Throttle, SharedSiteLimit) {
    let bus = Bus::connect(&redis_url(), namespace, name)
        .await
        .expect("Redis answers at BECKON_TEST_REDIS");
    let shared = SharedSiteLimit::on_bus(&bus, config(per_second, clock));
    let throttle = Throttle::new(&limits(per_second), None).with_shared(shared.clone());
    (throttle, shared)
}

fn site(key: &str) -> SiteId {
    SiteId::parse(key).expect("a site id")
}

/// Offers `n` batches of `site`; returns how many were let through. Every refusal is a 429
/// for the site.
fn offer(throttle: &Throttle, site: &SiteId, n: u32) -> u32 {
    let mut passed = 0;
    for _ in 0..n {
        match throttle.check_site(site) {
            Ok(()) => passed += 1,
            Err(ApiError::Throttled { limit, .. }) => assert_eq!(limit, "for this site"),
            Err(e) => panic!("not a refusal by the site's rate: {e}"),
        }
    }
    passed
}

#[tokio::test]
async fn two_nodes_of_one_installation_let_a_site_through_one_allowance_between_them() {
    let namespace = fresh_namespace();
    let clock = window_start();
    let (a, sync_a) = node(&namespace, "a", 50, &clock).await;
    let (b, sync_b) = node(&namespace, "b", 50, &clock).await;
    // The same two nodes without a bus: each allows the whole rate.
    let (alone_a, alone_b) = (
        Throttle::new(&limits(50), None),
        Throttle::new(&limits(50), None),
    );
    let shop = site("shop");
    let (mut shared, mut unshared) = (0, 0);
    // Between two syncs, each node sees 5 batches.
    for _ in 0..20 {
        shared += offer(&a, &shop, 5);
        sync_a.sync().await.expect("Redis answers");
        shared += offer(&b, &shop, 5);
        sync_b.sync().await.expect("Redis answers");
        unshared += offer(&alone_a, &shop, 5) + offer(&alone_b, &shop, 5);
    }
    assert!(
        (50..=50 + 2 * 5).contains(&shared),
        "{shared} let through: at most the allowance and one interval of each node"
    );
    assert!(unshared >= 2 * 50, "{unshared} let through without a bus");
}

#[tokio::test]
async fn sites_and_installations_are_counted_apart() {
    let (one, other) = (fresh_namespace(), fresh_namespace());
    let clock = window_start();
    let (a, sync_a) = node(&one, "a", 20, &clock).await;
    let (b, sync_b) = node(&one, "b", 20, &clock).await;
    let (c, sync_c) = node(&other, "c", 20, &clock).await;
    let (shop, store) = (site("shop"), site("store"));
    assert_eq!(offer(&a, &shop, 20), 20);
    sync_a.sync().await.expect("Redis answers");
    // B lets the site's first batch through (it knew of nothing yet) and hears of A's at its
    // sync.
    assert_eq!(offer(&b, &shop, 1), 1);
    sync_b.sync().await.expect("Redis answers");
    assert_eq!(
        offer(&b, &shop, 5),
        0,
        "the installation has used the site up"
    );
    assert_eq!(offer(&b, &store, 20), 20, "another site is counted apart");
    assert_eq!(offer(&c, &shop, 10), 10);
    sync_c.sync().await.expect("Redis answers");
    assert_eq!(
        offer(&c, &shop, 10),
        10,
        "another installation is counted apart"
    );
}

#[tokio::test]
async fn the_throttles_background_task_keeps_the_count_shared() {
    let namespace = fresh_namespace();
    let clock = window_start();
    let (a, _) = node(&namespace, "a", 20, &clock).await;
    let (b, sync_b) = node(&namespace, "b", 20, &clock).await;
    let shutdown = CancellationToken::new();
    let tasks = [
        tokio::spawn(a.clone().sweep(shutdown.clone())),
        tokio::spawn(b.clone().sweep(shutdown.clone())),
    ];
    let shop = site("shop");
    assert_eq!(offer(&a, &shop, 20), 20);
    // B lets nothing through itself: it can refuse the site only by hearing of A's batches,
    // which takes A's task sending them and B's reading them back.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sync_b.refuses(&shop).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B should hear of A's batches"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(offer(&b, &shop, 1), 0);
    shutdown.cancel();
    for task in tasks {
        task.await.expect("the task ends at shutdown");
    }
}

#[tokio::test]
async fn a_throttle_shared_on_a_bus_counts_under_its_installation() {
    let namespace = fresh_namespace();
    let bus = Bus::connect(&redis_url(), &namespace, "a")
        .await
        .expect("Redis answers at BECKON_TEST_REDIS");
    let throttle = Throttle::new(&limits(20), None).shared(&bus);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(throttle.clone().sweep(shutdown.clone()));
    assert_eq!(offer(&throttle, &site("shop"), 3), 3);
    let mut conn = bus.connection();
    let pattern = bus.key(&format!("{}:shop:*", shared_limit::KEY));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .expect("Redis answers");
        if let Some(key) = keys.first() {
            // The three may straddle a window's edge; none is counted twice.
            let total: Option<u64> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("Redis answers");
            assert!(total.unwrap_or(0) <= 3, "{total:?} counted in {key}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the throttle's task should count the site in {pattern}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.expect("the task ends at shutdown");
}

#[tokio::test]
async fn a_node_whose_redis_is_out_of_reach_limits_by_its_own_governor() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let conn = redis::Client::open(format!("redis://127.0.0.1:{closed}"))
        .expect("a Redis URL")
        .get_connection_manager_lazy(redis::aio::ConnectionManagerConfig::new())
        .expect("a lazy connection");
    // Its own governor: 10 at once, then one a second (so that the time a failing sync takes
    // hardly refills it). Its shared allowance, 5, is below that: only its own applies.
    let limits = Limits {
        per_site_per_second: 1,
        per_site_burst: 10,
        ..Limits::unthrottled()
    };
    let clock = window_start();
    let shared = SharedSiteLimit::new(conn, "beckon:gone:site-limit".to_owned(), config(5, &clock));
    let gone = Throttle::new(&limits, None).with_shared(shared.clone());
    let shop = site("shop");
    assert_eq!(offer(&gone, &shop, 1), 1);
    assert!(shared.sync().await.is_err(), "nothing answers");
    assert!(!shared.answering());
    let passed = offer(&gone, &shop, 20);
    assert!(
        (9..20).contains(&passed),
        "{passed} let through: by its own governor (the 9 left of 10 at once), not the shared 5"
    );
    assert!(shared.sync().await.is_err(), "still nothing answers");
    assert!(
        offer(&gone, &shop, 20) < 20,
        "its own governor still limits it"
    );
}
