//! Analytics, as the dashboard and the API see them: a site's report over a period (each
//! rule's and every rule's lift against the holdout, the sample-ratio check, the cost in
//! annoyance and in model use), its CSV, and the site's analytics settings. The numbers are
//! `beckon-stats`'; this module picks the period, gathers the facts and shapes the views.

use std::time::Duration;

use beckon_engine::rules::{Goal, RuleSpec};
use beckon_engine::{RuleId, Timestamp};
use beckon_stats::cost::Cost;
use beckon_stats::lift::{Lift, Unanswered};
use beckon_stats::report::{self, Analysis, ArmFigures, Comparison, Inputs, Report, RuleGoal};
use beckon_stats::settings::{RETURN_WITHIN, Settings};
use beckon_store::analytics::Period;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::auth::Actor;
use crate::clock::now;
use crate::error::{AdminError, AdminResult};
use crate::manage::rfc3339;
use crate::manage::rules::current;

const DAY_MS: i64 = 86_400_000;
/// The longest period one report covers.
pub const MAX_DAYS: i64 = 3_650;

/// Which period to analyse: the last `days` days, or from one date to another (UTC, both
/// included).
#[derive(Clone, Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// The last this many days (1–3650; 30 by default).
    #[param(minimum = 1, maximum = 3650)]
    pub days: Option<u32>,
    /// The first day (`YYYY-MM-DD`, UTC); with `to`, instead of `days`.
    pub from: Option<String>,
    /// The last day (`YYYY-MM-DD`, UTC), included.
    pub to: Option<String>,
}

impl PeriodQuery {
    /// The period asked for, at `now`.
    pub fn period(&self, now: Timestamp) -> AdminResult<Period> {
        let day = |field: &str, s: &str| -> AdminResult<i64> {
            let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                AdminError::field(field, format!("{s:?} is not a date (YYYY-MM-DD)"))
            })?;
            let start = d
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis());
            start.ok_or_else(|| AdminError::field(field, format!("{s:?} is out of range")))
        };
        match (&self.from, &self.to, self.days) {
            (None, None, days) => {
                let days = i64::from(days.unwrap_or(30));
                if !(1..=MAX_DAYS).contains(&days) {
                    return Err(AdminError::field(
                        "days",
                        format!("{days} is not between 1 and {MAX_DAYS}"),
                    ));
                }
                Ok(Period {
                    from: now.plus_ms(-days * DAY_MS),
                    to: now.plus_ms(1),
                })
            }
            (Some(from), Some(to), None) => {
                let (from, to) = (day("from", from)?, day("to", to)? + DAY_MS);
                if to <= from {
                    return Err(AdminError::field("to", "is before from".to_owned()));
                }
                if to - from > MAX_DAYS * DAY_MS {
                    return Err(AdminError::field(
                        "to",
                        format!("a period may be at most {MAX_DAYS} days"),
                    ));
                }
                Ok(Period {
                    from: Timestamp::from_millis(from),
                    to: Timestamp::from_millis(to),
                })
            }
            (Some(_), Some(_), Some(_)) => Err(AdminError::field(
                "days",
                "give either days or from and to".to_owned(),
            )),
            _ => Err(AdminError::field(
                if self.from.is_none() { "from" } else { "to" },
                "from and to go together".to_owned(),
            )),
        }
    }
}

/// A relative lift with its interval.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LiftView {
    /// Treated against held out, relative (0.12 = +12%).
    pub relative: f64,
    /// The interval's lower end.
    pub ci_low: f64,
    /// Its upper end.
    pub ci_high: f64,
    /// The two-sided p-value.
    pub p_value: f64,
}

impl From<&Lift> for LiftView {
    fn from(l: &Lift) -> LiftView {
        LiftView {
            relative: l.relative,
            ci_low: l.ci_low,
            ci_high: l.ci_high,
            p_value: l.p_value,
        }
    }
}

/// One metric, treated against held out.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ComparisonView {
    /// The fixed-horizon lift with its 95% interval (Welch's t, delta method); absent when
    /// either arm is too small or the holdout's mean is zero.
    pub lift: Option<LiftView>,
    /// The always-valid 95% interval, safe to look at every day.
    pub sequential: Option<LiftView>,
    /// Why there is no lift, in words, when there is none.
    pub unanswered: Option<&'static str>,
}

