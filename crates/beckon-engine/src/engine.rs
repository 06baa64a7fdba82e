//! The decision: given a session, its visitor's profile, an event and the time, fire a rule,
//! log a ghost exposure, or do nothing — and say when to look again.

use chrono_tz::Tz;

use crate::event::Event;
use crate::hash::in_share;
use crate::ids::{SiteId, VisitorId};
use crate::policy::{Policy, PolicyError};
use crate::profile::Profile;
use crate::rules::eval::{Ctx, earliest};
use crate::rules::{Message, Rule, RuleSet, Status};
use crate::session::{Arm, Session, SessionStart};
use crate::time::{Timestamp, duration_ms};
use crate::trace::{RuleTrace, Suppression, Trace, Verdict};

/// A site's decision engine: its policy and its rules. Immutable; to change rules, build a new
/// engine and swap it in. Sessions keep their state across the swap.
#[derive(Clone, Debug)]
pub struct Engine {
    site: SiteId,
    policy: Policy,
    rules: RuleSet,
    holdout_seed: String,
    holdout_bp: u32,
    rollout_seeds: Vec<String>,
}

/// What the engine decided.
#[derive(Clone, Debug)]
pub struct Decision<'e> {
    /// Fire, ghost, or nothing.
    pub outcome: Outcome<'e>,
    /// The next instant at which something could change without an event: the server wakes the
    /// session then with [`Event::Tick`]. `None`: only an event can change anything.
    pub next_wake: Option<Timestamp>,
}

/// The outcome of a decision.
#[derive(Clone, Debug)]
pub enum Outcome<'e> {
    /// Nothing fires. `held` names the guardrail that held every rule back, if one did.
    Nothing {
        /// The guardrail, if one held everything back.
        held: Option<Suppression>,
    },
    /// Show this rule's message.
    Fire {
        /// The rule.
        rule: &'e Rule,
        /// Its message in the visitor's language.
        message: &'e Message,
    },
    /// The visitor is held out: show nothing, log a ghost exposure of this rule.
    Ghost {
        /// The rule that would have fired.
        rule: &'e Rule,
    },
}

impl Outcome<'_> {
    /// The rule that fired or would have fired.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Outcome::Fire { rule, .. } | Outcome::Ghost { rule } => Some(rule),
            Outcome::Nothing { .. } => None,
        }
    }

    /// Whether the visitor is shown something.
    pub fn is_visible(&self) -> bool {
        matches!(self, Outcome::Fire { .. })
    }
}

/// How long a guardrail holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Until {
    /// For the rest of the session.
    Session,
    /// Until some event lifts it.
    Event,
    /// Until the visit shows a person: the rules are tried, so that their delays count from
    /// when their conditions began to hold, but none is ready, and nothing wakes the visit.
    Person,
    /// Until an instant.
    At(Timestamp),
}

impl Engine {
    /// An engine for `site` with `policy` and `rules`.
    pub fn new(site: SiteId, policy: Policy, rules: RuleSet) -> Result<Engine, PolicyError> {
        policy.validate()?;
        if rules.timezone() != Engine::timezone(&policy) {
            // Dates in schedules and conditions were read in another zone than the site's.
            return Err(PolicyError {
                field: "timezone",
                reason: format!(
                    "the rules were compiled for {} but the site's time zone is {}",
                    rules.timezone(),
                    policy.timezone
                ),
            });
        }
        Ok(Engine {
            holdout_seed: format!("beckon-holdout:{site}:{}", policy.holdout_salt),
            holdout_bp: policy.holdout_basis_points(),
            rollout_seeds: rules
                .iter()
                .map(|r| format!("beckon-rollout:{site}:{}", r.id))
                .collect(),
            site,
            policy,
            rules,
        })
    }

    /// The site's time zone, for compiling rules.
    pub fn timezone(policy: &Policy) -> Tz {
        policy.timezone.parse().unwrap_or(Tz::UTC)
    }

