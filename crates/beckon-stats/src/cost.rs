//! What the model cost: calls, tokens and money, per visit and per extra conversion (the
//! conversions the treated arm made beyond what the holdout's rate predicts), and over time.
//! When only the offline responder answered, every figure is zero.

use beckon_engine::Timestamp;

use crate::attribution::Index;
use crate::facts::Facts;
use crate::report::{Analysis, Inputs, Series};

/// Model use over one step of the series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostPoint {
    /// The step's end.
    pub until: Timestamp,
    /// Calls.
    pub calls: u64,
    /// Tokens, prompt and completion.
    pub tokens: u64,
    /// Money.
    pub money: f64,
}

/// What the model cost over the period.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cost {
    /// Calls made.
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Money, at the site's prices.
    pub money: f64,
    /// The prices' currency.
    pub currency: String,
    /// Visits of people in the period (automated ones left out).
    pub visits: u64,
    /// Money per visit.
    pub money_per_visit: Option<f64>,
    /// Calls per visit.
    pub calls_per_visit: Option<f64>,
    /// Tokens per visit.
    pub tokens_per_visit: Option<f64>,
    /// Conversions the treated arm made beyond the holdout's rate (may be negative).
    pub extra_conversions: Option<f64>,
    /// Money per extra conversion, when there were any.
    pub money_per_extra_conversion: Option<f64>,
    /// Model use per step.
    pub series: Vec<CostPoint>,
}

pub(crate) fn cost(
    facts: &Facts,
    index: &Index<'_>,
    overall: &Analysis,
    inputs: &Inputs<'_>,
    grid: Series,
) -> Cost {
    let (from, to) = (inputs.from.as_millis(), inputs.to.as_millis());
    let prices = inputs.settings;
    let mut c = Cost {
        currency: prices.currency.clone(),
        ..Cost::default()
    };
    let step_ms = i64::try_from(grid.step.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    // The grid starts at or before the period's first model use.
    let (begin, end) = (grid.begin.as_millis(), grid.end.as_millis());
    let steps = if end > begin {
        ((end - begin - 1) / step_ms + 1) as usize
    } else {
        0
    };
    c.series = (0..steps)
        .map(|i| CostPoint {
            until: Timestamp::from_millis((begin + (i as i64 + 1) * step_ms).min(end)),
            ..CostPoint::default()
        })
        .collect();
    for m in &facts.model_use {
        let t = m.at.as_millis();
        if t < from || t >= to || m.visitor.as_ref().is_some_and(|v| index.is_bot(v)) {
            continue;
        }
        let money = prices.cost(m.prompt_tokens, m.completion_tokens);
        c.calls += m.calls;
        c.prompt_tokens += m.prompt_tokens;
        c.completion_tokens += m.completion_tokens;
        c.money += money;
        if let Some(p) = c.series.get_mut(((t - begin).max(0) / step_ms) as usize) {
            p.calls += m.calls;
            p.tokens += m.prompt_tokens + m.completion_tokens;
            p.money += money;
        }
    }
    c.visits = facts
        .visits
        .iter()
        .filter(|v| !v.bot && (from..to).contains(&v.first.as_millis()))
        .count() as u64;
    let per_visit = |x: f64| (c.visits > 0).then(|| x / c.visits as f64);
    c.money_per_visit = per_visit(c.money);
    c.calls_per_visit = per_visit(c.calls as f64);
    c.tokens_per_visit = per_visit((c.prompt_tokens + c.completion_tokens) as f64);
    c.extra_conversions = match (
        overall.treated.conversion_rate(),
        overall.holdout.conversion_rate(),
    ) {
        (Some(t), Some(h)) => Some(overall.treated.triggered as f64 * (t - h)),
        _ => None,
    };
    c.money_per_extra_conversion = c
        .extra_conversions
        .filter(|x| *x > 0.0)
        .map(|x| c.money / x);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::ModelUse;
    use crate::report::{Inputs, analyse};
    use crate::settings::Settings;

    #[test]
    fn money_follows_the_prices_and_the_offline_responder_costs_nothing() {
        let t0 = 1_700_000_000_000;
        let facts = Facts {
            model_use: vec![
                ModelUse {
                    at: Timestamp::from_millis(t0 + 1_000),
                    visitor: None,
                    calls: 2,
                    prompt_tokens: 1_000_000,
                    completion_tokens: 100_000,
                },
                // The budget kept the model out: the offline responder answered.
                ModelUse {
                    at: Timestamp::from_millis(t0 + 2_000),
                    visitor: None,
                    calls: 0,
                    prompt_tokens: 0,
                    completion_tokens: 0,
                },
            ],
            ..Facts::default()
        };
        let settings = Settings {
            prompt_price: 0.5,
            completion_price: 2.0,
            ..Settings::default()
        };
        let inputs = Inputs {
            rules: &[],
            from: Timestamp::from_millis(t0),
            to: Timestamp::from_millis(t0 + 3_600_000),
            now: Timestamp::from_millis(t0 + 3_600_000),
            settings: &settings,
            holdout_share: 0.1,
        };
        let c = analyse(&facts, &inputs).cost;
        assert_eq!(
            (c.calls, c.prompt_tokens, c.completion_tokens),
            (2, 1_000_000, 100_000)
        );
        assert!((c.money - 0.7).abs() < 1e-12);
        assert_eq!(
            c.series.len(),
            60,
            "one-minute steps over the hour since the first call"
        );
        assert!((c.series[0].money - 0.7).abs() < 1e-12);
        assert_eq!(c.money_per_visit, None, "no visits, no per-visit figure");
        assert_eq!(c.money_per_extra_conversion, None);

        let free = analyse(
            &facts,
            &Inputs {
                settings: &Settings::default(),
                ..inputs
            },
        )
        .cost;
        assert_eq!(free.money, 0.0, "no prices set: nothing charged");
    }
}