impl From<&Comparison> for ComparisonView {
    fn from(c: &Comparison) -> ComparisonView {
        ComparisonView {
            lift: c.lift.as_ref().map(LiftView::from),
            sequential: c.sequential.as_ref().map(LiftView::from),
            unanswered: c.unanswered.map(Unanswered::describe),
        }
    }
}

/// One arm's figures.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ArmView {
    /// Visitors triggered.
    pub triggered: u64,
    /// Of them, converted within the window.
    pub converted: u64,
    /// Conversion rate.
    pub conversion_rate: Option<f64>,
    /// Revenue within the window.
    pub revenue: f64,
    /// Revenue per triggered visitor.
    pub revenue_per_visitor: Option<f64>,
    /// Reported the intervention shown (0 for the holdout).
    pub shown: u64,
    /// Dismissed it.
    pub dismissed: u64,
    /// Engaged with it.
    pub engaged: u64,
    /// Dismissals per intervention shown.
    pub dismissal_rate: Option<f64>,
    /// Left within a minute of the trigger.
    pub left: u64,
    /// Share that left within a minute.
    pub left_rate: Option<f64>,
    /// Came back within 30 days (so far).
    pub returned: u64,
    /// Share that came back.
    pub return_rate: Option<f64>,
}

impl From<&ArmFigures> for ArmView {
    fn from(a: &ArmFigures) -> ArmView {
        ArmView {
            triggered: a.triggered,
            converted: a.converted,
            conversion_rate: a.conversion_rate(),
            revenue: a.revenue,
            revenue_per_visitor: a.revenue_per_visitor(),
            shown: a.shown,
            dismissed: a.dismissed,
            engaged: a.engaged,
            dismissal_rate: a.dismissal_rate(),
            left: a.left,
            left_rate: a.left_rate(),
            returned: a.returned,
            return_rate: a.return_rate(),
        }
    }
}

/// Lift as it stood at one instant.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PointView {
    /// The instant (RFC 3339).
    pub until: String,
    /// Visitors triggered by then, both arms.
    pub triggered: u64,
    /// The conversion lift by then.
    pub lift: Option<LiftView>,
    /// Its always-valid interval by then.
    pub sequential: Option<LiftView>,
}

/// The analysis of one rule, or of every rule together.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AnalysisView {
    /// The rule's id; absent for every rule together.
    pub rule: Option<String>,
    /// The rule's name.
    pub name: String,
    /// Its status now (`live`, `paused`, …; `removed` for a rule no longer in the set).
    pub status: String,
    /// What counts as its conversion (`order`, `lead`, `event:NAME`).
    pub goal: String,
    /// Treated visitors.
    pub treated: ArmView,
    /// Held-out visitors.
    pub holdout: ArmView,
    /// Conversion rate, treated against held out.
    pub conversion: ComparisonView,
    /// Revenue per triggered visitor.
    pub revenue: ComparisonView,
    /// Leaving within a minute of the trigger (higher is worse).
    pub left: ComparisonView,
    /// Coming back within 30 days (lower is worse).
    pub returned: ComparisonView,
    /// The sample-ratio check's p-value (chi-square against the holdout share).
    pub srm_p_value: Option<f64>,
    /// The arms' sizes differ from the holdout share beyond chance (p < 0.001).
    pub sample_ratio_mismatch: bool,
    /// What needs a look: `sample_ratio_mismatch`, `harmful`, `leaves_sooner`, `returns_less`.
    pub flags: Vec<String>,
    /// Lift over time.
    pub series: Vec<PointView>,
}

/// What the model cost.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CostView {
    /// Calls.
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Money at the site's prices.
    pub money: f64,
    /// The prices' currency.
    pub currency: String,
    /// Visits of people in the period.
    pub visits: u64,
    /// Money per visit.
    pub money_per_visit: Option<f64>,
    /// Calls per visit.
    pub calls_per_visit: Option<f64>,
    /// Tokens per visit.
    pub tokens_per_visit: Option<f64>,
    /// Conversions beyond what the holdout's rate predicts.
    pub extra_conversions: Option<f64>,
    /// Money per extra conversion.
    pub money_per_extra_conversion: Option<f64>,
    /// Model use per step of the series.
    pub series: Vec<CostPointView>,
}

