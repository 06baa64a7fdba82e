//! Visitors that browse a running `beckon serve` (one node or several) the way the widget
//! does, and the checks over the log afterwards that the promises of "Promises off the happy
//! path" in `ARCHITECTURE.md` held: an acknowledged event is in the log exactly once, and the
//! guardrails (the session cap, the cooldown after a dismissal) count what was durably
//! decided, so no crash, and no move of a visitor to another node, can reset them.
//!
//! A [`Client`] sends its batches to one of the live base URLs it is given, picked at random
//! for each request (a load balancer that knows nothing of visitors). A batch whose answer
//! never came (a dropped connection, a 503) is not acknowledged and is sent again later.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use beckon_engine::{SiteId, Timestamp, VisitorId};
use beckon_store::{Applied, Store};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{ORIGIN, SITE, post_batch};

/// The site's session cap.
pub const MAX_PER_SESSION: usize = 2;
/// The site's quiet time after a dismissal.
pub const COOLDOWN: Duration = Duration::from_secs(10 * 60);
/// The policy: the cap and the cooldown above, nobody held out (so every firing is shown and
/// may be dismissed).
pub const POLICY: &str = "max_per_session = 2\ndismiss_cooldown = \"10m\"\nholdout_percent = 0.0\n";
/// Every client sends from 127.0.0.1: no per-address limit.
pub const LIMITS: &str = "per_ip_per_second = 0";
/// The longest one batch may go unacknowledged, resends included, before the test gives up on
/// the server.
pub const DELIVERY_BOUND: Duration = Duration::from_secs(45);
/// What a client waits, at least, between an answer (or a failure) and its next request. A
/// person is slower; the floor also keeps the log's instants of one visitor's batches apart,
/// which the cooldown check relies on (see there).
const THINK_MS: std::ops::Range<u64> = 10..60;
/// When the visitors arrive, from the start of the run.
const ARRIVALS_MS: std::ops::Range<u64> = 0..3_000;

/// The idempotency key of a wire event: its id, or `order:<id>` for an order.
pub fn key_of(e: &Value) -> String {
    match e["order_id"].as_str() {
        Some(order) if e["type"] == "convert" && !order.is_empty() => format!("order:{order}"),
        _ => e["id"].as_str().expect("an id").to_owned(),
    }
}

/// What the log holds, read back whole after the run.
#[derive(Default)]
pub struct Log {
    /// How often each (visitor, key) is logged, orders left out.
    pub keys: HashMap<(String, String), usize>,
    /// How often each order key is logged, for the whole site.
    pub orders: HashMap<String, usize>,
    /// The instants of each visitor's decided dismissals.
    pub dismissals: HashMap<String, Vec<Timestamp>>,
    /// The order keys decided for each visitor.
    pub converted: HashMap<String, HashSet<String>>,
}

