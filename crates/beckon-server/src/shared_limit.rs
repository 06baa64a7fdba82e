//! The per-site rate limit shared by the nodes of a cluster, through Redis.
//!
//! Each node keeps its own governor limit per site ([`throttle`](crate::throttle)); alone, each
//! of N nodes would allow a site the whole rate, and the cluster N times it. This limit counts
//! a site's batches for the whole cluster, in fixed windows (one second) numbered from the Unix
//! epoch, so that every node names the same window without asking anyone, and it does so
//! without a round trip to Redis per batch:
//!
//! - a node counts, per site, the batches it let through that Redis has not been told of;
//! - every [`SYNC_EVERY`] one task adds them to the window's key (`INCRBY` and `EXPIRE`, in one
//!   `MULTI`, one pipeline for every site the node saw in the window) and reads back the
//!   cluster's total for the window; a node that has let a site through a tenth of its
//!   allowance since its last sync syncs at once rather than at the next tick;
//! - a site is refused on this node, until the window ends, once the cluster's total at the
//!   last sync plus what this node let through since has reached the window's allowance
//!   (`Retry-After`: the time left in the window, at least a second).
//!
//! **The allowance** of a window is `per_site_per_second`, without the burst. A fixed window
//! already lets a site spend its whole second at once, so a burst up to the rate is honoured;
//! adding the burst to every window would let the cluster sustain the rate *plus* the burst,
//! every second (three times the rate with the defaults). The burst still shapes each node's
//! own share, through its local governor, which every batch must also pass.
//!
//! **Overshoot.** A node counts its own batches at once, but hears of the others' only at its
//! syncs. Once the cluster's true total has reached the allowance, each node may still let
//! through what reaches it until its next sync's answer: at most one sync interval of its
//! traffic for the site, and never more than a tenth of the allowance (it syncs early past
//! that), plus what reaches it while that sync is under way (a round trip). So a window lets
//! through at most the allowance plus, for every node, about one sync interval (~100 ms) of
//! that node's traffic: with two nodes and the defaults, at most 5 000 + 2 × 500 (and two round
//! trips' worth), however bursty the traffic. While Redis answers, no node passes more than
//! the allowance in one window by itself.
//!
//! **Near a window's edges.** What a node let through in a window but had not yet sent when the
//! window ended is dropped, not charged to the next window: the next window starts afresh on
//! every node, whichever node synced last. The clients refused during a window are all told to
//! come back at its end, so each window tends to open with a rush; the early sync is what keeps
//! that rush's overshoot to a tenth of the allowance per node rather than a whole interval's
//! traffic. Like any fixed window, two windows' allowances can be spent on either side of one
//! edge (up to twice the rate within a short span); each node's governor smooths its own share
//! of that. Windows follow each node's wall clock: a node whose clock is off by δ counts δ of
//! its traffic in the neighbouring window (NTP keeps δ far below the sync interval).
//!
//! **When Redis does not answer** (a sync fails or takes longer than [`SYNC_TIMEOUT`]), the node
//! limits each site by its local governor alone: the shared count refuses nothing, no request
//! ever waits on Redis (only the sync task talks to it), and the node logs it once. The batches
//! it lets through meanwhile are still counted, and sent if Redis answers again within their
//! window; the limit is shared again from the first sync that succeeds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beckon_cluster::Bus;
use beckon_engine::{SiteId, Timestamp};
use redis::aio::ConnectionManager;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// How often a node adds its counts to Redis and reads the cluster's totals back.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);
/// A sync that takes longer than this has failed: the node limits by its own count until
/// Redis answers in time (it normally answers within a millisecond).
pub const SYNC_TIMEOUT: Duration = Duration::from_millis(500);
/// The name of the counters under the installation's namespace
/// (`beckon:{namespace}:site-limit:{site}:{window}`).
pub const KEY: &str = "site-limit";
/// A node that has let a site through this share of its allowance since its last sync (one
/// part in this many) syncs at once, which bounds the overshoot of a rush.
const EARLY_SYNC_SHARE: u64 = 10;
/// The shortest `Retry-After`: a shorter wait rounds to 0 seconds, which invites a client to
/// come straight back.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How the shared limit counts.
#[derive(Clone, Debug)]
pub struct Config {
    /// The batches a site may send in one window, across the cluster (0 would refuse every
    /// batch while Redis answers; a per-site limit that is off has no shared limit at all).
    pub allowance: u64,
    /// The window's length (a second in service; tests lengthen it so that a test never
    /// straddles an edge).
    pub window: Duration,
    /// How often [`SharedSiteLimit::run`] syncs.
    pub sync_every: Duration,
    /// Where now comes from: every node numbers windows from the same epoch.
    pub clock: Clock,
}

