//! Visitors that make a paused node a stale writer. Each is minted on one node, which then
//! holds its state. Just before that node is paused, each sends it a batch (directly, or
//! through another node, which forwards it), so that the pause finds some decided on and being
//! written and others unread in its sockets. While the node is paused past its lease, the
//! visitor goes on with its new owner, which stores what it is sent. When the node wakes, what
//! it had decided on is written on the version it had read, which the new owner has moved on
//! from: the store must refuse it. (What waited unread it may take in after it has seen its
//! lease lapse: it then sends it on to the new owner, or, when forwarded to it, serves it on
//! the state it reads afresh.)
//!
//! They go on in one of two ways, as a browser may. Some send the batch that waits again (the
//! widget resends what was not answered): the new owner stores that very batch, so the woken
//! node's write holds events already in the log. The others send their next page view instead
//! (another tab), and the batch that waits only once the node woke: the woken node's write is
//! new to the log, and only the version it names is out of date — the store's fence alone
//! stands between it and the log.
//!
//! They send page views only (no cart, no order, no dismissal), so they never reach a rule or
//! a guardrail, and the per-visitor checks of [`super::visitors`] need not know them; the log's
//! own checks (no key twice) cover them with everyone else.
//!
//! [`pause_until_a_stale_write_is_refused`] pauses the node with them and wakes it, as many
//! times as it takes.

use std::time::Duration;

use beckon_store::cluster::Membership;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::nodes::{leases, live_nodes_become, metric, scrape};
use super::visitors::{Log, key_of};
use super::{Beckon, NodeSettings, ORIGIN, PATIENCE, Reply, SITE, post_batch};

/// How long one send to a live node waits: one that reaches a node that has not yet seen the
/// pause is forwarded to the paused node and would wait for it.
const TRY_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest the node stays paused, waiting for its visitors to go on with their new
/// owners.
const PAUSE_BOUND: Duration = Duration::from_secs(5);

/// One such visitor.
pub struct Lagging {
    n: usize,
    /// Bounded per try, for the live nodes.
    http: reqwest::Client,
    /// Bounded by [`PATIENCE`], for the batch that waits in the paused node.
    patient: reqwest::Client,
    session: String,
    seq: u32,
    /// The visitor id and token the node it arrived on issued.
    identity: (String, String),
    /// Every batch acknowledged, in order.
    pub acked: Vec<Vec<Value>>,
    /// The batch sent to the paused node, not yet acknowledged.
    pending: Option<Vec<Value>>,
    /// Whether it sends the batch that waits again while the node is paused (else its next
    /// page view).
    pub resends: bool,
    /// Whether the batch that waits goes through another node (else to the paused one).
    pub forwarded: bool,
}

/// How the paused node answered the batch that waited for it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Woken {
    /// Refused, to be sent again (503): its write was refused, or it was not taken.
    pub refused: usize,
    /// Acknowledged: stored before the pause, or, once woken, sent on to the new owner or
    /// served on the state read afresh.
    pub acknowledged: usize,
    /// No answer.
    pub lost: usize,
}

