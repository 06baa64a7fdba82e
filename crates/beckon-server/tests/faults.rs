//! Acknowledged means durable, exactly once — whatever the database does.
//!
//! A property test drives random interleavings of batches (alone and concurrent), resends of
//! earlier batches, commits that fail before writing, commits that are written but report
//! failure, failed reads and restarts through the real server (intake, shards, writer) on a
//! real SQLite store wrapped in [`Faulty`]. Then every batch is resent once more with the
//! database healthy, as a client does with what it has not seen acknowledged, and:
//! - every acknowledged event is in the log exactly once;
//! - an event that was never acknowledged is in the log only if a commit wrote it before
//!   reporting failure;
//! - each visitor's persisted state is exactly the replay of the log (so nothing unlogged has
//!   an effect), and so are the exposures;
//! - each order counted once, each logged dismissal once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use beckon_engine::{Policy, SiteId};
use beckon_server::intake::{self, Claim, Sender};
use beckon_server::limits::Limits;
use beckon_server::replay;
use beckon_server::wire::ClientContext;
use beckon_server::{Options, Server};
use beckon_store::faults::{FaultHandle, Faulty};
use beckon_store::{Applied, Store};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

const SHOP: &str = "shop";
const VISITORS: usize = 3;

/// One step of a story.
#[derive(Clone, Debug)]
enum Step {
    /// New events from one visitor.
    Send { visitor: usize, kinds: Vec<Kind> },
    /// Several visitors' (or one visitor's) new batches at once.
    Together(Vec<(usize, Vec<Kind>)>),
    /// A commit fails (before or after writing) while these batches go at once.
    FailDuring {
        batches: Vec<(usize, Vec<Kind>)>,
        after_writing: bool,
    },
    /// The disk fails to sync while these batches go at once: their commits landed but none is
    /// acknowledged, the writer stops, and the server is restarted (as its supervisor would
    /// once `/healthz` fails).
    FailSync(Vec<(usize, Vec<Kind>)>),
    /// An earlier batch again, as a client resends what it has not seen acknowledged.
    Resend(usize),
    /// The next commit fails, unwritten.
    FailCommit,
    /// The next commit is written, then reports failure.
    FailAfterWriting,
    /// The next read fails.
    FailRead,
    /// The server stops and starts again on the same database.
    Restart,
}

/// What kind of event to make.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Page,
    Activity,
    Cart,
    Exit,
    /// A conversion with one of a few order ids (so that some repeat).
    Order(u8),
    /// Dismisses the visitor's latest intervention, if they have one.
    Dismiss,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        2 => Just(Kind::Page),
        2 => Just(Kind::Activity),
        2 => Just(Kind::Cart),
        3 => Just(Kind::Exit),
        1 => (0u8..3).prop_map(Kind::Order),
        3 => Just(Kind::Dismiss),
    ]
}

fn kinds() -> impl Strategy<Value = Vec<Kind>> {
    prop::collection::vec(kind(), 1..5)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..VISITORS, kinds()).prop_map(|(visitor, kinds)| Step::Send { visitor, kinds }),
        3 => prop::collection::vec((0..VISITORS, kinds()), 2..5).prop_map(Step::Together),
        // One visitor's batches back to back while a commit fails: the later ones are applied
        // in memory on top of the failing one before the shard hears of the failure.
        2 => (0..VISITORS, prop::collection::vec(kinds(), 2..5), any::<bool>()).prop_map(
            |(v, batches, after_writing)| Step::FailDuring {
                batches: batches.into_iter().map(|k| (v, k)).collect(),
                after_writing,
            }
        ),
        1 => prop::collection::vec((0..VISITORS, kinds()), 1..4).prop_map(Step::FailSync),
        3 => (0usize..1000).prop_map(Step::Resend),
        2 => Just(Step::FailCommit),
        1 => Just(Step::FailAfterWriting),
        1 => Just(Step::FailRead),
        1 => Just(Step::Restart),
    ]
}

