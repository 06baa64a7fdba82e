//! Attribution: each triggered visitor becomes one unit of analysis, in the arm they were in
//! when the rule first fired (or would have) in the period, with what followed the trigger.
//!
//! The analysis is triggered: treated and held-out visitors are compared on the same trigger,
//! so the held-out visitors of a rule are exactly those it would have shown something to.
//! A visitor counts once per rule, from their first trigger; automated visitors not at all.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use beckon_engine::rules::Goal;
use beckon_engine::session::Arm;
use beckon_engine::{RuleId, SessionId, Timestamp, VisitorId};

use crate::facts::{Exposure, Facts, Outcome, OutcomeKind, ReactionKind, Visit};
use crate::settings::{LEFT_WITHIN, RETURN_WITHIN};

/// One triggered visitor and what followed their trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// The visitor.
    pub visitor: VisitorId,
    /// Their arm.
    pub arm: Arm,
    /// Their first trigger in the period.
    pub at: Timestamp,
    /// An outcome the goal counts came within the window.
    pub converted: bool,
    /// The value of their orders within the window.
    pub revenue: f64,
    /// Their visit ended within [`LEFT_WITHIN`] of the trigger.
    pub left: bool,
    /// They came back (a later visit) within [`RETURN_WITHIN`] of the trigger, so far.
    pub returned: bool,
    /// They reported the intervention shown (treated only).
    pub shown: bool,
    /// They dismissed it.
    pub dismissed: bool,
    /// They engaged with it.
    pub engaged: bool,
}

fn counts(goal: &Goal, kind: &OutcomeKind) -> bool {
    match (goal, kind) {
        (Goal::Order, OutcomeKind::Order { .. }) => true,
        (Goal::Lead, OutcomeKind::Lead) => true,
        (Goal::Event(want), OutcomeKind::Event(got)) => want == got,
        _ => false,
    }
}

/// The facts indexed by visitor, for attributing many rules over the same facts.
pub struct Index<'f> {
    outcomes: HashMap<&'f VisitorId, Vec<&'f Outcome>>,
    visits: HashMap<&'f VisitorId, Vec<&'f Visit>>,
    reactions: HashMap<(&'f VisitorId, &'f RuleId), [bool; 3]>,
    /// The same, any rule's: for every rule together.
    any_reactions: HashMap<&'f VisitorId, [bool; 3]>,
    bots: HashSet<&'f VisitorId>,
    exposures: &'f [Exposure],
}

