//! The analysis of a site over a period: per rule and overall, both arms' figures, the lift
//! with its intervals, the sample-ratio check, the cost in annoyance, the flags, and lift over
//! time. Everything is computed from [`Facts`]; nothing here reads a clock or a store.

use std::time::Duration;

use beckon_engine::rules::Goal;
use beckon_engine::session::Arm;
use beckon_engine::{RuleId, Timestamp};

use crate::attribution::{Index, Unit};
use crate::cost::{Cost, cost};
use crate::facts::Facts;
use crate::lift::{Lift, Unanswered, relative_lift, unanswered};
use crate::moments::Moments;
use crate::sequential::{DEFAULT_TUNING, sequential_lift};
use crate::settings::Settings;
use crate::srm::{SRM_THRESHOLD, srm_p_value};

/// The level of every interval: 95%.
pub const ALPHA: f64 = 0.05;
/// The fewest points lift over time is drawn with, and the most.
const MAX_POINTS: i64 = 60;

/// A rule to analyse: its id and what counts as its conversion.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleGoal {
    /// The rule.
    pub rule: RuleId,
    /// Its goal.
    pub goal: Goal,
}

/// One arm's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArmFigures {
    /// Visitors triggered.
    pub triggered: u64,
    /// Of them, converted within the window.
    pub converted: u64,
    /// Their revenue within the window.
    pub revenue: f64,
    /// Of them, left within a minute of the trigger.
    pub left: u64,
    /// Of them, came back within 30 days (so far).
    pub returned: u64,
    /// Of them, reported the intervention shown.
    pub shown: u64,
    /// Dismissed it.
    pub dismissed: u64,
    /// Engaged with it.
    pub engaged: u64,
    conversion: Moments,
    revenue_moments: Moments,
    left_moments: Moments,
    returned_moments: Moments,
}

impl ArmFigures {
    fn add(&mut self, u: &Unit) {
        self.triggered += 1;
        self.converted += u64::from(u.converted);
        self.revenue += u.revenue;
        self.left += u64::from(u.left);
        self.returned += u64::from(u.returned);
        self.shown += u64::from(u.shown);
        self.dismissed += u64::from(u.dismissed);
        self.engaged += u64::from(u.engaged);
        self.conversion = Moments::proportion(self.triggered, self.converted);
        self.left_moments = Moments::proportion(self.triggered, self.left);
        self.returned_moments = Moments::proportion(self.triggered, self.returned);
        self.revenue_moments.add(u.revenue);
    }

    /// Conversion rate.
    pub fn conversion_rate(&self) -> Option<f64> {
        ratio(self.converted as f64, self.triggered)
    }

    /// Revenue per triggered visitor.
    pub fn revenue_per_visitor(&self) -> Option<f64> {
        ratio(self.revenue, self.triggered)
    }

    /// Share that left within a minute.
    pub fn left_rate(&self) -> Option<f64> {
        ratio(self.left as f64, self.triggered)
    }

    /// Share that came back.
    pub fn return_rate(&self) -> Option<f64> {
        ratio(self.returned as f64, self.triggered)
    }

    /// Dismissals per intervention shown.
    pub fn dismissal_rate(&self) -> Option<f64> {
        ratio(self.dismissed as f64, self.shown)
    }
}

fn ratio(x: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| x / n as f64)
}

/// The treated arm against the holdout on one metric.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// The fixed-horizon relative lift, its 95% interval and p-value.
    pub lift: Option<Lift>,
    /// The always-valid (sequential) interval, for people who look every day.
    pub sequential: Option<Lift>,
    /// Why there is no lift, when there is none.
    pub unanswered: Option<Unanswered>,
}

fn compare(holdout: &Moments, treated: &Moments) -> Comparison {
    let lift = relative_lift(holdout, treated, ALPHA);
    Comparison {
        unanswered: lift
            .is_none()
            .then(|| unanswered(holdout, treated))
            .flatten(),
        lift,
        sequential: sequential_lift(holdout, treated, ALPHA, DEFAULT_TUNING),
    }
}

/// Why a rule needs a look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// The arms' sizes differ from the holdout share beyond chance (p < 0.001): the split or
    /// the logging is broken, and no other number of the rule can be trusted.
    SampleRatioMismatch,
    /// Its lift is negative beyond its always-valid interval.
    Harmful,
    /// Treated visitors leave within a minute of the trigger more than held-out ones, beyond
    /// the always-valid interval.
    LeavesSooner,
    /// Treated visitors come back less, beyond the always-valid interval.
    ReturnsLess,
}