/// Model use over one step.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CostPointView {
    /// The step's end (RFC 3339).
    pub until: String,
    /// Calls.
    pub calls: u64,
    /// Tokens.
    pub tokens: u64,
    /// Money.
    pub money: f64,
}

impl From<&Cost> for CostView {
    fn from(c: &Cost) -> CostView {
        CostView {
            calls: c.calls,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            money: c.money,
            currency: c.currency.clone(),
            visits: c.visits,
            money_per_visit: c.money_per_visit,
            calls_per_visit: c.calls_per_visit,
            tokens_per_visit: c.tokens_per_visit,
            extra_conversions: c.extra_conversions,
            money_per_extra_conversion: c.money_per_extra_conversion,
            series: c
                .series
                .iter()
                .map(|p| CostPointView {
                    until: rfc3339(p.until),
                    calls: p.calls,
                    tokens: p.tokens,
                    money: p.money,
                })
                .collect(),
        }
    }
}

/// A site's analytics over a period.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AnalyticsView {
    /// The period's start (RFC 3339).
    pub from: String,
    /// Its end.
    pub to: String,
    /// The series' step, in seconds.
    pub step_secs: u64,
    /// The holdout's share of visitors, in percent, under the site's policy.
    pub holdout_percent: f64,
    /// The attribution window, in seconds.
    pub window_secs: u64,
    /// Visitors each arm needs before a rule is flagged.
    pub min_sample: u64,
    /// Every rule together (conversion: an order).
    pub overall: AnalysisView,
    /// Each rule that is in the set or fired in the period.
    pub rules: Vec<AnalysisView>,
    /// What the model cost.
    pub cost: CostView,
    /// Automated visitors left out of every number.
    pub bots_excluded: u64,
}

fn goal_name(goal: &Goal) -> String {
    goal.to_string()
}

fn analysis_view(a: &Analysis, spec: Option<&RuleSpec>) -> AnalysisView {
    let (name, status) = match (&a.rule, spec) {
        (None, _) => ("Every rule".to_owned(), "live".to_owned()),
        (Some(_), Some(s)) => (s.name.clone(), s.status.as_str().to_owned()),
        (Some(r), None) => (r.as_str().to_owned(), "removed".to_owned()),
    };
    AnalysisView {
        rule: a.rule.as_ref().map(|r| r.as_str().to_owned()),
        name,
        status,
        goal: goal_name(&a.goal),
        treated: ArmView::from(&a.treated),
        holdout: ArmView::from(&a.holdout),
        conversion: ComparisonView::from(&a.conversion),
        revenue: ComparisonView::from(&a.revenue),
        left: ComparisonView::from(&a.left),
        returned: ComparisonView::from(&a.returned),
        srm_p_value: a.srm_p_value,
        sample_ratio_mismatch: a.flags.contains(&report::Flag::SampleRatioMismatch),
        flags: a.flags.iter().map(|f| f.as_str().to_owned()).collect(),
        series: a
            .series
            .iter()
            .map(|p| PointView {
                until: rfc3339(p.until),
                triggered: p.triggered,
                lift: p.lift.as_ref().map(LiftView::from),
                sequential: p.sequential.as_ref().map(LiftView::from),
            })
            .collect(),
    }
}

/// The analysis itself, with the rules it covers (for callers that act on it).
pub struct Analysed {
    /// The report.
    pub report: Report,
    /// The site's rules now.
    pub rules: Vec<RuleSpec>,
    /// The holdout share under the site's policy, in percent.
    pub holdout_percent: f64,
    /// The settings it was made under.
    pub settings: Settings,
}

