//! Backtesting a draft rule: a period of a site's log replayed twice through the engine, once
//! with the rules that were in force and once with the draft added (or put in place of the rule
//! it edits), so that the draft's firings, the pages they came on, the live rules it would have
//! displaced and what would have held it back can be read before it is launched.
//!
//! Both runs are driven the same way: the logged batches of people in order, each visitor's
//! state starting fresh at the period's start, and the server's timer ticks made again from
//! each run's own engine (a draft that waits for a delay wakes when it would have live, not when
//! the recorded rules did). Because the engine is pure and the log is complete, running the
//! draft live over the same events gives the same firings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use beckon_engine::rules::{RuleFile, RuleSpec, Status};
use beckon_engine::session::Arm;
use beckon_engine::trace::{Trace, Verdict as RuleVerdict};
use beckon_engine::{Engine, RuleId, RuleSet, SiteId, Timestamp, VisitorId};
use beckon_store::analytics::{Analytics, Period};
use beckon_store::{LoggedBatch, Source, Store};

use crate::replay::ReplayError;
use crate::visit::{Effect, Visitor};

/// Batches read per page of the log.
const PAGE: usize = 1_000;
/// The most ticks made for one visitor between two of their batches (a rule set that wakes
/// more often than this is re-armed at the next batch).
const MAX_TICKS_PER_GAP: usize = 256;
/// Read this far past the period's end in the sequence, for batches numbered late.
const SEQUENCE_MARGIN_MS: i64 = 60_000;
/// The most pages, blockers and displaced rules a report lists.
const TOP: usize = 20;

/// What a backtest found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BacktestReport {
    /// Batches of people replayed.
    pub batches: u64,
    /// Visitors replayed.
    pub visitors: u64,
    /// Times the draft fired (treated) or would have (held out).
    pub fired: u64,
    /// Of them, shown (treated).
    pub shown: u64,
    /// Of them, ghosts (held out).
    pub ghosts: u64,
    /// Visitors it fired for.
    pub visitors_fired: u64,
    /// Where it fired: page paths and how often, most first.
    pub pages: Vec<(String, u64)>,
    /// Live rules' firings it took the place of, by rule, most first.
    pub displaced: Vec<(String, u64)>,
    /// What held it back when its conditions held, and for how many visitors: a rule that
    /// outranked it, or a guardrail (`session_cap`, `cooldown`, …).
    pub blocked_by: Vec<(String, u64)>,
    /// Firings of every rule without the draft.
    pub baseline_fired: u64,
    /// Firings of every rule with it (the draft's included).
    pub with_draft_fired: u64,
}

/// One run's state of one visitor.
struct Run {
    visitor: Visitor,
    wake: Option<Timestamp>,
}

impl Run {
    fn fresh(id: &VisitorId) -> Run {
        Run {
            visitor: Visitor::fresh(id.clone()),
            wake: None,
        }
    }

    /// The ticks due before `until`, then `batch` (none: ticks only).
    fn advance(
        &mut self,
        engine: &Engine,
        until: Timestamp,
        batch: Option<(&LoggedBatch, &[(crate::wire::Incoming, bool)])>,
        explain: bool,
        out: &mut Vec<Effect>,
    ) {
        let mut new_id = || String::new();
        let mut ticks = 0;
        while let Some(at) = self.wake.filter(|w| *w <= until) {
            if ticks == MAX_TICKS_PER_GAP {
                self.wake = None;
                break;
            }
            ticks += 1;
            let effect = self.visitor.tick(engine, at, &mut new_id, explain);
            self.wake = match effect.next_wake {
                Some(next) => next.filter(|n| *n > at),
                None => None,
            };
            out.push(effect);
        }
        if let Some((batch, events)) = batch {
            let effect = self
                .visitor
                .replay(engine, batch, events, &mut new_id, explain);
            if let Some(next) = effect.next_wake {
                self.wake = next;
            }
            out.push(effect);
        }
    }
}

/// The engines of each rule-set version, with and without the draft, compiled once each.
struct Engines<'a> {
    store: &'a dyn Store,
    site: &'a SiteId,
    draft: &'a RuleSpec,
    compiled: HashMap<u64, (Arc<Engine>, Arc<Engine>)>,
}

