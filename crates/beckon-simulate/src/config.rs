//! How a run is played: the server and site, how many visitors and how many at once, the
//! seed, the mix of personas, their base rates and the true effect of each rule, all checked
//! before anything is sent.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::SimError;
use crate::persona::{DEFAULT_EFFECTS, Persona};
use crate::script::{Plan, Script};

/// The most visitors played at once.
pub const MAX_CONCURRENCY: usize = 10_000;
/// How long the first visitors take to start, in all: a run ramps up rather than opening
/// every socket in the same millisecond.
pub const RAMP_UP: Duration = Duration::from_secs(2);

/// How a run is played.
#[derive(Clone, Debug)]
pub struct Config {
    /// The server, `http://host:port`.
    pub url: String,
    /// The `Origin` the visitors' pages have; `None`: the URL's own.
    pub origin: Option<String>,
    /// The site key.
    pub site: String,
    /// Visitors to play.
    pub visitors: u64,
    /// Visitors played at once.
    pub concurrency: usize,
    /// The seed of the scripts.
    pub seed: u64,
    /// The true effect of being shown each rule (by id) on conversion, relative: 0.3 is +30%.
    /// Rules not named have none.
    pub effects: BTreeMap<String, f64>,
    /// Each persona's share of the traffic (weights; personas left out do not come).
    pub mix: BTreeMap<Persona, f64>,
    /// Each persona's conversion rate when shown nothing (personas left out: 0).
    pub base_rates: BTreeMap<Persona, f64>,
    /// The probability that a visitor engages with an intervention shown.
    pub engage: f64,
    /// The probability that they dismiss it (else they leave it be).
    pub dismiss: f64,
    /// The pause between a returning visitor's two visits. The server counts the second as a
    /// new visit only when the pause is longer than the site's `visit_gap` (30 minutes by
    /// default); within it, the second session continues the first visit.
    pub return_after: Duration,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Default for Config {
    /// The demo's: its server and site, the default mix, rates and effects.
    fn default() -> Self {
        Config {
            url: "http://127.0.0.1:8080".to_owned(),
            origin: None,
            site: "demo".to_owned(),
            visitors: 1_000,
            concurrency: 500,
            seed: 1,
            effects: DEFAULT_EFFECTS
                .iter()
                .map(|(r, e)| ((*r).to_owned(), *e))
                .collect(),
            mix: Persona::ALL
                .iter()
                .map(|p| (*p, p.default_weight()))
                .collect(),
            base_rates: Persona::ALL
                .iter()
                .map(|p| (*p, p.default_base_rate()))
                .collect(),
            engage: 0.15,
            dismiss: 0.35,
            return_after: Duration::from_secs(2),
            progress: false,
        }
    }
}

impl Config {
    /// Checks what the types cannot: counts in range, probabilities and effects that mean
    /// something, rule ids of the server's syntax.
    pub fn validate(&self) -> Result<(), SimError> {
        let fail = |m: String| Err(SimError::Config(m));
        if self.visitors == 0 {
            return fail("--visitors must be at least 1".to_owned());
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return fail(format!(
                "--concurrency must be 1 to {MAX_CONCURRENCY}, not {}",
                self.concurrency
            ));
        }
        for (rule, effect) in &self.effects {
            check_rule_id(rule)?;
            check_effect(rule, *effect)?;
        }
        let probability = |what: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                fail(format!("{what} must be a probability (0 to 1), not {p}"))
            }
        };
        probability("the engage probability", self.engage)?;
        probability("the dismiss probability", self.dismiss)?;
        probability("engage + dismiss", self.engage + self.dismiss)?;
        for (p, rate) in &self.base_rates {
            probability(&format!("the base rate of {p}"), *rate)?;
        }
        if self.mix.values().any(|w| !w.is_finite() || *w < 0.0) {
            return fail("persona weights must be finite and not negative".to_owned());
        }
        if self.mix.values().sum::<f64>() <= 0.0 {
            return fail("at least one persona must have a weight".to_owned());
        }
        Ok(())
    }

    /// The mix, as a plan takes it.
    pub(crate) fn mix_list(&self) -> Vec<(Persona, f64)> {
        self.mix.iter().map(|(p, w)| (*p, *w)).collect()
    }

    /// The script of visitor `index` of this run.
    pub fn script(&self, index: u64) -> Script {
        let mix = self.mix_list();
        Plan {
            seed: self.seed,
            mix: &mix,
            return_after: self.return_after,
        }
        .script(index)
    }
}

/// Parses `RULE=REL` (`--effect cart-exit-offer=0.25`).
pub fn parse_effect(s: &str) -> Result<(String, f64), SimError> {
    let (rule, rel) = s.split_once('=').ok_or_else(|| {
        SimError::Config(format!(
            "--effect {s:?}: expected RULE=REL, e.g. cart-exit-offer=0.25"
        ))
    })?;
    check_rule_id(rule)?;
    let effect: f64 = rel.trim().parse().map_err(|_| {
        SimError::Config(format!(
            "--effect {s:?}: {rel:?} is not a number (0.25 is +25%)"
        ))
    })?;
    check_effect(rule, effect)?;
    Ok((rule.to_owned(), effect))
}

fn check_rule_id(rule: &str) -> Result<(), SimError> {
    let ok = !rule.is_empty()
        && rule.len() <= 128
        && rule
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(SimError::Config(format!(
            "rule id {rule:?}: must be 1 to 128 characters of letters, digits, '-', '_', '.' and ':'"
        )))
    }
}

fn check_effect(rule: &str, effect: f64) -> Result<(), SimError> {
    if effect.is_finite() && effect >= -1.0 {
        Ok(())
    } else {
        Err(SimError::Config(format!(
            "the effect of {rule} must be a finite number of at least -1 (-100%), not {effect}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_effect("cart-exit-offer=0.25").unwrap(),
            ("cart-exit-offer".to_owned(), 0.25)
        );
        assert_eq!(parse_effect("r=-1").unwrap().1, -1.0);
        for bad in ["cart", "=0.2", "a b=0.1", "r=x", "r=-1.5", "r=inf", "r=NaN"] {
            assert!(parse_effect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(Config::default().validate().is_ok());
        let bad = [
            Config {
                visitors: 0,
                ..Config::default()
            },
            Config {
                concurrency: 0,
                ..Config::default()
            },
            Config {
                concurrency: MAX_CONCURRENCY + 1,
                ..Config::default()
            },
            Config {
                engage: 0.7,
                dismiss: 0.5,
                ..Config::default()
            },
            Config {
                mix: BTreeMap::new(),
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        let mut c = Config::default();
        c.effects.insert("bad id".into(), 0.1);
        assert!(c.validate().is_err());
    }
}