/// Analyses a site over `period`, at `now`.
pub async fn analyse(
    state: &AdminState,
    site: &beckon_engine::SiteId,
    period: Period,
    now: Timestamp,
) -> AdminResult<Analysed> {
    let (_, policy, rules) = current(state, site).await?;
    let settings = state.analytics.analytics_settings(site).await?;
    let horizon = settings.window.max(RETURN_WITHIN);
    let reach = period
        .to
        .plus_ms(i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX))
        .min(now.plus_ms(1));
    let facts = state.analytics.facts(site, period, reach).await?;
    // The rules in the set, then any rule that fired in the period and has since been
    // removed (its numbers stay readable).
    let mut goals: Vec<RuleGoal> = rules
        .iter()
        .filter_map(|r| {
            Some(RuleGoal {
                rule: RuleId::parse(&r.id).ok()?,
                goal: r.goal.clone(),
            })
        })
        .collect();
    for e in &facts.exposures {
        if !goals.iter().any(|g| g.rule == e.rule) {
            goals.push(RuleGoal {
                rule: e.rule.clone(),
                goal: Goal::Order,
            });
        }
    }
    let report = report::analyse(
        &facts,
        &Inputs {
            rules: &goals,
            from: period.from,
            to: period.to,
            now,
            settings: &settings,
            holdout_share: policy.holdout_percent / 100.0,
        },
    );
    Ok(Analysed {
        report,
        rules,
        holdout_percent: policy.holdout_percent,
        settings,
    })
}

/// A site's analytics over the period asked for.
pub async fn get(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    query: &PeriodQuery,
) -> AdminResult<AnalyticsView> {
    let site = actor.site(key)?;
    let now = now();
    let period = query.period(now)?;
    let a = analyse(state, &site, period, now).await?;
    Ok(view(&a))
}

/// The view of an analysis.
pub fn view(a: &Analysed) -> AnalyticsView {
    let r = &a.report;
    let spec = |rule: &Option<RuleId>| {
        rule.as_ref()
            .and_then(|id| a.rules.iter().find(|s| s.id == id.as_str()))
    };
    AnalyticsView {
        from: rfc3339(r.from),
        to: rfc3339(r.to),
        step_secs: r.step.as_secs(),
        holdout_percent: a.holdout_percent,
        window_secs: a.settings.window.as_secs(),
        min_sample: a.settings.min_sample,
        overall: analysis_view(&r.overall, None),
        rules: r
            .rules
            .iter()
            .map(|x| analysis_view(x, spec(&x.rule)))
            .collect(),
        cost: CostView::from(&r.cost),
        bots_excluded: r.bots_excluded,
    }
}

/// The analytics as CSV: one row per rule and one for every rule together.
pub fn csv(v: &AnalyticsView) -> AdminResult<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let head = [
        "rule",
        "name",
        "status",
        "goal",
        "from",
        "to",
        "treated_triggered",
        "treated_converted",
        "treated_revenue",
        "holdout_triggered",
        "holdout_converted",
        "holdout_revenue",
        "shown",
        "dismissed",
        "engaged",
        "lift",
        "lift_ci_low",
        "lift_ci_high",
        "p_value",
        "sequential_ci_low",
        "sequential_ci_high",
        "revenue_lift",
        "srm_p_value",
        "treated_left",
        "holdout_left",
        "treated_returned",
        "holdout_returned",
        "flags",
    ];
    w.write_record(head)
        .map_err(|e| AdminError::Store(e.to_string()))?;
    let num = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
    for a in std::iter::once(&v.overall).chain(&v.rules) {
        let lift = a.conversion.lift.as_ref();
        let seq = a.conversion.sequential.as_ref();
        let row = vec![
            a.rule.clone().unwrap_or_else(|| "*".to_owned()),
            crate::manage::leads::defuse(&a.name),
            a.status.clone(),
            a.goal.clone(),
            v.from.clone(),
            v.to.clone(),
            a.treated.triggered.to_string(),
            a.treated.converted.to_string(),
            a.treated.revenue.to_string(),
            a.holdout.triggered.to_string(),
            a.holdout.converted.to_string(),
            a.holdout.revenue.to_string(),
            a.treated.shown.to_string(),
            a.treated.dismissed.to_string(),
            a.treated.engaged.to_string(),
            num(lift.map(|l| l.relative)),
            num(lift.map(|l| l.ci_low)),
            num(lift.map(|l| l.ci_high)),
            num(lift.map(|l| l.p_value)),
            num(seq.map(|l| l.ci_low)),
            num(seq.map(|l| l.ci_high)),
            num(a.revenue.lift.as_ref().map(|l| l.relative)),
            num(a.srm_p_value),
            a.treated.left.to_string(),
            a.holdout.left.to_string(),
            a.treated.returned.to_string(),
            a.holdout.returned.to_string(),
            a.flags.join(" "),
        ];
        w.write_record(&row)
            .map_err(|e| AdminError::Store(e.to_string()))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| AdminError::Store(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| AdminError::Store(e.to_string()))
}

