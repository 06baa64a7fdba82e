//! Rebuilding decisions from the log alone: every logged batch of a site, in order, through
//! [`Visitor::replay`] with the rule set of the version it names. Because the engine is pure and
//! the log records everything it was told (context, verdicts, visit starts, rule-set versions,
//! the server's own ticks), the exposures it rebuilds are the ones recorded. Backtests of draft
//! rules will drive the same loop with a rule added.

use std::collections::HashMap;
use std::sync::Arc;

use beckon_engine::session::Arm;
use beckon_engine::{Engine, RuleId, RuleSet, SiteId, Timestamp, VisitorId};
use beckon_store::{Applied, Store, StoreError, Verdict};

use crate::visit::Visitor;
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
    let mut engines: HashMap<u64, Arc<Engine>> = HashMap::new();
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
            if matches!(batch.verdict, Verdict::Bot { .. }) {
                continue;
            }
            let engine = match engines.get(&batch.rules_version) {
                Some(e) => e.clone(),
                None => {
                    let e = Arc::new(engine_at(store, site, batch.rules_version).await?);
                    engines.insert(batch.rules_version, e.clone());
                    e
                }
            };
            let mut events = Vec::with_capacity(batch.events.len());
            for e in &batch.events {
                let event =
                    logged_event(&e.kind, &e.body).map_err(|reason| ReplayError::Event {
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
            let visitor = visitors
                .entry(batch.visitor.clone())
                .or_insert_with(|| Visitor::fresh(batch.visitor.clone()));
            let mut n = 0u64;
            let mut new_id = || {
                n += 1;
                format!("replay-{n}")
            };
            for f in visitor.replay(
                &engine,
                batch.session.as_ref(),
                batch.begins.as_ref(),
                &events,
                batch.at,
                &mut new_id,
            ) {
                fired.push(Fired {
                    at: batch.at,
                    visitor: batch.visitor.clone(),
                    rule: f.rule,
                    arm: f.arm.into(),
                });
            }
        }
    }
    fired.sort();
    Ok(Replay { fired, visitors })
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