impl Engines<'_> {
    async fn at(&mut self, version: u64) -> Result<(Arc<Engine>, Arc<Engine>), ReplayError> {
        if let Some(e) = self.compiled.get(&version) {
            return Ok(e.clone());
        }
        let bad = |reason: String| ReplayError::RuleSet {
            site: self.site.clone(),
            version,
            reason,
        };
        let set = self
            .store
            .rule_set(self.site, version)
            .await?
            .ok_or_else(|| bad("not in the store".to_owned()))?;
        let tz = Engine::timezone(&set.policy);
        let compile = |rules: Vec<RuleSpec>| -> Result<Arc<Engine>, ReplayError> {
            let rules = RuleSet::compile(RuleFile { rules }, tz).map_err(|e| bad(e.to_string()))?;
            Engine::new(self.site.clone(), set.policy.clone(), rules)
                .map(Arc::new)
                .map_err(|e| bad(e.to_string()))
        };
        let baseline = compile(set.rules.clone())?;
        let mut with = set.rules.clone();
        with.retain(|r| r.id != self.draft.id);
        with.push(RuleSpec {
            status: Status::Live,
            ..self.draft.clone()
        });
        let with = compile(with)?;
        self.compiled
            .insert(version, (baseline.clone(), with.clone()));
        Ok((baseline, with))
    }
}