/// A site's analytics settings, as the API reads and writes them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSettingsView {
    /// An outcome counts for a trigger when it comes at most this many hours after it
    /// (1–2160; 168 = 7 days by default).
    #[serde(deserialize_with = "crate::api::whole::required")]
    #[schema(minimum = 1, maximum = 2160)]
    pub window_hours: u64,
    /// Visitors each arm needs before a rule can be flagged (2–10,000,000; 200 by default).
    #[serde(deserialize_with = "crate::api::whole::required")]
    #[schema(minimum = 2, maximum = 10_000_000)]
    pub min_sample: u64,
    /// Pause a live rule flagged as harmful (lift or annoyance worse than the holdout's beyond
    /// the always-valid interval).
    pub auto_pause: bool,
    /// What a million prompt tokens cost.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub prompt_price: f64,
    /// What a million completion tokens cost.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub completion_price: f64,
    /// The prices' currency (ISO 4217, e.g. `USD`).
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

impl From<&Settings> for AnalyticsSettingsView {
    fn from(s: &Settings) -> Self {
        AnalyticsSettingsView {
            window_hours: s.window.as_secs() / 3_600,
            min_sample: s.min_sample,
            auto_pause: s.auto_pause,
            prompt_price: s.prompt_price,
            completion_price: s.completion_price,
            currency: s.currency.clone(),
        }
    }
}

/// A site's analytics settings.
pub async fn settings(
    state: &AdminState,
    actor: &Actor,
    key: &str,
) -> AdminResult<AnalyticsSettingsView> {
    let site = actor.site(key)?;
    let s = state.analytics.analytics_settings(&site).await?;
    Ok(AnalyticsSettingsView::from(&s))
}

/// Saves a site's analytics settings (administrators only).
pub async fn save_settings(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    body: AnalyticsSettingsView,
) -> AdminResult<AnalyticsSettingsView> {
    let site = actor.site(key)?;
    actor.require_admin()?;
    if !(1..=2_160).contains(&body.window_hours) {
        return Err(AdminError::field(
            "window_hours",
            format!("{} is not between 1 and 2160", body.window_hours),
        ));
    }
    if body.min_sample > 10_000_000 {
        return Err(AdminError::field(
            "min_sample",
            format!("{} is more than 10000000", body.min_sample),
        ));
    }
    let settings = Settings {
        window: Duration::from_secs(body.window_hours * 3_600),
        min_sample: body.min_sample,
        auto_pause: body.auto_pause,
        prompt_price: body.prompt_price,
        completion_price: body.completion_price,
        currency: body.currency,
    };
    settings.check().map_err(|reason| {
        let field = reason.split_whitespace().next().unwrap_or("").to_owned();
        AdminError::field(field, reason)
    })?;
    state
        .analytics
        .put_analytics_settings(&site, &settings)
        .await?;
    Ok(AnalyticsSettingsView::from(&settings))
}

/// How far back the automatic pause looks.
pub const AUTO_PAUSE_DAYS: i64 = 30;