    /// The site.
    pub fn site(&self) -> &SiteId {
        &self.site
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The visitor's holdout arm: GrowthBook's version-2 hash of the seed
    /// `beckon-holdout:{site}:{salt}` and the visitor id, below the holdout share → held out.
    /// The same visitor lands in the same arm on every node and after every restart.
    pub fn arm(&self, visitor: &VisitorId) -> Arm {
        if in_share(&self.holdout_seed, visitor.as_str(), self.holdout_bp) {
            Arm::Holdout
        } else {
            Arm::Treated
        }
    }

    /// Starts a visit: counts it in the profile and fixes the arm.
    pub fn start_session(
        &self,
        visitor: VisitorId,
        start: SessionStart,
        profile: &mut Profile,
        now: Timestamp,
    ) -> Session {
        let arm = self.arm(&visitor);
        Session::start(visitor, arm, start, profile, now)
    }

    /// Whether a session starting at `now` would continue the visitor's current visit: their
    /// last activity is within the policy's visit gap.
    pub fn same_visit(&self, profile: &Profile, now: Timestamp) -> bool {
        profile
            .last_active
            .is_some_and(|t| now.ms_since(t) < duration_ms(self.policy.visit_gap))
    }

    /// Records, in the profile alone, an event that arrives for a visitor with no live visit
    /// (the merchant's backend reporting an order after the visitor left): a conversion still
    /// keeps the visitor quiet next time, traits are still kept. Nothing is decided: there is
    /// no page to show anything on.
    pub fn record_without_visit(&self, profile: &mut Profile, event: &Event, now: Timestamp) {
        match event {
            Event::Conversion { .. } => {
                profile.conversions = profile.conversions.saturating_add(1);
                profile.last_conversion = Some(now);
            }
            Event::Identify { traits } => {
                for (k, v) in traits {
                    crate::profile::set_attr(&mut profile.traits, k, v);
                }
            }
            _ => {}
        }
    }

    /// Applies `event` at `now` and decides. When a rule fires (or would have, for a held-out
    /// visitor) the session and profile record it, so the caps hold without the caller doing
    /// anything.
    pub fn decide<'e>(
        &'e self,
        session: &mut Session,
        profile: &mut Profile,
        event: &Event,
        now: Timestamp,
    ) -> Decision<'e> {
        self.run(session, profile, event, now, &mut NoTrace)
    }

    /// The same as [`Engine::decide`], with the explanation of every rule's verdict.
    pub fn explain<'e>(
        &'e self,
        session: &mut Session,
        profile: &mut Profile,
        event: &Event,
        now: Timestamp,
    ) -> (Decision<'e>, Trace) {
        let mut trace = Trace {
            at: now,
            event: event.name(),
            held: None,
            rules: Vec::with_capacity(self.rules.len()),
        };
        let decision = self.run(session, profile, event, now, &mut trace);
        (decision, trace)
    }

    fn run<'e, R: Recorder>(
        &'e self,
        s: &mut Session,
        p: &mut Profile,
        event: &Event,
        now: Timestamp,
        rec: &mut R,
    ) -> Decision<'e> {
        s.apply(event, p, &self.policy, now);
        let guard = self.guard(s, p, now);
        if let Some((why, _)) = &guard {
            rec.held(why);
        }
        let guard_until = match &guard {
            None => None,
            Some((why, Until::Session | Until::Event)) => {
                // Nothing can fire before an event; the delays restart once the guard lifts,
                // since nobody watched the conditions hold in between.
                s.holding.clear();
                if R::ENABLED {
                    self.explain_all(s, p, event, now, why, rec);
                }
                return Decision {
                    outcome: Outcome::Nothing {
                        held: Some(why.clone()),
                    },
                    next_wake: None,
                };
            }
            Some((_, Until::At(t))) => Some(*t),
            Some((_, Until::Person)) => None,
        };
        let gated = matches!(guard, Some((_, Until::Person)));

        let mut winner: Option<&Rule> = None;
        // The earliest instant after `now` at which something could change on its own.
        let mut wake: Option<Timestamp> = None;
        let mut wake_at = |t: Option<Timestamp>| {
            wake = earliest(wake, t.filter(|t| *t > now));
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.status() != Status::Live {
                rec.rule(rule, || Verdict::NotLive {
                    status: rule.status(),
                });
                continue;
            }
            if !in_scope(rule, s) {
                s.stop_holding(rule.key);
                rec.rule(rule, || Verdict::OutOfScope {
                    page_type: s.page.page_type,
                });
                continue;
            }
            if let Some(schedule) = &rule.schedule {
                let w = schedule.window(now);
                if !w.open {
                    s.stop_holding(rule.key);
                    wake_at(w.changes_at);
                    rec.rule(rule, || Verdict::OutsideSchedule {
                        until: w.changes_at,
                    });
                    continue;
                }
            }
            let truth = {
                let cx = Ctx {
                    session: s,
                    profile: p,
                    event,
                    now,
                };
                let t = rule.when.eval(&cx);
                if !t.holds {
                    rec.rule(rule, || Verdict::ConditionFailed {
                        why: rule.when.explain(&cx),
                    });
                }
                t
            };
            wake_at(truth.changes_at);
            if !truth.holds {
                s.stop_holding(rule.key);
                continue;
            }
            let since = s.holding_since(rule.key, now);
            let history = p.rule(&rule.id);
            if let (Some(max), Some(h)) = (rule.spec().max_per_visitor, history) {
                if h.count >= max {
                    rec.rule(rule, || Verdict::LifetimeCap { count: h.count });
                    continue;
                }
            }
            if rule.rollout_bp < 10_000
                && !in_share(&self.rollout_seeds[i], s.visitor.as_str(), rule.rollout_bp)
            {
                rec.rule(rule, || Verdict::NotInRollout);
                continue;
            }
            let delay_over = since.plus_ms(rule.delay_ms);
            let repeat_over = match (rule.repeat_ms, history) {
                (Some(ms), Some(h)) => Some(h.last_fired.plus_ms(ms)),
                _ => None,
            };
            let ready_at = [Some(delay_over), repeat_over, guard_until]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(now);
            if gated || ready_at > now {
                if !gated {
                    wake_at(Some(ready_at));
                }
                rec.rule(rule, || match (&guard, repeat_over) {
                    (Some((by, _)), _) => Verdict::Held { by: by.clone() },
                    (None, Some(until)) if until > now => Verdict::RepeatCycle { until },
                    _ => Verdict::Waiting { until: delay_over },
                });
                continue;
            }
            match winner {
                None => {
                    winner = Some(rule);
                    rec.rule(rule, || match s.arm {
                        Arm::Treated => Verdict::Fired,
                        Arm::Holdout => Verdict::Ghost,
                    });
                    // The loop goes on over the lower rules: their delays must be kept up
                    // to date, and an explanation names them outranked.
                }
                Some(w) => rec.rule(rule, || Verdict::Outranked { by: w.id.clone() }),
            }
        }

        let Some(rule) = winner else {
            return Decision {
                outcome: Outcome::Nothing {
                    held: guard.map(|(why, _)| why),
                },
                // Only an event lifts the wait for a person: no timer for a visit no one is at.
                next_wake: wake.filter(|_| !gated),
            };
        };
        s.record_fire(&rule.id, rule.key, p, now);
        let outcome = match s.arm {
            Arm::Treated => Outcome::Fire {
                rule,
                message: rule.message_for(s.language.as_deref()),
            },
            Arm::Holdout => Outcome::Ghost { rule },
        };
        // The intervention now on screen holds everything back until an event closes it.
        Decision {
            outcome,
            next_wake: None,
        }
    }

    /// The first guardrail that holds every rule back, and until when. Timed guardrails that
    /// hold at once are merged: the latest end wins, since all must have lifted.
    fn guard(&self, s: &Session, p: &Profile, now: Timestamp) -> Option<(Suppression, Until)> {
        let pol = &self.policy;
        if s.bot {
            return Some((Suppression::Bot, Until::Session));
        }
        if !s.interacted {
            return Some((Suppression::NoInteraction, Until::Person));
        }
        if s.converted_at.is_some() {
            return Some((Suppression::Converted, Until::Session));
        }
        if s.fired >= pol.max_per_session {
            return Some((
                Suppression::SessionCap {
                    max: pol.max_per_session,
                },
                Until::Session,
            ));
        }
        if s.chat_open {
            return Some((Suppression::ChatOpen, Until::Event));
        }
        if s.conversation_active {
            return Some((Suppression::ConversationActive, Until::Event));
        }
        if s.intervention_open {
            return Some((Suppression::InterventionOpen, Until::Event));
        }
        if self.quiet_page(s) {
            return Some((Suppression::QuietPage, Until::Event));
        }

        let mut held: Option<(Suppression, Timestamp)> = None;
        let mut hold = |why: Suppression, until: Timestamp| {
            if until > now {
                held = match held.take() {
                    None => Some((why, until)),
                    Some((first, t)) => Some((first, t.max(until))),
                };
            }
        };
        if let Some(last) = p.last_conversion {
            let until = last.plus(pol.quiet_after_conversion);
            hold(Suppression::ConvertedRecently { until }, until);
        }
        if let Some(until) = p.silenced_until {
            hold(Suppression::Silenced { until }, until);
        }
        match p.daily_cap(now, pol.max_per_visitor_day) {
            None => {}
            Some(Some(until)) => hold(
                Suppression::DailyCap {
                    max: pol.max_per_visitor_day,
                    until,
                },
                until,
            ),
            Some(None) => {
                return Some((
                    Suppression::DailyCap {
                        max: 0,
                        until: Timestamp::from_millis(i64::MAX),
                    },
                    Until::Session,
                ));
            }
        }
        if let Some(last) = p.last_dismissal() {
            let until = last.plus(pol.dismiss_cooldown);
            hold(Suppression::Cooldown { until }, until);
        }
        if s.cart_items() == 0 && !s.page.exit_intent {
            let until = s.started_at.plus_ms(duration_ms(pol.arrival_grace));
            hold(Suppression::ArrivalGrace { until }, until);
        }
        held.map(|(why, until)| (why, Until::At(until)))
    }

    fn quiet_page(&self, s: &Session) -> bool {
        s.page
            .page_type
            .is_some_and(|t| self.policy.quiet_page_types.contains(&t))
            || self
                .policy
                .quiet_paths
                .iter()
                .any(|prefix| under_path(&s.page.path, prefix))
    }

    /// For explanations when a guardrail stops everything: each rule's conditions, read-only.
    fn explain_all<R: Recorder>(
        &self,
        s: &Session,
        p: &Profile,
        event: &Event,
        now: Timestamp,
        why: &Suppression,
        rec: &mut R,
    ) {
        let cx = Ctx {
            session: s,
            profile: p,
            event,
            now,
        };
        for rule in self.rules.iter() {
            rec.rule(rule, || {
                if rule.status() != Status::Live {
                    Verdict::NotLive {
                        status: rule.status(),
                    }
                } else if !in_scope(rule, s) {
                    Verdict::OutOfScope {
                        page_type: s.page.page_type,
                    }
                } else if let Some(w) = rule
                    .schedule
                    .as_ref()
                    .map(|sch| sch.window(now))
                    .filter(|w| !w.open)
                {
                    Verdict::OutsideSchedule {
                        until: w.changes_at,
                    }
                } else if rule.when.eval(&cx).holds {
                    Verdict::Held { by: why.clone() }
                } else {
                    Verdict::ConditionFailed {
                        why: rule.when.explain(&cx),
                    }
                }
            });
        }
    }
}