/// Checks that `draft` compiles under `site`'s current policy (a backtest of a rule that
/// cannot run would only fail later, at its first batch).
pub async fn check_draft(store: &dyn Store, site: &SiteId, draft: &RuleSpec) -> Result<(), String> {
    let record = store
        .sites()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|s| s.id == *site)
        .ok_or_else(|| format!("no site {site}"))?;
    let tz = Engine::timezone(&record.policy);
    RuleSet::compile(
        RuleFile {
            rules: vec![RuleSpec {
                status: Status::Live,
                ..draft.clone()
            }],
        },
        tz,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Backtests `draft` over `site`'s log of `period`; `progress(done, total)` is told after each
/// page of batches.
pub async fn backtest(
    store: &dyn Store,
    analytics: &dyn Analytics,
    site: &SiteId,
    draft: &RuleSpec,
    period: Period,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<BacktestReport, ReplayError> {
    let draft_id = RuleId::parse(&draft.id).map_err(|e| ReplayError::RuleSet {
        site: site.clone(),
        version: 0,
        reason: format!("draft id {:?} {e}", draft.id),
    })?;
    let span = analytics.log_span(site, period).await?;
    let mut engines = Engines {
        store,
        site,
        draft,
        compiled: HashMap::new(),
    };
    let mut runs: HashMap<VisitorId, (Run, Run)> = HashMap::new();
    let mut tally = Tally::new(draft_id);
    let mut after = span.after;
    let stop = period.to.as_millis().saturating_add(SEQUENCE_MARGIN_MS);
    let mut done = 0;
    let mut people = 0;
    let mut last_version = None;
    'pages: loop {
        let page = store.log(site, after, PAGE).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        for (_, batch) in page {
            if batch.at.as_millis() >= stop {
                break 'pages;
            }
            if batch.at < period.from || batch.at >= period.to {
                continue;
            }
            done += 1;
            if let Some((base_run, draft_run)) = runs.get_mut(&batch.visitor) {
                if crate::replay::edge_bot(Some(&mut base_run.visitor), &batch) {
                    crate::replay::edge_bot(Some(&mut draft_run.visitor), &batch);
                    continue;
                }
            }
            if crate::replay::edge_bot(None, &batch) || batch.source == Source::Timer {
                continue;
            }
            // A visit judged a bot midway is replayed (its state must turn as it did live),
            // but its batches from then on are no person's.
            if crate::visit::judged_in_visit(&batch.verdict).is_none() {
                people += 1;
            }
            let (baseline, with) = engines.at(batch.rules_version).await?;
            last_version = Some(batch.rules_version);
            let events = crate::replay::incoming_of(&batch)?;
            let (base_run, draft_run) = runs
                .entry(batch.visitor.clone())
                .or_insert_with(|| (Run::fresh(&batch.visitor), Run::fresh(&batch.visitor)));
            let mut base = Vec::new();
            let mut drafted = Vec::new();
            base_run.advance(
                &baseline,
                batch.at,
                Some((&batch, &events)),
                false,
                &mut base,
            );
            draft_run.advance(&with, batch.at, Some((&batch, &events)), true, &mut drafted);
            tally.add(&batch.visitor, &base, &drafted);
        }
        progress(done, span.batches.max(done));
    }
    // The ticks still due before the period's end.
    if let Some(version) = last_version {
        let (baseline, with) = engines.at(version).await?;
        let end = Timestamp::from_millis(period.to.as_millis() - 1);
        for (id, (base_run, draft_run)) in runs.iter_mut() {
            let mut base = Vec::new();
            let mut drafted = Vec::new();
            base_run.advance(&baseline, end, None, false, &mut base);
            draft_run.advance(&with, end, None, true, &mut drafted);
            tally.add(id, &base, &drafted);
        }
    }
    progress(done, span.batches.max(done));
    let mut report = tally.finish();
    report.batches = people;
    report.visitors = runs.len() as u64;
    Ok(report)
}

/// What the runs add up to.
struct Tally {
    draft: RuleId,
    report: BacktestReport,
    fired_for: HashSet<VisitorId>,
    pages: BTreeMap<String, u64>,
    displaced: BTreeMap<String, u64>,
    blocked: BTreeMap<String, HashSet<VisitorId>>,
}

impl Tally {
    fn new(draft: RuleId) -> Tally {
        Tally {
            draft,
            report: BacktestReport::default(),
            fired_for: HashSet::new(),
            pages: BTreeMap::new(),
            displaced: BTreeMap::new(),
            blocked: BTreeMap::new(),
        }
    }

    fn add(&mut self, who: &VisitorId, base: &[Effect], drafted: &[Effect]) {
        let mut base_rules: Vec<&RuleId> = base
            .iter()
            .flat_map(|e| &e.fired)
            .map(|f| &f.rule)
            .collect();
        self.report.baseline_fired += base_rules.len() as u64;
        for f in drafted.iter().flat_map(|e| &e.fired) {
            self.report.with_draft_fired += 1;
            if let Some(i) = base_rules.iter().position(|r| **r == f.rule) {
                base_rules.swap_remove(i);
            }
            if f.rule != self.draft {
                continue;
            }
            self.report.fired += 1;
            match f.arm {
                Arm::Treated => self.report.shown += 1,
                Arm::Holdout => self.report.ghosts += 1,
            }
            self.fired_for.insert(who.clone());
            let path = if f.path.is_empty() {
                "/"
            } else {
                f.path.as_str()
            };
            *self.pages.entry(path.to_owned()).or_default() += 1;
        }
        // What fired without the draft and not with it: the draft took its place.
        for r in base_rules {
            *self.displaced.entry(r.as_str().to_owned()).or_default() += 1;
        }
        for trace in drafted.iter().filter_map(|e| e.traces.as_ref()).flatten() {
            if let Some(blocker) = blocker(trace, &self.draft) {
                self.blocked.entry(blocker).or_default().insert(who.clone());
            }
        }
    }

    fn finish(mut self) -> BacktestReport {
        let top = |m: BTreeMap<String, u64>| {
            let mut v: Vec<(String, u64)> = m.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(TOP);
            v
        };
        self.report.visitors_fired = self.fired_for.len() as u64;
        self.report.pages = top(self.pages);
        self.report.displaced = top(self.displaced);
        self.report.blocked_by = top(self
            .blocked
            .into_iter()
            .map(|(k, v)| (k, v.len() as u64))
            .collect());
        self.report
    }
}

/// What held the draft back in one decision, when its conditions held: the rule that
/// outranked it, or the guardrail's name.
fn blocker(trace: &Trace, draft: &RuleId) -> Option<String> {
    match trace.verdict(draft.as_str())? {
        RuleVerdict::Outranked { by } => Some(format!("rule {by}")),
        RuleVerdict::Held { by } => serde_json::to_value(by)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned)),
        RuleVerdict::RepeatCycle { .. } => Some("repeat_after".to_owned()),
        RuleVerdict::LifetimeCap { .. } => Some("max_per_visitor".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beckon_engine::trace::{RuleTrace, Suppression};

    fn trace(verdict: RuleVerdict) -> Trace {
        Trace {
            at: Timestamp::from_millis(0),
            event: "page",
            held: None,
            rules: vec![RuleTrace {
                rule: RuleId::parse("draft").unwrap(),
                verdict,
            }],
        }
    }

    #[test]
    fn the_blocker_names_the_winning_rule_or_the_guardrail_and_ignores_unmet_conditions() {
        let draft = RuleId::parse("draft").unwrap();
        let by = RuleId::parse("winner").unwrap();
        assert_eq!(
            blocker(&trace(RuleVerdict::Outranked { by }), &draft),
            Some("rule winner".to_owned())
        );
        let held = RuleVerdict::Held {
            by: Suppression::SessionCap { max: 2 },
        };
        assert_eq!(
            blocker(&trace(held), &draft),
            Some("session_cap".to_owned())
        );
        let unmet = RuleVerdict::ConditionFailed { why: "no".into() };
        assert_eq!(blocker(&trace(unmet), &draft), None);
        let other = RuleId::parse("other").unwrap();
        assert_eq!(blocker(&trace(RuleVerdict::Fired), &other), None);
    }
}