impl Flag {
    /// The flag's name, as the API says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::SampleRatioMismatch => "sample_ratio_mismatch",
            Flag::Harmful => "harmful",
            Flag::LeavesSooner => "leaves_sooner",
            Flag::ReturnsLess => "returns_less",
        }
    }

    /// Whether a live rule with this flag is paused where the site asks for it: harm to
    /// visitors, not a broken split.
    pub fn pauses(self) -> bool {
        !matches!(self, Flag::SampleRatioMismatch)
    }
}

/// Lift as it stood at one instant (everyone triggered before it).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The instant.
    pub until: Timestamp,
    /// Visitors triggered by then, both arms.
    pub triggered: u64,
    /// The conversion lift by then.
    pub lift: Option<Lift>,
    /// Its always-valid interval by then.
    pub sequential: Option<Lift>,
}

/// The analysis of one rule, or of every rule together.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// The rule; `None` for every rule together (conversion: an order).
    pub rule: Option<RuleId>,
    /// What counts as a conversion.
    pub goal: Goal,
    /// Treated visitors' figures.
    pub treated: ArmFigures,
    /// Held-out visitors' figures.
    pub holdout: ArmFigures,
    /// Conversion rate, treated against held out.
    pub conversion: Comparison,
    /// Revenue per triggered visitor.
    pub revenue: Comparison,
    /// Leaving within a minute of the trigger.
    pub left: Comparison,
    /// Coming back within 30 days.
    pub returned: Comparison,
    /// The sample-ratio check's p-value.
    pub srm_p_value: Option<f64>,
    /// What needs a look.
    pub flags: Vec<Flag>,
    /// Lift over time.
    pub series: Vec<Point>,
}

/// The whole analysis of a site over a period.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The period's start.
    pub from: Timestamp,
    /// Its end.
    pub to: Timestamp,
    /// The step of the series.
    pub step: Duration,
    /// Every rule together.
    pub overall: Analysis,
    /// Each rule, in the order given.
    pub rules: Vec<Analysis>,
    /// What the model cost.
    pub cost: Cost,
    /// Automated visitors left out of every number.
    pub bots_excluded: u64,
}

/// What the analysis needs besides the facts.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The rules to analyse.
    pub rules: &'a [RuleGoal],
    /// The period's start.
    pub from: Timestamp,
    /// Its end.
    pub to: Timestamp,
    /// Now (the series stops here).
    pub now: Timestamp,
    /// The site's settings.
    pub settings: &'a Settings,
    /// The holdout's share of visitors, 0–1.
    pub holdout_share: f64,
}

/// Analyses `facts`.
pub fn analyse(facts: &Facts, inputs: &Inputs<'_>) -> Report {
    let index = Index::new(facts);
    let window = inputs.settings.window;
    let everyone = index.units(None, &Goal::Order, window);
    // The series runs from the first trigger of the period, not from its start: an hour of
    // traffic in a 30-day period is drawn over that hour, in steps of minutes.
    let end = inputs.to.min(inputs.now).max(inputs.from);
    let first_model_use = facts
        .model_use
        .iter()
        .map(|m| m.at)
        .filter(|&t| t >= inputs.from)
        .min();
    let begin = everyone
        .first()
        .map(|u| u.at)
        .into_iter()
        .chain(first_model_use)
        .min()
        .map_or(inputs.from, |t| t.max(inputs.from))
        .min(end);
    let step = step_of(begin, end);
    let series = Series {
        begin: floor(begin, step).max(inputs.from),
        end,
        step,
    };
    let analysis = |rule: Option<&RuleId>, goal: &Goal| {
        let units = index.units(rule, goal, window);
        analyse_units(rule.cloned(), goal.clone(), &units, inputs, series)
    };
    let overall = analyse_units(None, Goal::Order, &everyone, inputs, series);
    let rules = inputs
        .rules
        .iter()
        .map(|r| analysis(Some(&r.rule), &r.goal))
        .collect();
    let cost = cost(facts, &index, &overall, inputs, series);
    Report {
        from: inputs.from,
        to: inputs.to,
        step,
        overall,
        rules,
        cost,
        bots_excluded: index.bot_count() as u64,
    }
}

/// Where a series' points fall: every `step` from `begin`, and at `end`.
#[derive(Clone, Copy)]
pub(crate) struct Series {
    pub begin: Timestamp,
    pub end: Timestamp,
    pub step: Duration,
}