impl Lagging {
    /// Visitor `n` arrives on the node at `base` (so its id is minted among those that node
    /// owns) with a first page view.
    pub async fn arrive(n: usize, base: &str) -> Lagging {
        let client = |timeout| {
            reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("HTTP client")
        };
        let mut visitor = Lagging {
            n,
            http: client(TRY_TIMEOUT),
            patient: client(PATIENCE),
            session: format!("s_lagging{n}"),
            seq: 0,
            identity: (String::new(), String::new()),
            acked: Vec::new(),
            pending: None,
            resends: n % 3 == 0,
            forwarded: n % 3 == 2,
        };
        let page = visitor.page();
        let pointer = visitor.event("activity", json!({}));
        let events = vec![page, pointer];
        let body = visitor.body(&events, false);
        let deadline = Instant::now() + PATIENCE;
        let reply = loop {
            match post_batch(&visitor.http, base, body.clone()).await {
                Ok(r) if r.status == 202 => break r,
                answer => assert!(
                    Instant::now() < deadline,
                    "lagging visitor {n} never arrived at {base}: {answer:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let identity = &reply.body["identity"];
        visitor.identity = (
            identity["visitor"].as_str().expect("a visitor").to_owned(),
            identity["token"].as_str().expect("a token").to_owned(),
        );
        visitor.acked.push(events);
        visitor
    }

    /// The visitor id its node issued.
    pub fn visitor(&self) -> &str {
        &self.identity.0
    }

    /// A page view sent to the node at `base` until acknowledged: that node holds the
    /// visitor's state afterwards, if it owns it. (Sent on the connection the batch that
    /// will wait for the node goes on, so the node has it open when it wakes.)
    pub async fn prime(&mut self, base: &str) {
        let events = vec![self.page()];
        let http = self.patient.clone();
        assert!(
            self.deliver(&http, &events, base, PATIENCE).await,
            "lagging visitor {} unacknowledged at {base} for {PATIENCE:?}",
            self.n
        );
    }

    /// A page view sent to the node at `base`, for the node about to be paused (there, or
    /// forwarded to it): the answer, once the node woke (or `None`).
    pub fn queue(&mut self, base: &str) -> JoinHandle<Option<Reply>> {
        let events = vec![self.page()];
        let body = self.body(&events, true);
        self.pending = Some(events);
        let http = self.patient.clone();
        let base = base.to_owned();
        tokio::spawn(async move { post_batch(&http, &base, body).await.ok() })
    }

    /// Goes on at the live node `base` while the node it waits for is paused: sends the batch
    /// that waits again if it [`Lagging::resends`], else its next page view, until acknowledged
    /// within `within`; whether it was.
    pub async fn go_on(&mut self, base: &str, within: Duration) -> bool {
        if self.resends {
            return self.deliver_pending(base, within).await;
        }
        let events = vec![self.page()];
        let http = self.http.clone();
        self.deliver(&http, &events, base, within).await
    }

    /// The batch that waits in the paused node, sent to the live node at `base` until
    /// acknowledged, within `within`; whether it was.
    pub async fn deliver_pending(&mut self, base: &str, within: Duration) -> bool {
        let events = self.pending.clone().expect("a batch waits");
        let http = self.http.clone();
        let delivered = self.deliver(&http, &events, base, within).await;
        if delivered {
            self.pending = None;
        }
        delivered
    }

    /// Whether a batch waits still (unacknowledged).
    pub fn pending(&self) -> bool {
        self.pending.is_some()
    }

    async fn deliver(
        &mut self,
        http: &reqwest::Client,
        events: &[Value],
        base: &str,
        within: Duration,
    ) -> bool {
        let body = self.body(events, true);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = post_batch(http, base, body.clone()).await
                && r.status == 202
            {
                let counted =
                    r.body["accepted"].as_u64().unwrap() + r.body["duplicates"].as_u64().unwrap();
                assert_eq!(counted, events.len() as u64, "{}", r.text);
                self.acked.push(events.to_vec());
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn body(&self, events: &[Value], known: bool) -> String {
        let mut body = json!({
            "site": SITE, "session": self.session,
            "context": {"lang": "en-US", "tz_offset": 60, "screen": [1280, 800]},
            "events": events,
        });
        if known {
            body["visitor"] = json!(self.identity.0);
            body["token"] = json!(self.identity.1);
        }
        body.to_string()
    }

    fn page(&mut self) -> Value {
        let n = self.seq;
        self.event(
            "page",
            json!({"url": format!("{ORIGIN}/blog/{n}"), "path": format!("/blog/{n}"),
            "title": "Journal", "page_type": "article", "referrer": ""}),
        )
    }

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

impl Woken {
    /// Counts the paused node's answer to the batch of `visitor` that waited for it, and
    /// takes it as the visitor's acknowledgement when it is one.
    pub fn count(&mut self, visitor: &mut Lagging, answer: Option<Reply>) {
        match answer {
            Some(r) if r.status == 503 => {
                assert!(r.is_json_error(), "{}", r.text);
                self.refused += 1;
            }
            // Stored before the pause, sent on to the new owner, or served on state read
            // afresh. (Whether anything was stored twice the log tells.)
            Some(r) if r.status == 202 => {
                self.acknowledged += 1;
                if let Some(events) = visitor.pending.take() {
                    visitor.acked.push(events);
                }
            }
            Some(r) => panic!("the woken node answered {} {}", r.status, r.text),
            None => self.lost += 1,
        }
    }
}

/// Checks that every batch the `visitors` had acknowledged is in `log` exactly once; the
/// number of events checked.
pub fn check_logged_once(log: &Log, visitors: &[Lagging]) -> usize {
    let mut checked = 0;
    for v in visitors {
        assert!(
            !v.pending(),
            "lagging visitor {} has a batch unacknowledged",
            v.n
        );
        for e in v.acked.iter().flatten() {
            let key = key_of(e);
            let n = log
                .keys
                .get(&(v.visitor().to_owned(), key.clone()))
                .copied()
                .unwrap_or(0);
            assert_eq!(n, 1, "{}'s acknowledged {key} is in the log {n} times", v.n);
            checked += 1;
        }
    }
    checked
}

/// Which node [`pause_until_a_stale_write_is_refused`] pauses, how many visitors wait for it,
/// and how many times at most it is paused.
#[derive(Debug, Clone, Copy)]
pub struct Pausing {
    /// The node's place among the nodes.
    pub node: usize,
    /// The visitors that wait for it.
    pub visitors: usize,
    /// The most times the node is paused to see one of its writes refused.
    pub at_most: usize,
}

/// What the pauses did.
pub struct Pause {
    /// How long each pause lasted, and the stale writes the node refused in it.
    pub pauses: Vec<(Duration, u64)>,
    /// How the node answered, once woken, what had waited for it.
    pub woken: Woken,
    /// The stale writes it refused, as its `/metrics` count them.
    pub refused: u64,
    /// The commits it saw fail otherwise (a write holding an event the log already had).
    pub failed: u64,
    /// The stale writes the other nodes refused meanwhile.
    pub elsewhere: u64,
    /// The visitors that waited for it.
    pub visitors: Vec<Lagging>,
}

/// Pauses the node [`Pausing::node`] (taken out of the load balancer's list meanwhile) with a
/// batch of each of its [`Pausing::visitors`] visitors on its way through it, until its lease
/// lapses and the visitors have gone on with their new owners, then wakes it; again, up to
/// [`Pausing::at_most`] times, until it has refused a stale write.
pub async fn pause_until_a_stale_write_is_refused(
    nodes: &[Beckon],
    settings: &[NodeSettings],
    pausing: Pausing,
    balancer: &watch::Sender<Vec<String>>,
    store: &dyn Membership,
) -> Pause {
    let paused = &nodes[pausing.node];
    let base = paused.base();
    let all: Vec<String> = nodes.iter().map(Beckon::base).collect();
    let others: Vec<String> = all.iter().filter(|b| **b != base).cloned().collect();
    let names = leases(settings, |_| true);
    let without = leases(settings, |i| i != pausing.node);
    // Visitors of the paused node, minted there.
    let mut visitors = Vec::new();
    let mut n = 0;
    while visitors.len() < pausing.visitors {
        assert!(
            n < 20 * pausing.visitors,
            "{base} never minted a visitor of its own"
        );
        let v = Lagging::arrive(n, &base).await;
        n += 1;
        if beckon_cluster::rendezvous::owner(SITE, v.visitor(), &names)
            .is_some_and(|o| o.name == settings[pausing.node].name)
        {
            visitors.push(v);
        }
    }
    let mut pause = Pause {
        pauses: Vec::new(),
        woken: Woken::default(),
        refused: 0,
        failed: 0,
        elsewhere: 0,
        visitors: Vec::new(),
    };
    while pause.refused == 0 && pause.pauses.len() < pausing.at_most {
        // Back in the cluster, holding its visitors' state.
        live_nodes_become(store, nodes.len()).await;
        ready(&base).await;
        for v in &mut visitors {
            v.prime(&base).await;
        }
        let (stale_before, failed_before) = refusals(&base).await;
        let mut elsewhere_before = 0;
        for other in &others {
            elsewhere_before += refusals(other).await.0;
        }
        balancer.send_replace(others.clone());
        // A batch of each visitor for it, sent to it or through another node, a millisecond
        // apart and the last just before the pause: the pause finds the first ones decided on
        // and being written, or stored already, and the last ones unread in its sockets. A
        // batch it has decided on but not yet written is written on waking, whatever it has
        // seen of its lease by then.
        let mut waiting = Vec::new();
        for v in &mut visitors {
            waiting.push(v.queue(if v.forwarded { &others[0] } else { &base }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        paused.sigstop();
        let stopped = Instant::now();
        live_nodes_become(store, nodes.len() - 1).await;
        // Their new owners store what the visitors go on with (a node a beat behind forwards
        // it to the paused one at first, where it waits too).
        let bound = PAUSE_BOUND.saturating_sub(stopped.elapsed());
        futures::future::join_all(visitors.iter_mut().map(|v| {
            let owner =
                beckon_cluster::rendezvous::owner(SITE, v.visitor(), &without).expect("an owner");
            let at = format!("http://{}", owner.address);
            async move { v.go_on(&at, bound).await }
        }))
        .await;
        paused.sigcont();
        let paused_for = stopped.elapsed();
        balancer.send_replace(all.clone());
        for (v, w) in visitors.iter_mut().zip(waiting) {
            let answer = w.await.expect("a sender does not panic");
            pause.woken.count(v, answer);
        }
        for v in visitors.iter_mut().filter(|v| v.pending()) {
            assert!(
                v.deliver_pending(&others[0], PATIENCE).await,
                "a lagging visitor's batch unacknowledged"
            );
        }
        let (stale, failed) = refusals(&base).await;
        pause.pauses.push((paused_for, stale - stale_before));
        pause.refused += stale - stale_before;
        pause.failed += failed - failed_before;
        for other in &others {
            pause.elsewhere += refusals(other).await.0;
        }
        pause.elsewhere -= elsewhere_before;
    }
    pause.visitors = visitors;
    pause
}

/// Waits until the node at `base` is ready (its lease holds), within [`PATIENCE`].
async fn ready(base: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stale writes the node at `base` refused so far, and its commits that failed otherwise.
async fn refusals(base: &str) -> (u64, u64) {
    let metrics = scrape(base).await;
    let count = |name: &str| metric(&metrics, name).unwrap_or(0.0) as u64;
    (
        count("beckon_stale_writes_total"),
        count("beckon_commit_failed_total"),
    )
}