/// Whether the rule applies to the session's current page type.
fn in_scope(rule: &Rule, s: &Session) -> bool {
    rule.pages.is_empty() || s.page.page_type.is_some_and(|t| rule.pages.contains(t))
}

/// Whether `path` is `prefix` or below it: "/account" covers "/account/orders" but not
/// "/accounting-guide".
fn under_path(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

/// Where verdicts go: nowhere on the hot path, into a [`Trace`] when explaining. Being a type
/// parameter, the no-op version compiles away entirely.
trait Recorder {
    const ENABLED: bool;
    fn held(&mut self, why: &Suppression);
    fn rule(&mut self, rule: &Rule, verdict: impl FnOnce() -> Verdict);
}

struct NoTrace;

impl Recorder for NoTrace {
    const ENABLED: bool = false;
    fn held(&mut self, _: &Suppression) {}
    fn rule(&mut self, _: &Rule, _: impl FnOnce() -> Verdict) {}
}

impl Recorder for Trace {
    const ENABLED: bool = true;
    fn held(&mut self, why: &Suppression) {
        self.held = Some(why.clone());
    }
    fn rule(&mut self, rule: &Rule, verdict: impl FnOnce() -> Verdict) {
        self.rules.push(RuleTrace {
            rule: rule.id.clone(),
            verdict: verdict(),
        });
    }
}
