//! `beckon serve` killed with SIGKILL (no drain, no flush: a power cut, the OOM killer) at
//! random moments under load, and restarted on the same database each time. Clients do what
//! the widget does: a batch whose answer never came (a dropped connection, a 503) is not
//! acknowledged and is sent again later. The promises of "Promises off the happy path" in
//! `ARCHITECTURE.md` must hold across every kill: an acknowledged event is in the log exactly
//! once, and the guardrails (the session cap, the cooldown after a dismissal) count what was
//! durably decided, so no crash can reset them.

mod process_support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use beckon_engine::{SiteId, Timestamp, VisitorId};
use beckon_store::Applied;
use process_support::*;
use serde_json::{Value, json};
use tokio::sync::watch;

/// Visitors browsing at once, each its own client task.
const VISITORS: usize = 30;
/// The site's session cap.
const MAX_PER_SESSION: usize = 2;
/// The site's quiet time after a dismissal.
const COOLDOWN: Duration = Duration::from_secs(10 * 60);
/// The policy: the cap and the cooldown above, nobody held out (so every firing is shown and
/// may be dismissed).
const POLICY: &str = "max_per_session = 2\ndismiss_cooldown = \"10m\"\nholdout_percent = 0.0\n";
/// Every client sends from 127.0.0.1: no per-address limit.
const LIMITS: &str = "per_ip_per_second = 0";
/// The seed of the run, unless `BECKON_CRASH_SEED` gives another (to replay a failure's
/// schedule of kills and choices; the timing of the machine still varies).
const SEED: u64 = 0x5eed_c0de_2026;
/// The longest one batch may go unacknowledged, resends included, before the test gives up on
/// the server.
const DELIVERY_BOUND: Duration = Duration::from_secs(45);
/// What a client waits, at least, between an answer (or a failure) and its next request. A
/// person is slower; the floor also keeps the log's instants of one visitor's batches apart,
/// which the cooldown check relies on (see there).
const THINK_MS: std::ops::Range<u64> = 10..60;
/// When the visitors arrive, from the first start.
const ARRIVALS_MS: std::ops::Range<u64> = 0..3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once_and_guardrails_hold() {
    let seed = std::env::var("BECKON_CRASH_SEED")
        .ok()
        .and_then(|s| match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        })
        .unwrap_or(SEED);
    let mut rng = fastrand::Rng::with_seed(seed);
    let kills = rng.usize(4..=6);
    println!("seed {seed:#x}: {kills} kills");

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), POLICY, LIMITS);
    let mut server = Beckon::start(&config).await;
    let (base_tx, base_rx) = watch::channel(server.base());
    let browsing = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..VISITORS)
        .map(|n| {
            let visitor = Client::new(n, seed, base_rx.clone());
            tokio::spawn(visitor.run(browsing.clone()))
        })
        .collect();

    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.u64(200..700))).await;
        server.sigkill().await;
        // Down for a moment: the clients' batches fail and wait to be sent again.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..200))).await;
        server = Beckon::start(&config).await;
        base_tx.send_replace(server.base());
    }
    // The last start is a clean one: the clients finish, every batch they have not had
    // acknowledged is sent again until it is.
    browsing.store(false, Ordering::SeqCst);
    // Then every batch once more, after all the kills: each is answered as all duplicates,
    // since the durable log (not a memory) recognises them.
    let resending: Vec<_> = clients
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                let mut v = c.await.expect("a client does not panic");
                v.resend_everything().await;
                v
            })
        })
        .collect();
    let mut visitors = Vec::new();
    for v in resending {
        visitors.push(v.await.expect("a client does not panic"));
    }
    server.stop(PATIENCE).await;

    let store = beckon::open_store(&data_dir(dir.path())).await.unwrap();
    let site = SiteId::parse(SITE).unwrap();
    let log = Log::read(store.as_ref(), &site).await;
    let exposures = store.exposures(&site).await.unwrap();

    // Every acknowledged event is in the log exactly once: by its key, for its visitor, or
    // for the site when it is an order.
    let mut checked = 0;
    for v in &visitors {
        let id = v.visitor();
        for events in &v.acked {
            for e in events {
                let key = key_of(e);
                let n = if key.starts_with("order:") {
                    log.orders.get(&key).copied().unwrap_or(0)
                } else {
                    log.keys
                        .get(&(id.clone(), key.clone()))
                        .copied()
                        .unwrap_or(0)
                };
                assert_eq!(n, 1, "{id}'s acknowledged {key} is in the log {n} times");
                checked += 1;
            }
        }
    }
    // And no key is in the log twice, acknowledged or not.
    for ((v, key), n) in &log.keys {
        assert_eq!(*n, 1, "{v}'s {key} is in the log {n} times");
    }
    for (key, n) in &log.orders {
        assert_eq!(*n, 1, "{key} is in the site's log {n} times");
    }

    // The session cap held across the kills: at most two exposures per (visitor, session).
    let mut per_session: HashMap<(String, String), usize> = HashMap::new();
    for x in &exposures {
        *per_session
            .entry((x.visitor.to_string(), x.session.to_string()))
            .or_default() += 1;
    }
    for ((v, s), n) in &per_session {
        assert!(
            *n <= MAX_PER_SESSION,
            "{v} got {n} exposures in session {s}"
        );
    }
    let shown: HashSet<&str> = exposures.iter().map(|x| x.id.as_str()).collect();
    // The cooldown held across the kills: nothing within ten minutes after a decided
    // dismissal. A dismissal is always the first event of its batch, so an exposure of that
    // batch or a later one is at or after the batch's instant; one of an earlier batch is at
    // least a think time before it (a client waits that long after every answer).
    for (v, dismissals) in &log.dismissals {
        for d in dismissals {
            for x in exposures.iter().filter(|x| x.visitor.as_str() == v) {
                let after = x.at.as_millis() - d.as_millis();
                assert!(
                    !(0..COOLDOWN.as_millis() as i64).contains(&after),
                    "{v} got exposure {} {after} ms after a dismissal at {d}",
                    x.id
                );
            }
        }
    }

    // Each visitor's profile counts what the log decided, once: its orders (every distinct
    // order id it reported first) and its dismissals.
    let mut conversions = 0;
    let mut dismissals = 0;
    for v in &visitors {
        let id = v.visitor();
        let record = store
            .visitor(&site, &VisitorId::parse(&id).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} is stored"));
        let decided = log.converted.get(&id).cloned().unwrap_or_default();
        let reported: HashSet<String> = v.orders.iter().map(|o| format!("order:{o}")).collect();
        assert!(
            decided.is_subset(&reported),
            "{id} is credited with orders it never reported: {decided:?}"
        );
        let orders = decided.len();
        let dismissed = log.dismissals.get(&id).map_or(0, Vec::len);
        assert_eq!(
            record.profile.conversions as usize, orders,
            "{id}'s conversions"
        );
        assert_eq!(
            record.profile.dismissals as usize, dismissed,
            "{id}'s dismissals"
        );
        conversions += orders;
        dismissals += dismissed;
        // Every intervention a visitor was answered with was durably exposed.
        for i in &v.interventions {
            let i = i["id"].as_str().unwrap();
            assert!(shown.contains(i), "{id} was sent {i}, which is not stored");
        }
    }
    // Each order id any visitor reported counts once, for the visitor that reported it first.
    let ordered: HashSet<&String> = visitors.iter().flat_map(|v| &v.orders).collect();
    assert_eq!(conversions, ordered.len(), "orders counted once each");

    let stats = visitors
        .iter()
        .fold(Stats::default(), |a, v| a.plus(&v.stats));
    println!(
        "{checked} acknowledged events checked after {kills} kills (seed {seed:#x}): \
         {} batches acknowledged, {} sends unanswered and sent again (of the batches, {} \
         stored by an attempt whose answer was lost), {} resends answered as duplicates; {} \
         interventions to {} visitors, {dismissals} dismissals, {} distinct orders",
        stats.acked,
        stats.unanswered,
        stats.stored_unanswered,
        stats.resent,
        exposures.len(),
        per_session.len(),
        ordered.len(),
    );
    // The run tested something: batches were lost to the kills and sent again, guardrails
    // were reached, orders repeated.
    assert!(stats.unanswered > 0, "no batch was ever lost to a kill");
    assert!(dismissals > 0 && !exposures.is_empty());
    assert!(per_session.values().any(|n| *n == MAX_PER_SESSION));
    assert!(stats.repeated_orders > 0);
}

