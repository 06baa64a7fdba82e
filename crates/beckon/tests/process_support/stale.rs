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

use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::visitors::{Log, key_of};
use super::{ORIGIN, PATIENCE, Reply, SITE, post_batch};

/// How long one send to a live node waits: one that reaches a node that has not yet seen the
/// pause is forwarded to the paused node and would wait for it.
const TRY_TIMEOUT: Duration = Duration::from_secs(1);

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
