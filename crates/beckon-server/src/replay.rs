//! Rebuilding decisions from the log alone: every logged batch of a site, in order, through
//! [`Visitor::replay`] with the rule set of the version it names. Because the engine is pure and
//! the log records everything it was told (context, verdicts, visit starts, rule-set versions,
//! the server's own ticks), the exposures it rebuilds are the ones recorded. Backtests of draft
//! rules will drive the same loop with a rule added.

use std::collections::HashMap;
use std::sync::Arc;

use beckon_engine::session::Arm;
use beckon_engine::trace::Trace;
use beckon_engine::{Engine, RuleId, RuleSet, SiteId, Timestamp, VisitorId};
use beckon_store::insight::Insight;
use beckon_store::{Applied, LoggedBatch, Store, StoreError, Verdict};

use crate::visit::{Visitor, judged_in_visit};
use crate::wire::{Incoming, logged_event};

/// Batches read per page of the log.
const PAGE: usize = 1_000;

/// One decision to fire (shown or ghost), as the replay and the exposures both say it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fired {
    /// When.
    pub at: Timestamp,
    /// The visitor.
    pub visitor: VisitorId,
    /// The rule.
    pub rule: RuleId,
    /// Shown or ghost.
    pub arm: ArmName,
}

/// An arm, orderable (for comparing sorted lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ArmName {
    /// Shown.
    Treated,
    /// Ghost.
    Holdout,
}