/// The idempotency key of a wire event: its id, or `order:<id>` for an order.
fn key_of(e: &Value) -> String {
    match e["order_id"].as_str() {
        Some(order) if e["type"] == "convert" && !order.is_empty() => format!("order:{order}"),
        _ => e["id"].as_str().expect("an id").to_owned(),
    }
}

/// What the log holds, read back whole after the run.
#[derive(Default)]
struct Log {
    /// How often each (visitor, key) is logged, orders left out.
    keys: HashMap<(String, String), usize>,
    /// How often each order key is logged, for the whole site.
    orders: HashMap<String, usize>,
    /// The instants of each visitor's decided dismissals.
    dismissals: HashMap<String, Vec<Timestamp>>,
    /// The order keys decided for each visitor.
    converted: HashMap<String, HashSet<String>>,
}

impl Log {
    async fn read(store: &dyn beckon_store::Store, site: &SiteId) -> Log {
        let mut log = Log::default();
        let mut after = 0;
        loop {
            let page = store.log(site, after, 1000).await.unwrap();
            let Some((last, _)) = page.last() else {
                return log;
            };
            after = *last;
            for (_, batch) in &page {
                let v = batch.visitor.to_string();
                for e in &batch.events {
                    if e.key.starts_with("order:") {
                        *log.orders.entry(e.key.clone()).or_default() += 1;
                    } else {
                        *log.keys.entry((v.clone(), e.key.clone())).or_default() += 1;
                    }
                    if e.applied != Applied::Decided {
                        continue;
                    }
                    match e.kind.as_str() {
                        "dismissed" => log.dismissals.entry(v.clone()).or_default().push(batch.at),
                        "convert" => {
                            let fresh = log
                                .converted
                                .entry(v.clone())
                                .or_default()
                                .insert(e.key.clone());
                            assert!(fresh, "{v}'s {} decided twice", e.key);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// What a client saw, for the closing note and the check that the run tested something.
#[derive(Clone, Debug, Default)]
struct Stats {
    acked: usize,
    unanswered: usize,
    stored_unanswered: usize,
    resent: usize,
    repeated_orders: usize,
}

impl Stats {
    fn plus(mut self, o: &Stats) -> Stats {
        self.acked += o.acked;
        self.unanswered += o.unanswered;
        self.stored_unanswered += o.stored_unanswered;
        self.resent += o.resent;
        self.repeated_orders += o.repeated_orders;
        self
    }
}

/// One visitor's browser: the widget's side of the protocol, in sequence (a batch is sent
/// again until it is acknowledged, before the next one).
struct Client {
    n: usize,
    rng: fastrand::Rng,
    http: reqwest::Client,
    base: watch::Receiver<String>,
    session: String,
    seq: u32,
    /// The visitor id and token the server issued (none before the first answer).
    identity: Option<(String, String)>,
    /// Every batch acknowledged, in order.
    acked: Vec<Vec<Value>>,
    /// The interventions the server answered with.
    interventions: Vec<Value>,
    /// The order ids reported (and acknowledged).
    orders: Vec<String>,
    stats: Stats,
}

impl Client {
    fn new(n: usize, seed: u64, base: watch::Receiver<String>) -> Client {
        Client {
            n,
            rng: fastrand::Rng::with_seed(seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9)),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            base,
            session: format!("s_crash{n}"),
            seq: 0,
            identity: None,
            acked: Vec::new(),
            interventions: Vec::new(),
            orders: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The visitor id the server issued.
    fn visitor(&self) -> String {
        self.identity.as_ref().expect("an identity").0.clone()
    }

    /// Browses until told to stop (and at least a few rounds): product page and cart, exit
    /// intent (which fires the rule until a guardrail holds it), sometimes a dismissal of
    /// what was shown, a resend of an earlier batch, an order; and an order at the end.
    async fn run(mut self, browsing: Arc<AtomicBool>) -> Client {
        // Arrivals spread over the first kills, so that firings (which come in a visitor's
        // first rounds) meet kills too, not only the held decisions after them.
        tokio::time::sleep(Duration::from_millis(self.rng.u64(ARRIVALS_MS))).await;
        let home = self.event(
            "page",
            json!({"url": format!("{ORIGIN}/"), "path": "/",
            "title": "Home", "page_type": "home", "referrer": ""}),
        );
        // A person: the pointer moves as the first page loads.
        let pointer = self.event("activity", json!({}));
        self.send(vec![home, pointer]).await;
        let mut rounds = 0;
        while browsing.load(Ordering::SeqCst) || rounds < 3 {
            rounds += 1;
            let items = self.rng.u32(1..5);
            let product = self.event(
                "page",
                json!({"url": format!("{ORIGIN}/p/{rounds}"),
                "path": format!("/p/{rounds}"), "title": "Trail Shoe", "page_type": "product",
                "referrer": ""}),
            );
            let cart = self.event(
                "cart",
                json!({"value": 30.0 * f64::from(items), "currency": "EUR", "items": items}),
            );
            self.send(vec![product, cart]).await;
            let exit = self.event("exit_intent", json!({}));
            let reply = self.send(vec![exit]).await;
            for i in reply["interventions"].as_array().unwrap().clone() {
                if self.rng.f64() < 0.4 {
                    let dismissed = self.event(
                        "dismissed",
                        json!({"rule": i["rule"], "intervention": i["id"]}),
                    );
                    self.send(vec![dismissed]).await;
                }
                self.interventions.push(i);
            }
            if self.rng.f64() < 0.2 {
                self.resend_one().await;
            }
            if self.rng.f64() < 0.1 {
                self.order().await;
            }
        }
        self.order().await;
        self
    }

    /// Reports an order: most are new, some repeat one of this visitor's own (a reload of the
    /// thank-you page), some one of a few ids every visitor shares (the same order reported
    /// from two places).
    async fn order(&mut self) {
        let own = self.orders.len();
        let order = match self.rng.u32(0..10) {
            0..=5 => format!("o{}_{own}", self.n),
            6 | 7 if own > 0 => self.orders[self.rng.usize(0..own)].clone(),
            _ => format!("o_pool{}", self.rng.u32(0..4)),
        };
        if self.orders.contains(&order) {
            self.stats.repeated_orders += 1;
        }
        let convert = self.event("convert", json!({"order_id": order, "value": 42.0}));
        self.send(vec![convert]).await;
        self.orders.push(order);
    }

    /// Sends an acknowledged batch again: it is answered as all duplicates, with nothing
    /// decided on it.
    async fn resend_one(&mut self) {
        let i = self.rng.usize(0..self.acked.len());
        let events = self.acked[i].clone();
        self.resend(&events).await;
    }

    /// Sends every acknowledged batch again.
    async fn resend_everything(&mut self) {
        for events in self.acked.clone() {
            self.resend(&events).await;
        }
    }

    async fn resend(&mut self, events: &[Value]) {
        let reply = self.deliver(events).await;
        assert_eq!(
            (reply["accepted"].as_u64(), reply["duplicates"].as_u64()),
            (Some(0), Some(events.len() as u64)),
            "visitor {}: an acknowledged batch sent again: {reply}",
            self.n
        );
        assert_eq!(reply["interventions"], json!([]), "{reply}");
        self.stats.resent += 1;
    }

    /// Sends a new batch until it is acknowledged; its answer.
    async fn send(&mut self, events: Vec<Value>) -> Value {
        let reply = self.deliver(&events).await;
        let counted = reply["accepted"].as_u64().unwrap() + reply["duplicates"].as_u64().unwrap();
        assert_eq!(counted, events.len() as u64, "{reply}");
        // A new batch answered with duplicates (an order aside, whose id may repeat) was
        // stored by an attempt whose answer a kill cut off.
        if reply["duplicates"].as_u64() > Some(0) && events.iter().all(|e| e["type"] != "convert") {
            self.stats.stored_unanswered += 1;
        }
        self.acked.push(events);
        self.stats.acked += 1;
        reply
    }

    /// Posts `events` until a 202 comes back. A connection error (the server was killed, or
    /// is not up yet) or a 503 means not acknowledged: wait a little, send again, to the
    /// server's current address.
    async fn deliver(&mut self, events: &[Value]) -> Value {
        let started = Instant::now();
        loop {
            self.think().await;
            assert!(
                started.elapsed() < DELIVERY_BOUND,
                "visitor {}: a batch unacknowledged for {DELIVERY_BOUND:?}",
                self.n
            );
            let mut body = json!({
                "site": SITE, "session": self.session,
                "context": {"lang": "en-US", "tz_offset": 60, "screen": [1280, 800]},
                "events": events,
            });
            if let Some((visitor, token)) = &self.identity {
                body["visitor"] = json!(visitor);
                body["token"] = json!(token);
            }
            let base = self.base.borrow().clone();
            match post_batch(&self.http, &base, body.to_string()).await {
                Ok(r) if r.status == 202 => {
                    if let Some(identity) = r.body.get("identity") {
                        assert!(
                            self.identity.is_none(),
                            "visitor {}: the server no longer knows the token it issued: {}",
                            self.n,
                            r.text
                        );
                        self.identity = Some((
                            identity["visitor"].as_str().unwrap().to_owned(),
                            identity["token"].as_str().unwrap().to_owned(),
                        ));
                    }
                    return r.body;
                }
                Ok(r) if r.status == 503 => {
                    assert!(r.is_json_error(), "{}", r.text);
                    self.stats.unanswered += 1;
                }
                Ok(r) => panic!("visitor {}: {} {}", self.n, r.status, r.text),
                Err(_) => self.stats.unanswered += 1,
            }
        }
    }

    async fn think(&mut self) {
        tokio::time::sleep(Duration::from_millis(self.rng.u64(THINK_MS))).await;
    }

    /// A new event of `kind` with `fields`, with the next id of this page load.
    fn event(&mut self, kind: &str, fields: Value) -> Value {
        self.seq += 1;
        let mut e = json!({"id": format!("{}:l0ad01:{}", self.session, self.seq), "type": kind,
            "t": 1_763_700_000_000_i64 + i64::from(self.seq)});
        for (k, v) in fields.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }
}