impl Log {
    pub async fn read(store: &dyn Store, site: &SiteId) -> Log {
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

/// What the checks counted, for the closing note and the check that the run tested something.
#[derive(Debug)]
pub struct Checked {
    /// Acknowledged events found in the log exactly once.
    pub events: usize,
    /// Exposures stored.
    pub exposures: usize,
    /// (Visitor, session) pairs with an exposure.
    pub exposed_sessions: usize,
    /// Whether some session reached the cap.
    pub capped: bool,
    /// Dismissals decided.
    pub dismissals: usize,
    /// Distinct order ids reported.
    pub orders: usize,
}

impl Checked {
    /// The run tested something: batches were lost and sent again, guardrails were reached,
    /// orders repeated.
    pub fn assert_exercised(&self, stats: &Stats) {
        assert!(stats.unanswered > 0, "no batch was ever lost");
        assert!(self.dismissals > 0 && self.exposures > 0);
        assert!(self.capped, "no session reached the cap");
        assert!(stats.repeated_orders > 0);
    }
}

/// Reads the log, the exposures and the profiles of `site` back from `store` after the run
/// and checks every promise against what `visitors` saw.
pub async fn check_promises(store: &dyn Store, visitors: &[Client]) -> Checked {
    let site = SiteId::parse(SITE).unwrap();
    let log = Log::read(store, &site).await;
    let exposures = store.exposures(&site).await.unwrap();

    // Every acknowledged event is in the log exactly once: by its key, for its visitor, or
    // for the site when it is an order.
    let mut checked = 0;
    for v in visitors {
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

    // The session cap held: at most two exposures per (visitor, session).
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
    // The cooldown held: nothing within ten minutes after a decided dismissal. A dismissal is
    // always the first event of its batch, so an exposure of that batch or a later one is at
    // or after the batch's instant; one of an earlier batch is at least a think time before it
    // (a client waits that long after every answer).
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
    for v in visitors {
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

    Checked {
        events: checked,
        exposures: exposures.len(),
        exposed_sessions: per_session.len(),
        capped: per_session.values().any(|n| *n == MAX_PER_SESSION),
        dismissals,
        orders: ordered.len(),
    }
}

/// What a client saw, for the closing note and the check that the run tested something.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub acked: usize,
    pub unanswered: usize,
    pub stored_unanswered: usize,
    pub resent: usize,
    pub repeated_orders: usize,
}

impl Stats {
    pub fn plus(mut self, o: &Stats) -> Stats {
        self.acked += o.acked;
        self.unanswered += o.unanswered;
        self.stored_unanswered += o.stored_unanswered;
        self.resent += o.resent;
        self.repeated_orders += o.repeated_orders;
        self
    }

    /// The sum over `visitors`.
    pub fn of(visitors: &[Client]) -> Stats {
        visitors
            .iter()
            .fold(Stats::default(), |a, v| a.plus(&v.stats))
    }
}

/// One request of a batch (a first send or a resend) and how it ended.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// When it was sent.
    pub sent: Instant,
    /// When its answer came (or the failure).
    pub ended: Instant,
    /// Whether it was acknowledged (202).
    pub acked: bool,
}

/// One visitor's browser: the widget's side of the protocol, in sequence (a batch is sent
/// again until it is acknowledged, before the next one).
pub struct Client {
    n: usize,
    rng: fastrand::Rng,
    /// Which of the bases each request goes to: a generator of its own, so that the visitor's
    /// choices do not depend on how many bases there are.
    route: fastrand::Rng,
    http: reqwest::Client,
    /// The live nodes' base URLs.
    bases: watch::Receiver<Vec<String>>,
    session: String,
    seq: u32,
    /// The visitor id and token the server issued (none before the first answer).
    identity: Option<(String, String)>,
    /// Every batch acknowledged, in order.
    pub acked: Vec<Vec<Value>>,
    /// The interventions the server answered with.
    pub interventions: Vec<Value>,
    /// The order ids reported (and acknowledged).
    pub orders: Vec<String>,
    /// Every request sent, in order.
    pub attempts: Vec<Attempt>,
    pub stats: Stats,
}

impl Client {
    /// Visitor `n` of a run seeded with `seed`, sending to one of `bases` at random.
    pub fn new(n: usize, seed: u64, bases: watch::Receiver<Vec<String>>) -> Client {
        let own = seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9);
        Client {
            n,
            rng: fastrand::Rng::with_seed(own),
            route: fastrand::Rng::with_seed(own.rotate_left(17) ^ 0x0b5e_55ed),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            bases,
            session: format!("s_crash{n}"),
            seq: 0,
            identity: None,
            acked: Vec::new(),
            interventions: Vec::new(),
            orders: Vec::new(),
            attempts: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The visitor id the server issued.
    pub fn visitor(&self) -> String {
        self.identity.as_ref().expect("an identity").0.clone()
    }

    /// Browses until told to stop (and at least a few rounds): product page and cart, exit
    /// intent (which fires the rule until a guardrail holds it), sometimes a dismissal of
    /// what was shown, a resend of an earlier batch, an order; and an order at the end.
    pub async fn run(mut self, browsing: Arc<AtomicBool>) -> Client {
        // Arrivals spread over the first seconds, so that firings (which come in a visitor's
        // first rounds) meet the test's kills too, not only the held decisions after them.
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
    pub async fn resend_everything(&mut self) {
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
    /// is not up yet) or a 503 means not acknowledged: wait a little, send again, to one of
    /// the bases live by then.
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
            let base = {
                let bases = self.bases.borrow();
                assert!(!bases.is_empty(), "no base to send to");
                bases[self.route.usize(0..bases.len())].clone()
            };
            let sent = Instant::now();
            let answer = post_batch(&self.http, &base, body.to_string()).await;
            let acked = matches!(&answer, Ok(r) if r.status == 202);
            self.attempts.push(Attempt {
                sent,
                ended: Instant::now(),
                acked,
            });
            match answer {
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
                Ok(r) => panic!("visitor {} via {base}: {} {}", self.n, r.status, r.text),
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

/// Starts `count` visitors of a run seeded with `seed`, each its own task, browsing until
/// `browsing` is cleared.
pub fn spawn_visitors(
    count: usize,
    seed: u64,
    bases: &watch::Receiver<Vec<String>>,
    browsing: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Client>> {
    (0..count)
        .map(|n| {
            let visitor = Client::new(n, seed, bases.clone());
            tokio::spawn(visitor.run(browsing.clone()))
        })
        .collect()
}

/// Waits for every visitor to finish browsing, then has each send every batch once more:
/// each is answered as all duplicates, since the durable log (not a memory) recognises them.
pub async fn finish_and_resend(clients: Vec<tokio::task::JoinHandle<Client>>) -> Vec<Client> {
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
    visitors
}