impl From<Arm> for ArmName {
    fn from(a: Arm) -> Self {
        match a {
            Arm::Treated => ArmName::Treated,
            Arm::Holdout => ArmName::Holdout,
        }
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log names a rule-set version the store does not have, or that does not compile.
    #[error("rule-set version {version} of site {site}: {reason}")]
    RuleSet {
        /// The site.
        site: SiteId,
        /// The version.
        version: u64,
        /// What is wrong.
        reason: String,
    },
    /// A logged event does not parse back.
    #[error("logged event {key:?}: {reason}")]
    Event {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// What a replay rebuilt.
#[derive(Debug, Default)]
pub struct Replay {
    /// What fired, sorted.
    pub fired: Vec<Fired>,
    /// Each visitor's state at the end of the log.
    pub visitors: HashMap<VisitorId, Visitor>,
}

/// Replays `site`'s whole log.
pub async fn replay_site(store: &dyn Store, site: &SiteId) -> Result<Replay, ReplayError> {
    let mut engines = Engines::new(store, site);
    let mut visitors: HashMap<VisitorId, Visitor> = HashMap::new();
    let mut fired = Vec::new();
    let mut after = 0;
    loop {
        let page = store.log(site, after, PAGE).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        for (_, batch) in page {
            if edge_bot(visitors.get_mut(&batch.visitor), &batch) {
                continue;
            }
            let engine = engines.at(batch.rules_version).await?;
            let visitor = visitors
                .entry(batch.visitor.clone())
                .or_insert_with(|| Visitor::fresh(batch.visitor.clone()));
            let (got, _) = replay_batch(&engine, visitor, &batch, false)?;
            fired.extend(got);
        }
    }
    fired.sort();
    Ok(Replay { fired, visitors })
}

/// Feeds one logged batch to `visitor`, as the shard did; what fired and, when `explain`,
/// the engine's explanation of each decision.
fn replay_batch(
    engine: &Engine,
    visitor: &mut Visitor,
    batch: &LoggedBatch,
    explain: bool,
) -> Result<(Vec<Fired>, Vec<Trace>), ReplayError> {
    let events = incoming_of(batch)?;
    let mut n = 0u64;
    let mut new_id = || {
        n += 1;
        format!("replay-{n}")
    };
    let effect = visitor.replay(engine, batch, &events, &mut new_id, explain);
    let (fired, traces) = (effect.fired, effect.traces.unwrap_or_default());
    let fired = fired
        .into_iter()
        .map(|f| Fired {
            at: batch.at,
            visitor: batch.visitor.clone(),
            rule: f.rule,
            arm: f.arm.into(),
        })
        .collect();
    Ok((fired, traces))
}

/// A logged batch's events as the engine takes them, each with whether it was decided on.
pub(crate) fn incoming_of(batch: &LoggedBatch) -> Result<Vec<(Incoming, bool)>, ReplayError> {
    let mut events = Vec::with_capacity(batch.events.len());
    for e in &batch.events {
        let event = logged_event(&e.kind, &e.body).map_err(|reason| ReplayError::Event {
            key: e.key.clone(),
            reason,
        })?;
        let incoming = Incoming {
            id: e.id.clone(),
            key: e.key.clone(),
            kind: "replayed",
            event,
            outcome: None,
            body: String::new(),
        };
        events.push((incoming, e.applied == Applied::Decided));
    }
    Ok(events)
}

/// The most batches of one visitor the session explorer replays.
pub const EXPLAIN_DEPTH: usize = 2_000;

/// One logged batch of a visitor, with what the engine made of it.
#[derive(Debug)]
pub struct Step {
    /// The batch as logged.
    pub batch: LoggedBatch,
    /// What fired (shown or ghost).
    pub fired: Vec<Fired>,
    /// The engine's explanation of each decision, in order.
    pub traces: Vec<Trace>,
}

/// A visitor's log replayed with the engine's explanations: each batch, what fired, and why
/// each rule did or did not. Replays the visitor's last [`EXPLAIN_DEPTH`] batches from a fresh
/// state (a longer history starts from its cut).
pub async fn explain_visitor(
    store: &dyn Store,
    insight: &dyn Insight,
    site: &SiteId,
    visitor: &VisitorId,
) -> Result<Vec<Step>, ReplayError> {
    let log = insight.visitor_log(site, visitor, EXPLAIN_DEPTH).await?;
    let mut engines = Engines::new(store, site);
    let mut state = Visitor::fresh(visitor.clone());
    let mut steps = Vec::with_capacity(log.len());
    for (_, batch) in log {
        if edge_bot(Some(&mut state), &batch) {
            steps.push(Step {
                batch,
                fired: Vec::new(),
                traces: Vec::new(),
            });
            continue;
        }
        let engine = engines.at(batch.rules_version).await?;
        let (fired, traces) = replay_batch(&engine, &mut state, &batch, true)?;
        steps.push(Step {
            batch,
            fired,
            traces,
        });
    }
    Ok(steps)
}

/// What the store recorded as fired for `site`, sorted like [`replay_site`]'s answer.
pub async fn recorded(store: &dyn Store, site: &SiteId) -> Result<Vec<Fired>, StoreError> {
    let mut fired: Vec<Fired> = store
        .exposures(site)
        .await?
        .into_iter()
        .map(|x| Fired {
            at: x.at,
            visitor: x.visitor,
            rule: x.rule,
            arm: x.arm.into(),
        })
        .collect();
    fired.sort();
    Ok(fired)
}

/// The engines of a site's rule-set versions, compiled once each.
struct Engines<'a> {
    store: &'a dyn Store,
    site: &'a SiteId,
    compiled: HashMap<u64, Arc<Engine>>,
}

impl<'a> Engines<'a> {
    fn new(store: &'a dyn Store, site: &'a SiteId) -> Self {
        Engines {
            store,
            site,
            compiled: HashMap::new(),
        }
    }

    async fn at(&mut self, version: u64) -> Result<Arc<Engine>, ReplayError> {
        if let Some(e) = self.compiled.get(&version) {
            return Ok(e.clone());
        }
        let e = Arc::new(engine_at(self.store, self.site, version).await?);
        self.compiled.insert(version, e.clone());
        Ok(e)
    }
}

async fn engine_at(store: &dyn Store, site: &SiteId, version: u64) -> Result<Engine, ReplayError> {
    let bad = |reason: String| ReplayError::RuleSet {
        site: site.clone(),
        version,
        reason,
    };
    let set = store
        .rule_set(site, version)
        .await?
        .ok_or_else(|| bad("not in the store".to_owned()))?;
    let tz = Engine::timezone(&set.policy);
    let rules = RuleSet::compile(beckon_engine::rules::RuleFile { rules: set.rules }, tz)
        .map_err(|e| bad(e.to_string()))?;
    Engine::new(site.clone(), set.policy, rules).map_err(|e| bad(e.to_string()))
}

/// Whether the edge judged the batch a bot's before any visit saw it (a visit's own verdict,
/// [`judged_in_visit`], is replayed: the visit saw those events). Such a batch of the
/// visitor's current visit marks it, as the shard did live ([`Visitor::mark_edge_bot`]).
pub(crate) fn edge_bot(visitor: Option<&mut Visitor>, batch: &LoggedBatch) -> bool {
    let Verdict::Bot { reason } = &batch.verdict else {
        return false;
    };
    if judged_in_visit(&batch.verdict).is_some() {
        return false;
    }
    if let (Some(visitor), Some(session)) = (visitor, &batch.session) {
        visitor.mark_edge_bot(session, reason.clone());
    }
    true
}