/// `at`, rounded down to a whole `step` (of the Unix epoch: whole minutes, hours, days).
fn floor(at: Timestamp, step: Duration) -> Timestamp {
    let step = millis(step).max(1);
    Timestamp::from_millis(at.as_millis().div_euclid(step) * step)
}

fn analyse_units(
    rule: Option<RuleId>,
    goal: Goal,
    units: &[Unit],
    inputs: &Inputs<'_>,
    grid: Series,
) -> Analysis {
    let step = grid.step;
    let mut treated = ArmFigures::default();
    let mut holdout = ArmFigures::default();
    let mut series = Vec::new();
    let mut next = grid.begin.as_millis().saturating_add(millis(step));
    let end = grid.end.as_millis();
    let mut point = |until: i64, t: &ArmFigures, h: &ArmFigures| {
        series.push(Point {
            until: Timestamp::from_millis(until),
            triggered: t.triggered + h.triggered,
            lift: relative_lift(&h.conversion, &t.conversion, ALPHA),
            sequential: sequential_lift(&h.conversion, &t.conversion, ALPHA, DEFAULT_TUNING),
        })
    };
    for u in units {
        while u.at.as_millis() >= next && next < end {
            point(next, &treated, &holdout);
            next = next.saturating_add(millis(step));
        }
        match u.arm {
            Arm::Treated => treated.add(u),
            Arm::Holdout => holdout.add(u),
        }
    }
    while next < end {
        point(next, &treated, &holdout);
        next = next.saturating_add(millis(step));
    }
    if end > grid.begin.as_millis() {
        point(end, &treated, &holdout);
    }
    let conversion = compare(&holdout.conversion, &treated.conversion);
    let revenue = compare(&holdout.revenue_moments, &treated.revenue_moments);
    let left = compare(&holdout.left_moments, &treated.left_moments);
    let returned = compare(&holdout.returned_moments, &treated.returned_moments);
    let share = inputs.holdout_share.clamp(0.0, 1.0);
    let srm_p_value = (share > 0.0 && share < 1.0 && treated.triggered + holdout.triggered > 0)
        .then(|| {
            srm_p_value(
                &[holdout.triggered, treated.triggered],
                &[share, 1.0 - share],
            )
        })
        .flatten();
    let mut analysis = Analysis {
        rule,
        goal,
        treated,
        holdout,
        conversion,
        revenue,
        left,
        returned,
        srm_p_value,
        flags: Vec::new(),
        series,
    };
    analysis.flags = flags(&analysis, inputs.settings.min_sample);
    analysis
}