/// A batch as sent: its visitor, session and events.
#[derive(Clone, Debug)]
struct Sent {
    visitor: usize,
    events: Vec<Value>,
    acked: bool,
}

struct World {
    store: Arc<dyn Store>,
    faulty: Arc<Faulty>,
    faults: FaultHandle,
    server: Option<Server>,
    sent: Vec<Sent>,
    /// The latest intervention (id, rule) each visitor was shown.
    shown: BTreeMap<usize, (String, String)>,
    next_event: usize,
    /// Whether a commit may have been written and reported failed.
    ambiguous: bool,
}

fn visitor_id(world: &World, v: usize) -> String {
    let _ = world;
    format!("v_prop{v}")
}

impl World {
    async fn start(&mut self) {
        let server = beckon_server::start(
            self.faulty.clone(),
            Options {
                shards: 2,
                limits: Limits::unthrottled(),
                ..Options::default()
            },
        )
        .await
        .expect("the server starts");
        self.server = Some(server);
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    fn make(&mut self, visitor: usize, kinds: &[Kind]) -> Sent {
        let mut events = Vec::new();
        for k in kinds {
            self.next_event += 1;
            let id = format!("s_prop{visitor}:{}", self.next_event);
            events.push(match k {
                Kind::Page => page(&id, "cart", "/cart"),
                Kind::Activity => bare(&id, "activity"),
                Kind::Cart => cart(&id, 2, 80.0),
                Kind::Exit => bare(&id, "exit_intent"),
                Kind::Order(o) => {
                    json!({"id": id, "type": "convert", "order_id": format!("o-{visitor}-{o}"), "value": 10})
                }
                Kind::Dismiss => match self.shown.get(&visitor) {
                    Some((intervention, rule)) => json!({"id": id, "type": "dismissed", "rule": rule, "intervention": intervention}),
                    None => bare(&id, "activity"),
                },
            });
        }
        Sent {
            visitor,
            events,
            acked: false,
        }
    }

    /// Submits a batch through the server's intake, as the HTTP and WebSocket routes do.
    async fn submit(&self, sent: &Sent) -> Option<Vec<(String, String)>> {
        let server = self.server.as_ref().expect("running");
        let state = &server.state;
        let site = state.sites.get(SHOP).expect("the site");
        let visitor = visitor_id(self, sent.visitor);
        let token = state.tokens.issue(
            &site.record.id,
            &beckon_engine::VisitorId::parse(&visitor).unwrap(),
        );
        let session = format!("s_prop{}", sent.visitor);
        let context = ClientContext::default();
        let from = Sender {
            site,
            claim: Claim::Browser {
                visitor: Some(&visitor),
                token: Some(&token),
            },
            session: Some(&session),
            user_agent: CHROME,
            hints: &beckon_server::edge::ClientHints::default(),
            context: &context,
        };
        match intake::submit(state, from, sent.events.clone()).await {
            Ok(submitted) => {
                assert!(submitted.identity.is_none(), "the token is the visitor's");
                Some(
                    submitted
                        .reply
                        .interventions
                        .iter()
                        .map(|i| (i.id.clone(), i.rule.clone()))
                        .collect(),
                )
            }
            Err(_) => None,
        }
    }

    async fn run(&mut self, step: &Step) {
        match step {
            Step::Send { visitor, kinds } => {
                let sent = self.make(*visitor, kinds);
                self.sent.push(sent);
                self.resend(self.sent.len() - 1).await;
            }
            Step::FailDuring {
                batches,
                after_writing,
            } => {
                if *after_writing {
                    self.ambiguous = true;
                    self.faults.fail_commits_after_writing(1);
                } else {
                    self.faults.fail_commits(1);
                }
                Box::pin(self.run(&Step::Together(batches.clone()))).await;
            }
            Step::Together(batches) => {
                let made: Vec<Sent> = batches.iter().map(|(v, k)| self.make(*v, k)).collect();
                let first = self.sent.len();
                self.sent.extend(made);
                let answers = {
                    let this = &*self;
                    futures::future::join_all(
                        (first..this.sent.len()).map(|i| this.submit(&this.sent[i])),
                    )
                    .await
                };
                for (i, answer) in (first..).zip(answers) {
                    self.record(i, answer);
                }
            }
            Step::FailSync(batches) => {
                self.ambiguous = true;
                self.faults.fail_syncs(1);
                Box::pin(self.run(&Step::Together(batches.clone()))).await;
                // Whichever sync failed (this step's, or a probe's if every commit of the step
                // failed before it), nothing after it is acknowledged until the restart.
                let probe = self.make(batches[0].0, &[Kind::Activity]);
                self.sent.push(probe);
                self.resend(self.sent.len() - 1).await;
                assert!(
                    !self.sent[self.sent.len() - 1].acked,
                    "a batch after a failed sync is not acknowledged"
                );
                for i in self.sent.len() - 1 - batches.len()..self.sent.len() {
                    assert!(
                        !self.sent[i].acked,
                        "batch {i} waited for a sync that failed"
                    );
                }
                self.faults.fail_syncs(0);
                self.stop().await;
                self.start().await;
            }
            Step::Resend(i) => {
                if !self.sent.is_empty() {
                    self.resend(i % self.sent.len()).await;
                }
            }
            Step::FailCommit => self.faults.fail_commits(1),
            Step::FailAfterWriting => {
                self.ambiguous = true;
                self.faults.fail_commits_after_writing(1);
            }
            Step::FailRead => self.faults.fail_reads(1),
            Step::Restart => {
                self.stop().await;
                self.start().await;
            }
        }
    }

    async fn resend(&mut self, i: usize) {
        let answer = self.submit(&self.sent[i]).await;
        self.record(i, answer);
    }

    fn record(&mut self, i: usize, answer: Option<Vec<(String, String)>>) {
        if let Some(interventions) = answer {
            self.sent[i].acked = true;
            if let Some(last) = interventions.last() {
                self.shown.insert(self.sent[i].visitor, last.clone());
            }
        }
    }
}

/// An event's idempotency key: its id, or its order for a conversion (an order counts once,
/// whichever event reports it).
fn id_of(e: &Value) -> String {
    match e["order_id"].as_str() {
        Some(order) => format!("order:{order}"),
        None => e["id"].as_str().expect("an id").to_owned(),
    }
}

async fn story(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let base = memory_store().await;
    let policy = Policy {
        // Roomy caps, no arrival grace: so that rules fire often and outcomes matter.
        max_per_session: 16,
        max_per_visitor_day: 16,
        arrival_grace: std::time::Duration::ZERO,
        dismiss_cooldown: std::time::Duration::ZERO,
        ..Policy::default()
    };
    install(
        base.as_ref(),
        &Site::new(SHOP, &cart_exit_rule("cart-exit"), policy),
    )
    .await;
    let faulty = Arc::new(Faulty::new(base.clone()));
    let mut world = World {
        store: base.clone(),
        faults: faulty.handle(),
        faulty,
        server: None,
        sent: Vec::new(),
        shown: BTreeMap::new(),
        next_event: 0,
        ambiguous: false,
    };
    world.start().await;
    for step in &steps {
        world.run(step).await;
    }
    // No fault is left armed for what follows.
    world.faults.fail_commits(0);
    world.faults.fail_commits_after_writing(0);
    world.faults.fail_reads(0);
    world.faults.fail_syncs(0);
    let site = SiteId::parse(SHOP).unwrap();

    // Every answer is in (an acknowledgement leaves only after its commit): what was never
    // acknowledged is in the log only if a commit may have written it before failing.
    let logged = logged_keys(world.store.as_ref(), &site).await;
    let acked_ids: BTreeSet<String> = world
        .sent
        .iter()
        .filter(|s| s.acked)
        .flat_map(|s| s.events.iter().map(id_of))
        .collect();
    for (id, n) in &logged {
        prop_assert_eq!(*n, 1, "event {} is logged {} times", id, n);
    }
    for id in &acked_ids {
        prop_assert!(
            logged.contains_key(id),
            "acknowledged {} is not in the log",
            id
        );
    }
    if !world.ambiguous {
        for id in logged.keys() {
            prop_assert!(
                acked_ids.contains(id),
                "{} is logged but was never acknowledged",
                id
            );
        }
    }

    // Every batch once more, on the same running server with the database healthy again, as
    // clients resend what they have not seen acknowledged: a visitor whose commit failed is
    // served again (no restart needed), and now every batch is acknowledged.
    for i in 0..world.sent.len() {
        world.resend(i).await;
        prop_assert!(
            world.sent[i].acked,
            "batch {} is acknowledged on a healthy resend",
            i
        );
    }
    world.stop().await;
    let logged = logged_keys(world.store.as_ref(), &site).await;
    for sent in &world.sent {
        for e in &sent.events {
            prop_assert_eq!(logged.get(&id_of(e)), Some(&1), "event {}", id_of(e));
        }
    }
    check_state_is_the_replay(world.store.as_ref(), &site).await?;
    // Orders counted once each.
    for v in 0..VISITORS {
        let orders: BTreeSet<String> = world
            .sent
            .iter()
            .filter(|s| s.visitor == v)
            .flat_map(|s| s.events.iter())
            .filter_map(|e| e["order_id"].as_str().map(str::to_owned))
            .collect();
        if let Some(record) =
            visitor_record(world.store.as_ref(), SHOP, &visitor_id(&world, v)).await
        {
            prop_assert_eq!(
                record.profile.conversions as usize,
                orders.len(),
                "visitor {}",
                v
            );
        }
    }
    Ok(())
}

/// Every event key in the log, with how many times it is there.
async fn logged_keys(store: &dyn Store, site: &SiteId) -> BTreeMap<String, usize> {
    let mut keys = BTreeMap::new();
    for (_, batch) in store.log(site, 0, 1_000_000).await.expect("the log") {
        for e in batch.events {
            if e.kind != "tick" {
                *keys.entry(e.key).or_default() += 1;
            }
        }
    }
    keys
}

/// Each visitor's persisted state, and the site's exposures, are what a replay of the log
/// rebuilds.
async fn check_state_is_the_replay(store: &dyn Store, site: &SiteId) -> Result<(), TestCaseError> {
    let replayed = replay::replay_site(store, site)
        .await
        .expect("the log replays");
    let recorded = replay::recorded(store, site).await.expect("exposures");
    prop_assert_eq!(&replayed.fired, &recorded, "the exposures are the replay's");
    for (id, visitor) in &replayed.visitors {
        let record = store
            .visitor(site, id)
            .await
            .expect("readable")
            .expect("a replayed visitor is stored");
        prop_assert_eq!(&record.profile, &visitor.profile, "profile of {}", id);
        let persisted = record.session.map(|s| serde_json::to_value(&s).unwrap());
        let rebuilt = visitor
            .session_record()
            .map(|s| serde_json::to_value(&s).unwrap());
        // Intervention ids are random, and a replay makes its own: compare everything else.
        let strip = |v: Option<Value>| {
            v.map(|mut v| {
                v["issued"] = json!(v["issued"].as_array().map_or(0, |a| a.len()));
                v
            })
        };
        prop_assert_eq!(strip(persisted), strip(rebuilt), "visit of {}", id);
        let dismissed_logged = store
            .log(site, 0, 1_000_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|(_, b)| &b.visitor == id)
            .flat_map(|(_, b)| b.events)
            .filter(|e| e.kind == "dismissed" && e.applied == Applied::Decided)
            .count();
        prop_assert_eq!(
            record.profile.dismissals as usize,
            dismissed_logged,
            "dismissals of {}",
            id
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_acknowledged_event_is_logged_once_and_the_state_is_the_replay_of_the_log(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(story(steps))?;
    }
}