/// Pauses each live rule of `site` that the last [`AUTO_PAUSE_DAYS`] days flag as harmful or
/// annoying, when the site's settings ask for it, as one new rule-set version written by
/// nobody (the history says why). Returns the rules paused and the flag that paused each.
///
/// A rule is judged only on what it did since it last changed (its text, or its status:
/// someone who resumes a paused rule, or fixes it, has it judged afresh, not paused again on
/// the evidence that paused it).
pub async fn auto_pause(
    state: &AdminState,
    site: &beckon_engine::SiteId,
    now: Timestamp,
) -> AdminResult<Vec<(String, report::Flag)>> {
    if !state.analytics.analytics_settings(site).await?.auto_pause {
        return Ok(Vec::new());
    }
    let (version, _, mut rules) = current(state, site).await?;
    let horizon = now.plus_ms(-AUTO_PAUSE_DAYS * DAY_MS);
    let changed = last_changed(state, site, horizon).await?;
    // One analysis per distinct start: most rules share the horizon.
    let mut starts: Vec<Timestamp> = rules
        .iter()
        .map(|r| changed.get(&r.id).copied().unwrap_or(horizon).max(horizon))
        .collect();
    starts.sort();
    starts.dedup();
    let mut paused = Vec::new();
    for from in starts {
        let period = Period {
            from,
            to: now.plus_ms(1),
        };
        let a = analyse(state, site, period, now).await?;
        for analysis in &a.report.rules {
            let Some(flag) = analysis.flags.iter().copied().find(|f| f.pauses()) else {
                continue;
            };
            let Some(id) = &analysis.rule else { continue };
            let judged_from = changed
                .get(id.as_str())
                .copied()
                .unwrap_or(horizon)
                .max(horizon);
            if judged_from != from {
                continue;
            }
            if let Some(rule) = rules
                .iter_mut()
                .find(|r| r.id == id.as_str() && r.status == beckon_engine::rules::Status::Live)
            {
                rule.status = beckon_engine::rules::Status::Paused;
                paused.push((rule.id.clone(), flag));
            }
        }
    }
    if paused.is_empty() {
        return Ok(paused);
    }
    let summary = paused
        .iter()
        .map(|(id, flag)| format!("paused {id:?} automatically ({})", flag.as_str()))
        .collect::<Vec<_>>()
        .join("; ");
    let change = beckon_store::accounts::Change {
        author: None,
        at: now,
        summary,
    };
    // Against the version analysed: a change made meanwhile wins, and the next round looks
    // again.
    state
        .accounts
        .save_rules(site, version, &rules, &change)
        .await?;
    state.live.changed().await;
    tracing::warn!(site = %site, rules = ?paused, "paused rules flagged by their analytics");
    Ok(paused)
}

/// When each rule of `site` last changed (it first appears, or differs from the version
/// before), as far back as `horizon`: rules unchanged since then are absent.
async fn last_changed(
    state: &AdminState,
    site: &beckon_engine::SiteId,
    horizon: Timestamp,
) -> AdminResult<std::collections::HashMap<String, Timestamp>> {
    const PAGE: usize = 100;
    let mut changed = std::collections::HashMap::new();
    let mut before = u64::MAX;
    // The newer of each pair of versions, with when it was made.
    let mut newer: Option<(Timestamp, Vec<RuleSpec>)> = None;
    loop {
        let page = state.accounts.rule_history(site, before, PAGE).await?;
        for entry in &page {
            let at = entry.change.as_ref().map(|c| c.at);
            if let Some((newer_at, newer_rules)) = &newer {
                for r in newer_rules {
                    if !changed.contains_key(&r.id) && !entry.rules.contains(r) {
                        changed.insert(r.id.clone(), *newer_at);
                    }
                }
            }
            match at {
                // Older versions than the horizon say nothing the horizon does not.
                Some(at) if at >= horizon => newer = Some((at, entry.rules.clone())),
                _ => return Ok(changed),
            }
            before = entry.version;
        }
        if page.len() < PAGE {
            // The oldest version: every rule in it appeared then.
            if let Some((at, rules)) = newer {
                for r in rules {
                    changed.entry(r.id).or_insert(at);
                }
            }
            return Ok(changed);
        }
    }
}

/// Runs [`auto_pause`] for every site; a site that fails is logged and the others go on.
pub async fn auto_pause_all(state: &AdminState, now: Timestamp) {
    let sites = match state.store.sites().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "automatic pause: cannot list the sites");
            return;
        }
    };
    for s in sites {
        if let Err(e) = auto_pause(state, &s.id, now).await {
            tracing::warn!(site = %s.id, error = %e, "automatic pause failed for a site");
        }
    }
}