/// The flags an analysis raises. The sample-ratio check stands at any sample; the others need
/// `min_sample` visitors in each arm and use the always-valid interval, since the dashboard
/// and the automatic pause look at every moment, not once at a planned end.
pub fn flags(a: &Analysis, min_sample: u64) -> Vec<Flag> {
    let mut flags = Vec::new();
    if a.srm_p_value.is_some_and(|p| p < SRM_THRESHOLD) {
        flags.push(Flag::SampleRatioMismatch);
    }
    if a.treated.triggered.min(a.holdout.triggered) < min_sample {
        return flags;
    }
    let below = |c: &Comparison| c.sequential.as_ref().is_some_and(|l| l.ci_high < 0.0);
    let above = |c: &Comparison| c.sequential.as_ref().is_some_and(|l| l.ci_low > 0.0);
    if below(&a.conversion) {
        flags.push(Flag::Harmful);
    }
    if above(&a.left) {
        flags.push(Flag::LeavesSooner);
    }
    if below(&a.returned) {
        flags.push(Flag::ReturnsLess);
    }
    flags
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The step of the series: a minute, ten minutes, an hour or a day (or a multiple of a day, so that a
/// long period keeps at most [`MAX_POINTS`] points).
pub fn step_of(from: Timestamp, to: Timestamp) -> Duration {
    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    let span = to.as_millis().saturating_sub(from.as_millis()).max(0);
    let step = if span <= HOUR {
        MINUTE
    } else if span <= 6 * HOUR {
        10 * MINUTE
    } else if span <= 3 * DAY {
        HOUR
    } else {
        DAY * (span / DAY / MAX_POINTS + 1)
    };
    Duration::from_millis(step as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Exposure, Outcome, OutcomeKind, Visit};
    use beckon_engine::{SessionId, VisitorId};

    const T0: i64 = 1_700_000_000_000;

    /// `n` triggered visitors per arm, `k` of whom converted, spread over an hour.
    fn facts(arms: [(u32, u32); 2]) -> Facts {
        let mut f = Facts::default();
        let mut v = 0;
        for (arm, (n, k)) in [Arm::Holdout, Arm::Treated].into_iter().zip(arms) {
            for i in 0..n {
                v += 1;
                let visitor = VisitorId::parse(&format!("v_{v:0>20}")).unwrap();
                let session = SessionId::parse(&format!("s_{v:0>20}")).unwrap();
                let at = Timestamp::from_millis(T0 + i64::from(v) * 1_000);
                f.exposures.push(Exposure {
                    visitor: visitor.clone(),
                    session: session.clone(),
                    rule: RuleId::parse("offer").unwrap(),
                    arm,
                    at,
                });
                f.visits.push(Visit {
                    visitor: visitor.clone(),
                    session,
                    first: at,
                    last: Timestamp::from_millis(at.as_millis() + 120_000),
                    bot: false,
                });
                if i < k {
                    f.outcomes.push(Outcome {
                        visitor,
                        kind: OutcomeKind::Order { value: 50.0 },
                        at: Timestamp::from_millis(at.as_millis() + 60_000),
                    });
                }
            }
        }
        f.exposures.sort_by_key(|e| e.at);
        f
    }

    fn run(f: &Facts, settings: &Settings, share: f64) -> Report {
        let rules = [RuleGoal {
            rule: RuleId::parse("offer").unwrap(),
            goal: Goal::Order,
        }];
        analyse(
            f,
            &Inputs {
                rules: &rules,
                from: Timestamp::from_millis(T0),
                to: Timestamp::from_millis(T0 + 7_200_000),
                now: Timestamp::from_millis(T0 + 7_200_000),
                settings,
                holdout_share: share,
            },
        )
    }

    #[test]
    fn both_arms_are_counted_and_compared_on_the_same_trigger() {
        let f = facts([(100, 10), (900, 180)]);
        let r = run(&f, &Settings::default(), 0.1);
        let a = &r.rules[0];
        assert_eq!((a.holdout.triggered, a.holdout.converted), (100, 10));
        assert_eq!((a.treated.triggered, a.treated.converted), (900, 180));
        assert_eq!(a.treated.revenue, 180.0 * 50.0);
        let lift = a.conversion.lift.as_ref().expect("a lift");
        assert!(
            (lift.relative - 1.0).abs() < 1e-12,
            "20% against 10%: +100%"
        );
        assert!(lift.ci_low < lift.relative && lift.relative < lift.ci_high);
        let seq = a
            .conversion
            .sequential
            .as_ref()
            .expect("a sequential interval");
        assert!(
            seq.ci_low <= lift.ci_low && seq.ci_high >= lift.ci_high,
            "always-valid is wider"
        );
        assert!(a.srm_p_value.unwrap() > 0.5, "exactly the expected split");
        assert!(a.flags.is_empty(), "{:?}", a.flags);
        assert_eq!(r.overall.treated.triggered, 900);
        let last = a.series.last().unwrap();
        assert_eq!(last.triggered, 1_000);
        assert_eq!(
            last.lift, a.conversion.lift,
            "the series ends where the totals are"
        );
        assert!(a.series.windows(2).all(|w| w[0].until < w[1].until));
    }

    #[test]
    fn a_broken_split_and_a_harmful_rule_are_flagged() {
        // Half held out where a tenth should be.
        let f = facts([(500, 50), (500, 50)]);
        let r = run(&f, &Settings::default(), 0.1);
        assert_eq!(r.rules[0].flags, vec![Flag::SampleRatioMismatch]);

        let f = facts([(400, 120), (3_600, 180)]);
        let r = run(&f, &Settings::default(), 0.1);
        assert!(r.rules[0].flags.contains(&Flag::Harmful), "30% against 5%");
        let small = Settings {
            min_sample: 1_000,
            ..Settings::default()
        };
        let r = run(&f, &small, 0.1);
        assert!(r.rules[0].flags.is_empty(), "not before the minimum sample");
    }

    #[test]
    fn the_series_step_follows_the_period() {
        let at = |h: i64| Timestamp::from_millis(T0 + h * 3_600_000);
        assert_eq!(step_of(at(0), at(1)), Duration::from_secs(60));
        assert_eq!(step_of(at(0), at(2)), Duration::from_secs(600));
        assert_eq!(step_of(at(0), at(48)), Duration::from_secs(3_600));
        assert_eq!(step_of(at(0), at(24 * 30)), Duration::from_secs(86_400));
        assert_eq!(
            step_of(at(0), at(24 * 365)),
            Duration::from_secs(7 * 86_400)
        );
    }
}