impl<'f> Index<'f> {
    /// Indexes `facts`.
    pub fn new(facts: &'f Facts) -> Index<'f> {
        let mut outcomes: HashMap<_, Vec<_>> = HashMap::new();
        for o in &facts.outcomes {
            outcomes.entry(&o.visitor).or_default().push(o);
        }
        for list in outcomes.values_mut() {
            list.sort_by_key(|o| o.at);
        }
        let mut visits: HashMap<_, Vec<_>> = HashMap::new();
        let mut bots = HashSet::new();
        for v in &facts.visits {
            if v.bot {
                bots.insert(&v.visitor);
            }
            visits.entry(&v.visitor).or_default().push(v);
        }
        let mut reactions: HashMap<_, [bool; 3]> = HashMap::new();
        let mut any_reactions: HashMap<_, [bool; 3]> = HashMap::new();
        for r in &facts.reactions {
            let slot = match r.kind {
                ReactionKind::Shown => 0,
                ReactionKind::Dismissed => 1,
                ReactionKind::Engaged => 2,
            };
            reactions.entry((&r.visitor, &r.rule)).or_default()[slot] = true;
            any_reactions.entry(&r.visitor).or_default()[slot] = true;
        }
        Index {
            outcomes,
            visits,
            reactions,
            any_reactions,
            bots,
            exposures: &facts.exposures,
        }
    }

    /// Whether the edge judged a visit of `visitor` automated.
    pub fn is_bot(&self, visitor: &VisitorId) -> bool {
        self.bots.contains(visitor)
    }

    /// Automated visitors seen in the facts.
    pub fn bot_count(&self) -> usize {
        self.bots.len()
    }

    /// The units of `rule` (every rule's, with the first trigger of any, when `None`),
    /// converting on `goal` within `window`, in order of their trigger.
    pub fn units(&self, rule: Option<&RuleId>, goal: &Goal, window: Duration) -> Vec<Unit> {
        let mut seen = HashSet::new();
        let mut units = Vec::new();
        for e in self.exposures {
            if rule.is_some_and(|r| r != &e.rule) || self.is_bot(&e.visitor) {
                continue;
            }
            if !seen.insert(&e.visitor) {
                continue;
            }
            units.push(self.unit(e, rule, goal, window));
        }
        units.sort_by_key(|u| u.at);
        units
    }

    fn unit(&self, e: &Exposure, rule: Option<&RuleId>, goal: &Goal, window: Duration) -> Unit {
        let until = e.at.as_millis().saturating_add(millis(window));
        let mut converted = false;
        let mut revenue = 0.0;
        for o in self.outcomes.get(&e.visitor).into_iter().flatten() {
            let t = o.at.as_millis();
            if t < e.at.as_millis() || t > until {
                continue;
            }
            converted |= counts(goal, &o.kind);
            if let OutcomeKind::Order { value } = o.kind {
                revenue += order_value(value);
            }
        }
        let visits = self
            .visits
            .get(&e.visitor)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let [shown, dismissed, engaged] = match rule {
            Some(r) => self.reactions.get(&(&e.visitor, r)),
            None => self.any_reactions.get(&e.visitor),
        }
        .copied()
        .unwrap_or_default();
        Unit {
            visitor: e.visitor.clone(),
            arm: e.arm,
            at: e.at,
            converted,
            revenue,
            left: left_soon(visits, &e.session, e.at),
            returned: came_back(visits, &e.session, e.at),
            shown,
            dismissed,
            engaged,
        }
    }
}

/// The most one order may add to revenue. Order values come from the page (or the merchant's
/// backend) unchecked; a value beyond this, below 0 or not a number is taken for a mistake or
/// a forgery and adds nothing (the order still converts), so that one visitor cannot turn
/// every revenue figure of a site into infinity, or below zero.
pub const MAX_ORDER_VALUE: f64 = 1e12;

/// What an order's reported value adds to revenue.
fn order_value(value: f64) -> f64 {
    if (0.0..=MAX_ORDER_VALUE).contains(&value) {
        value
    } else {
        0.0
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether the visit the trigger came in ended within [`LEFT_WITHIN`] of it (a visit the
/// browser never reported on, as when a timer fired after the tab was closed, ended before).
fn left_soon(visits: &[&Visit], session: &SessionId, at: Timestamp) -> bool {
    let last = visits
        .iter()
        .filter(|v| &v.session == session)
        .map(|v| v.last.as_millis())
        .max()
        .unwrap_or(i64::MIN);
    last <= at.as_millis().saturating_add(millis(LEFT_WITHIN))
}

/// Whether a later visit began within [`RETURN_WITHIN`] of the trigger.
fn came_back(visits: &[&Visit], session: &SessionId, at: Timestamp) -> bool {
    let until = at.as_millis().saturating_add(millis(RETURN_WITHIN));
    visits.iter().any(|v| {
        &v.session != session
            && v.first.as_millis() > at.as_millis()
            && v.first.as_millis() <= until
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Reaction, Visit};

    fn vid(n: u32) -> VisitorId {
        VisitorId::parse(&format!("v_{n:0>20}")).unwrap()
    }

    fn sid(n: u32) -> SessionId {
        SessionId::parse(&format!("s_{n:0>20}")).unwrap()
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_millis(1_000_000_000 + s * 1_000)
    }

    fn exposure(v: u32, rule: &str, arm: Arm, s: i64) -> Exposure {
        Exposure {
            visitor: vid(v),
            session: sid(v),
            rule: RuleId::parse(rule).unwrap(),
            arm,
            at: t(s),
        }
    }

    fn visit(v: u32, session: u32, first: i64, last: i64, bot: bool) -> Visit {
        Visit {
            visitor: vid(v),
            session: sid(session),
            first: t(first),
            last: t(last),
            bot,
        }
    }

    fn order(v: u32, s: i64, value: f64) -> Outcome {
        Outcome {
            visitor: vid(v),
            kind: OutcomeKind::Order { value },
            at: t(s),
        }
    }

    #[test]
    fn a_visitor_counts_once_from_the_first_trigger_with_what_followed_within_the_window() {
        let facts = Facts {
            exposures: vec![
                exposure(1, "offer", Arm::Treated, 10),
                exposure(1, "offer", Arm::Treated, 500),
                exposure(2, "offer", Arm::Holdout, 20),
                exposure(3, "offer", Arm::Treated, 30),
                exposure(4, "offer", Arm::Treated, 40),
            ],
            outcomes: vec![
                order(1, 5, 99.0),    // before the trigger: not this rule's
                order(1, 100, 30.0),  // within the window
                order(1, 4_000, 7.0), // past a one-hour window
                order(2, 25, 10.0),
            ],
            visits: vec![
                visit(1, 1, 0, 600, false),
                visit(2, 2, 0, 50, false),
                visit(2, 9, 1_000, 1_100, false),
                visit(3, 3, 0, 30, false),
                visit(4, 4, 0, 40, true),
            ],
            reactions: vec![
                Reaction {
                    visitor: vid(1),
                    rule: RuleId::parse("offer").unwrap(),
                    kind: ReactionKind::Shown,
                    at: t(11),
                },
                Reaction {
                    visitor: vid(1),
                    rule: RuleId::parse("other").unwrap(),
                    kind: ReactionKind::Dismissed,
                    at: t(12),
                },
            ],
            model_use: vec![],
        };
        let index = Index::new(&facts);
        let rule = RuleId::parse("offer").unwrap();
        let units = index.units(Some(&rule), &Goal::Order, Duration::from_secs(3_600));
        assert_eq!(units.len(), 3, "visitor 1 once, the bot not at all");
        let u1 = &units[0];
        assert_eq!((u1.at, u1.arm), (t(10), Arm::Treated));
        assert!(u1.converted);
        assert_eq!(u1.revenue, 30.0, "only the order within the window");
        assert!(!u1.left, "their visit went on for minutes");
        assert!(
            u1.shown && !u1.dismissed,
            "another rule's dismissal is not this one's"
        );
        let u2 = &units[1];
        assert_eq!(u2.arm, Arm::Holdout);
        assert!(u2.converted && u2.left && u2.returned);
        let u3 = &units[2];
        assert!(!u3.converted && u3.left && !u3.returned);
        assert_eq!(index.bot_count(), 1);

        // Every rule together: the first trigger of any, with any rule's reactions.
        let all = index.units(None, &Goal::Order, Duration::from_secs(3_600));
        assert_eq!(all.len(), 3);
        assert!(all[0].dismissed);
    }

    #[test]
    fn every_rule_together_reads_reactions_by_visitor_not_by_scanning_them_all() {
        // 20 000 triggered visitors, as after `beckon simulate --visitors 20000`, each with a
        // reaction: scanning every reaction for every visitor took 8 s in a release build (and
        // the dashboard's request waited for it); a lookup takes milliseconds.
        let n = 20_000;
        let mut facts = Facts::default();
        for v in 0..n {
            let arm = if v % 10 == 0 {
                Arm::Holdout
            } else {
                Arm::Treated
            };
            facts
                .exposures
                .push(exposure(v, "offer", arm, i64::from(v)));
            facts.reactions.push(Reaction {
                visitor: vid(v),
                rule: RuleId::parse("offer").unwrap(),
                kind: if v % 2 == 0 {
                    ReactionKind::Shown
                } else {
                    ReactionKind::Dismissed
                },
                at: t(i64::from(v)),
            });
        }
        let index = Index::new(&facts);
        let started = std::time::Instant::now();
        let all = index.units(None, &Goal::Order, Duration::from_secs(3_600));
        let took = started.elapsed();
        assert_eq!(all.len(), n as usize);
        assert_eq!(all.iter().filter(|u| u.shown).count(), n as usize / 2);
        assert_eq!(all.iter().filter(|u| u.dismissed).count(), n as usize / 2);
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }

    #[test]
    fn an_order_value_out_of_bounds_converts_but_adds_no_revenue() {
        // Order values are whatever the page sent: two of 1e308 summed to infinity, which
        // reached the API as `"revenue": null` and the CSV as `inf`; a negative one took
        // revenue below what was sold.
        let facts = Facts {
            exposures: vec![
                exposure(1, "offer", Arm::Treated, 10),
                exposure(2, "offer", Arm::Treated, 20),
            ],
            outcomes: vec![
                order(1, 11, 1e308),
                order(1, 12, 1e308),
                order(1, 13, 25.0),
                order(2, 21, -500.0),
                order(2, 22, f64::NAN),
                order(2, 23, MAX_ORDER_VALUE),
            ],
            ..Facts::default()
        };
        let index = Index::new(&facts);
        let rule = RuleId::parse("offer").unwrap();
        let units = index.units(Some(&rule), &Goal::Order, Duration::from_secs(3_600));
        assert!(units.iter().all(|u| u.converted));
        assert_eq!(units[0].revenue, 25.0);
        assert_eq!(units[1].revenue, MAX_ORDER_VALUE);
    }

    #[test]
    fn goals_count_only_their_own_outcome() {
        let lead = OutcomeKind::Lead;
        let trial = OutcomeKind::Event("trial_started".into());
        assert!(counts(&Goal::Lead, &lead));
        assert!(!counts(&Goal::Order, &lead));
        assert!(counts(&Goal::Event("trial_started".into()), &trial));
        assert!(!counts(&Goal::Event("other".into()), &trial));
        assert!(counts(&Goal::Order, &OutcomeKind::Order { value: 0.0 }));
    }
}