impl Config {
    /// `per_second` batches per one-second window, synced every [`SYNC_EVERY`], on the system
    /// clock.
    pub fn per_second(per_second: u32) -> Config {
        Config {
            allowance: u64::from(per_second),
            window: Duration::from_secs(1),
            sync_every: SYNC_EVERY,
            clock: Clock::System,
        }
    }
}

/// Where the counters are: a connection of one's own, or the bus's (which it replaces when
/// one stops answering).
#[derive(Clone)]
enum Redis {
    Fixed(ConnectionManager),
    Bus(Bus),
}

impl Redis {
    fn get(&self) -> ConnectionManager {
        match self {
            Redis::Fixed(conn) => conn.clone(),
            Redis::Bus(bus) => bus.connection(),
        }
    }
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Redis answered with an error, or the connection failed.
    #[error("the sync failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within [`SYNC_TIMEOUT`].
    #[error("Redis did not answer within {0:?}")]
    TimedOut(Duration),
    /// Redis answered with fewer or more totals than sites were sent.
    #[error("Redis answered {got} totals for {sent} sites")]
    Unexpected {
        /// Totals received.
        got: usize,
        /// Sites sent.
        sent: usize,
    },
}

/// The cluster's count of each site's batches, kept in Redis. Cheap to clone: clones share
/// their counts.
#[derive(Clone)]
pub struct SharedSiteLimit {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharedSiteLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSiteLimit")
            .field("prefix", &self.inner.prefix)
            .field("config", &self.inner.config)
            .field("answering", &self.inner.answering.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SharedSiteLimit {
    /// A limit counted on `conn`, under the keys `{prefix}:{site}:{window}`.
    pub fn new(conn: ConnectionManager, prefix: String, config: Config) -> SharedSiteLimit {
        SharedSiteLimit::on(Redis::Fixed(conn), prefix, config)
    }

    fn on(conn: Redis, prefix: String, config: Config) -> SharedSiteLimit {
        let early = (config.allowance / EARLY_SYNC_SHARE).max(1);
        SharedSiteLimit {
            inner: Arc::new(Inner {
                conn,
                prefix,
                window_ms: (config.window.as_millis() as u64).max(1),
                early,
                config,
                counts: Mutex::new(HashMap::new()),
                sync_now: Notify::new(),
                answering: AtomicBool::new(true),
            }),
        }
    }

    /// A limit counted in the bus's Redis, under the installation's namespace ([`KEY`]).
    pub fn on_bus(bus: &Bus, config: Config) -> SharedSiteLimit {
        SharedSiteLimit::on(Redis::Bus(bus.clone()), bus.key(KEY), config)
    }

    /// How long `site` must wait, when the cluster has used up its allowance for this window
    /// (as this node knows it); `None` when it may go on, or when Redis does not answer.
    pub fn refuses(&self, site: &SiteId) -> Option<Duration> {
        self.refuses_at(site, self.inner.config.clock.now())
    }

    /// Counts one batch of `site` that this node let through.
    pub fn passed(&self, site: &SiteId) {
        self.passed_at(site, self.inner.config.clock.now());
    }

    /// Whether the last sync succeeded (the limit is shared; otherwise each node counts alone).
    pub fn answering(&self) -> bool {
        self.inner.answering.load(Ordering::Relaxed)
    }

    /// Sends what this node let through since its last sync, for each site it saw in this
    /// window, and reads back the cluster's totals. [`SharedSiteLimit::run`] calls it; a test
    /// may call it to sync at a moment of its choosing.
    pub async fn sync(&self) -> Result<(), SyncError> {
        self.sync_at(self.inner.config.clock.now()).await
    }

    /// Syncs every [`Config::sync_every`], and at once when a site's count grows fast, until
    /// `shutdown` is cancelled. Requests never wait on it.
    pub async fn run(self, shutdown: CancellationToken) {
        let period = self.inner.config.sync_every.max(Duration::from_millis(1));
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = self.inner.sync_now.notified() => {}
                () = shutdown.cancelled() => return,
            }
            tokio::select! {
                // A failure is logged (once) by the sync itself.
                _ = self.sync() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

struct Inner {
    conn: Redis,
    prefix: String,
    config: Config,
    window_ms: u64,
    /// The unsent count at which a site is synced at once.
    early: u64,
    /// A std mutex, not an async one: it is held for a map lookup and a few additions, never
    /// across an await, and taken on every batch.
    counts: Mutex<HashMap<SiteId, Count>>,
    sync_now: Notify,
    /// Whether the last sync succeeded.
    answering: AtomicBool,
}

/// What one node knows of a site's use of one window.
#[derive(Debug, Default)]
struct Count {
    /// The window the other fields are about.
    window: u64,
    /// The cluster's total at the last sync (this node's batches sent so far included).
    known: u64,
    /// This node's batches in a sync under way.
    sending: u64,
    /// This node's batches let through since the last sync was sent.
    unsent: u64,
}

impl Count {
    /// This count, started afresh if it was about another window.
    fn at(&mut self, window: u64) -> &mut Count {
        if self.window != window {
            *self = Count {
                window,
                ..Count::default()
            };
        }
        self
    }

    /// The window's use as this node knows it.
    fn used(&self) -> u64 {
        self.known + self.sending + self.unsent
    }
}

/// One site's part of a sync.
struct Sent {
    site: SiteId,
    window: u64,
    batches: u64,
}

impl SharedSiteLimit {
    fn refuses_at(&self, site: &SiteId, now: Timestamp) -> Option<Duration> {
        if !self.answering() {
            return None;
        }
        let window = self.window_of(now);
        let mut counts = self.counts();
        let used = count(&mut counts, site).at(window).used();
        drop(counts);
        (used >= self.inner.config.allowance).then(|| self.retry_after(now, window))
    }

    fn passed_at(&self, site: &SiteId, now: Timestamp) {
        let window = self.window_of(now);
        let mut counts = self.counts();
        let count = count(&mut counts, site).at(window);
        count.unsent += 1;
        let early = count.unsent == self.inner.early;
        drop(counts);
        if early {
            self.inner.sync_now.notify_one();
        }
    }

    async fn sync_at(&self, now: Timestamp) -> Result<(), SyncError> {
        let sent = self.take_unsent(self.window_of(now));
        if sent.is_empty() {
            return Ok(());
        }
        // Twice the window: the key outlives its window by as much again, for the nodes whose
        // clocks are a little behind.
        let ttl = (2 * self.inner.window_ms).div_ceil(1000).max(2);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for s in &sent {
            let key = format!("{}:{}:{}", self.inner.prefix, s.site, s.window);
            pipe.cmd("INCRBY").arg(&key).arg(s.batches);
            pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
        }
        let mut conn = self.inner.conn.get();
        let answer =
            tokio::time::timeout(SYNC_TIMEOUT, pipe.query_async::<Vec<u64>>(&mut conn)).await;
        let result = match answer {
            Ok(Ok(totals)) if totals.len() == sent.len() => Ok(totals),
            Ok(Ok(totals)) => Err(SyncError::Unexpected {
                got: totals.len(),
                sent: sent.len(),
            }),
            Ok(Err(e)) => Err(SyncError::Redis(e)),
            Err(_) => Err(SyncError::TimedOut(SYNC_TIMEOUT)),
        };
        self.settle(&sent, result.as_deref().ok());
        match &result {
            Ok(_) => {
                if !self.inner.answering.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis answers again: the per-site rate limit is shared again");
                }
            }
            Err(e) => {
                if self.inner.answering.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        "Redis does not answer: each site is limited by this node's own limit until it does"
                    );
                }
            }
        }
        result.map(|_| ())
    }

    /// Moves each site's unsent batches of `window` to `sending`, for a sync, and forgets the
    /// sites not seen in this window. A site already used up is left out: nothing can change
    /// that before the window ends.
    fn take_unsent(&self, window: u64) -> Vec<Sent> {
        let allowance = self.inner.config.allowance;
        let mut counts = self.counts();
        counts.retain(|_, c| c.window >= window);
        counts
            .iter_mut()
            .filter(|(_, c)| c.window == window && c.known < allowance)
            .map(|(site, c)| {
                let batches = std::mem::take(&mut c.unsent);
                c.sending += batches;
                Sent {
                    site: site.clone(),
                    window,
                    batches,
                }
            })
            .collect()
    }

    /// Takes a sync's answer in: the cluster's totals, or, when it failed, the batches back
    /// into `unsent`, to be sent with the next sync (a sync that timed out but did land is so
    /// counted twice, which errs on the side of the limit). Counts that moved on to a later
    /// window meanwhile are left alone.
    fn settle(&self, sent: &[Sent], totals: Option<&[u64]>) {
        let mut counts = self.counts();
        for (i, s) in sent.iter().enumerate() {
            let Some(c) = counts.get_mut(&s.site).filter(|c| c.window == s.window) else {
                continue;
            };
            c.sending = c.sending.saturating_sub(s.batches);
            match totals {
                // Totals only grow within a window; a later answer may already be in.
                Some(totals) => c.known = c.known.max(totals[i]),
                None => c.unsent += s.batches,
            }
        }
    }

    fn window_of(&self, now: Timestamp) -> u64 {
        now.as_millis().max(0) as u64 / self.inner.window_ms
    }

    /// The time left in `window`, at least [`MIN_RETRY_AFTER`].
    fn retry_after(&self, now: Timestamp, window: u64) -> Duration {
        let end = (window + 1) * self.inner.window_ms;
        let left = end.saturating_sub(now.as_millis().max(0) as u64);
        Duration::from_millis(left).max(MIN_RETRY_AFTER)
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<SiteId, Count>> {
        self.inner.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `site`'s count, made when it has none (a clone of the id only then).
fn count<'a>(counts: &'a mut HashMap<SiteId, Count>, site: &SiteId) -> &'a mut Count {
    if !counts.contains_key(site) {
        counts.insert(site.clone(), Count::default());
    }
    counts.get_mut(site).expect("just inserted")
}

#[cfg(test)]
mod tests {
    //! Against a real Redis (`BECKON_TEST_REDIS`, by default `redis://127.0.0.1:6379`), with
    //! the instants given explicitly: each test names its windows, so none straddles an edge by
    //! accident. Each test counts under a namespace of its own.

    use super::*;

    /// A window long enough that the counters outlive any test (keys live two windows).
    const WINDOW: Duration = Duration::from_secs(60);
    /// The window the tests start in.
    const W: u64 = 29_000_000;
    /// The longest a test waits for Redis to be reachable again.
    const PATIENCE: Duration = Duration::from_secs(10);

    fn redis_url() -> String {
        std::env::var("BECKON_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    /// A key prefix in a namespace of its own.
    fn fresh_prefix() -> String {
        format!("beckon:test-{:016x}:{KEY}", rand::random::<u64>())
    }

    async fn connect(url: &str) -> ConnectionManager {
        redis::Client::open(url)
            .expect("a Redis URL")
            .get_connection_manager()
            .await
            .expect("Redis answers at BECKON_TEST_REDIS")
    }

    fn node(conn: ConnectionManager, prefix: &str, allowance: u64) -> SharedSiteLimit {
        let config = Config {
            allowance,
            window: WINDOW,
            sync_every: SYNC_EVERY,
            clock: Clock::System,
        };
        SharedSiteLimit::new(conn, prefix.to_owned(), config)
    }

    fn site(key: &str) -> SiteId {
        SiteId::parse(key).expect("a site id")
    }

    /// `ms` milliseconds into window `w`.
    fn at(w: u64, ms: u64) -> Timestamp {
        Timestamp::from_millis((w * WINDOW.as_millis() as u64 + ms) as i64)
    }

    /// Offers `n` batches of `site` at `now`; returns how many were let through.
    fn offer(node: &SharedSiteLimit, site: &SiteId, now: Timestamp, n: u64) -> u64 {
        let mut passed = 0;
        for _ in 0..n {
            if node.refuses_at(site, now).is_none() {
                node.passed_at(site, now);
                passed += 1;
            }
        }
        passed
    }

    #[tokio::test]
    async fn two_nodes_together_let_a_site_through_one_allowance_per_window() {
        let url = redis_url();
        let prefix = fresh_prefix();
        let a = node(connect(&url).await, &prefix, 100);
        let b = node(connect(&url).await, &prefix, 100);
        let shop = site("shop");
        // Each node alone would let 100 through; between two syncs each sees 10 batches.
        let (mut by_a, mut by_b) = (0, 0);
        for round in 0..30 {
            let now = at(W, 100 * round);
            by_a += offer(&a, &shop, now, 10);
            a.sync_at(now).await.expect("Redis answers");
            by_b += offer(&b, &shop, now, 10);
            b.sync_at(now).await.expect("Redis answers");
        }
        let total = by_a + by_b;
        assert!(
            (100..=100 + 2 * 10).contains(&total),
            "{by_a} + {by_b} let through: at most the allowance plus one interval of each node"
        );
        assert!(by_a > 0 && by_b > 0, "{by_a} and {by_b}: both nodes served");
        // The next window starts afresh, on both nodes.
        let next = at(W + 1, 0);
        assert_eq!(offer(&a, &shop, next, 10), 10);
        assert_eq!(offer(&b, &shop, next, 10), 10);
    }

    #[tokio::test]
    async fn sites_and_installations_are_counted_apart() {
        let url = redis_url();
        let (one, other) = (fresh_prefix(), fresh_prefix());
        let a = node(connect(&url).await, &one, 20);
        let b = node(connect(&url).await, &one, 20);
        let c = node(connect(&url).await, &other, 20);
        let (shop, store) = (site("shop"), site("store"));
        let now = at(W, 0);
        assert_eq!(
            offer(&a, &shop, now, 30),
            20,
            "a node alone stops at the allowance"
        );
        a.sync_at(now).await.expect("Redis answers");
        // B has seen the site once (and let it through: it knew of nothing yet).
        assert_eq!(offer(&b, &shop, now, 1), 1);
        b.sync_at(now).await.expect("Redis answers");
        assert_eq!(
            offer(&b, &shop, now, 5),
            0,
            "the installation used the site up"
        );
        assert_eq!(
            offer(&b, &store, now, 20),
            20,
            "another site is counted apart"
        );
        assert_eq!(offer(&c, &shop, now, 1), 1);
        c.sync_at(now).await.expect("Redis answers");
        assert_eq!(
            offer(&c, &shop, now, 30),
            19,
            "another installation is counted apart"
        );
    }

    #[tokio::test]
    async fn a_used_up_site_waits_for_the_end_of_the_window_and_the_next_starts_afresh() {
        let url = redis_url();
        let prefix = fresh_prefix();
        let a = node(connect(&url).await, &prefix, 10);
        let b = node(connect(&url).await, &prefix, 10);
        let shop = site("shop");
        assert_eq!(offer(&a, &shop, at(W, 0), 10), 10);
        a.sync_at(at(W, 0)).await.expect("Redis answers");
        assert_eq!(offer(&b, &shop, at(W, 0), 1), 1);
        b.sync_at(at(W, 0)).await.expect("Redis answers");
        // Refused until the window ends, and told so; never less than a second.
        assert_eq!(
            b.refuses_at(&shop, at(W, 20_000)),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            b.refuses_at(&shop, at(W, 59_900)),
            Some(Duration::from_secs(1))
        );
        // Late in the window C lets through what it sends only after the edge: those batches
        // are not charged to the next window.
        let c = node(connect(&url).await, &prefix, 10);
        assert_eq!(offer(&c, &shop, at(W, 59_990), 5), 5);
        c.sync_at(at(W + 1, 10)).await.expect("Redis answers");
        assert_eq!(offer(&a, &shop, at(W + 1, 10), 10), 10);
        a.sync_at(at(W + 1, 10)).await.expect("Redis answers");
        assert_eq!(total(&url, &prefix, &shop, W + 1).await, 10);
        assert_eq!(total(&url, &prefix, &shop, W).await, 11);
    }

    #[tokio::test]
    async fn a_node_whose_redis_is_gone_counts_alone_and_shares_again_once_it_is_back() {
        let url = redis_url();
        let prefix = fresh_prefix();
        let proxy = beckon_cluster::testing::CutProxy::start(&url).await;
        let a = node(connect(&proxy.url()).await, &prefix, 10);
        let b = node(connect(&url).await, &prefix, 10);
        let shop = site("shop");
        let now = at(W, 0);
        assert_eq!(offer(&b, &shop, now, 10), 10);
        b.sync_at(now).await.expect("Redis answers");
        assert_eq!(offer(&a, &shop, now, 1), 1);
        a.sync_at(now)
            .await
            .expect("Redis answers through the proxy");
        assert_eq!(offer(&a, &shop, now, 1), 0, "the limit is shared");

        proxy.cut().await;
        let now = at(W + 1, 0);
        assert_eq!(offer(&a, &shop, now, 3), 3);
        assert!(a.sync_at(now).await.is_err(), "Redis is out of reach");
        assert!(!a.answering());
        assert_eq!(offer(&b, &shop, now, 10), 10);
        b.sync_at(now).await.expect("Redis answers");
        // The cluster used the window up, but A cannot know it: it refuses nothing by the shared
        // count (its own governor still limits it), even past the allowance by itself.
        assert_eq!(offer(&a, &shop, now, 20), 20);

        proxy.restore();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while a.sync_at(now).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "Redis is back, the sync should be"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(a.answering());
        assert_eq!(
            total(&url, &prefix, &shop, W + 1).await,
            10 + 23,
            "what A let through while Redis was gone is counted"
        );
        assert_eq!(offer(&a, &shop, now, 1), 0, "the limit is shared again");
    }

    #[tokio::test]
    async fn a_node_that_lets_a_tenth_of_the_allowance_through_syncs_at_once() {
        let a = node(connect(&redis_url()).await, &fresh_prefix(), 100);
        let shop = site("shop");
        assert_eq!(offer(&a, &shop, at(W, 0), 9), 9);
        let early = a.inner.sync_now.notified();
        tokio::pin!(early);
        assert!(
            futures::poll!(early.as_mut()).is_pending(),
            "nine is not a tenth"
        );
        assert_eq!(offer(&a, &shop, at(W, 0), 1), 1);
        early.await;
    }

    /// The cluster's total for `site` in window `w`, as Redis holds it.
    async fn total(url: &str, prefix: &str, site: &SiteId, w: u64) -> u64 {
        let mut conn = connect(url).await;
        redis::cmd("GET")
            .arg(format!("{prefix}:{site}:{w}"))
            .query_async::<Option<u64>>(&mut conn)
            .await
            .expect("Redis answers")
            .unwrap_or(0)
    }
}
