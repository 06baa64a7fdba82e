//! A site's analytics settings, and the fixed horizons of the guardrail metrics.

use std::time::Duration;

/// Leaving the site this soon after a trigger counts as leaving right after it.
pub const LEFT_WITHIN: Duration = Duration::from_secs(60);
/// Coming back this soon after a trigger counts as coming back.
pub const RETURN_WITHIN: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The longest attribution window a site may set.
pub const MAX_WINDOW: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// How a site's numbers are attributed and judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// An outcome counts for a trigger when it comes at most this long after it.
    pub window: Duration,
    /// Visitors each arm needs before a rule can be flagged.
    pub min_sample: u64,
    /// Pause a live rule the analysis flags as harmful.
    pub auto_pause: bool,
    /// What a million prompt tokens cost, in [`Settings::currency`].
    pub prompt_price: f64,
    /// What a million completion tokens cost.
    pub completion_price: f64,
    /// The currency of the prices (ISO 4217).
    pub currency: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window: Duration::from_secs(7 * 24 * 60 * 60),
            min_sample: 200,
            auto_pause: false,
            prompt_price: 0.0,
            completion_price: 0.0,
            currency: "USD".to_owned(),
        }
    }
}

impl Settings {
    /// Checks every field, naming the first that cannot work.
    pub fn check(&self) -> Result<(), String> {
        if self.window.is_zero() || self.window > MAX_WINDOW {
            return Err(format!(
                "window must be between 1 second and {} days",
                MAX_WINDOW.as_secs() / 86_400
            ));
        }
        if self.min_sample < 2 {
            return Err("min_sample must be at least 2".to_owned());
        }
        for (name, price) in [
            ("prompt_price", self.prompt_price),
            ("completion_price", self.completion_price),
        ] {
            if !price.is_finite() || !(0.0..=1_000_000.0).contains(&price) {
                return Err(format!("{name} must be between 0 and 1000000"));
            }
        }
        let c = &self.currency;
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "currency {c:?} is not a three-letter ISO 4217 code"
            ));
        }
        Ok(())
    }

    /// What `prompt` and `completion` tokens cost.
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.prompt_price + completion as f64 * self.completion_price) / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_each_bad_field_is_named() {
        assert_eq!(Settings::default().check(), Ok(()));
        let bad = |f: fn(&mut Settings)| {
            let mut s = Settings::default();
            f(&mut s);
            s.check().unwrap_err()
        };
        assert!(bad(|s| s.window = Duration::ZERO).starts_with("window"));
        assert!(bad(|s| s.window = MAX_WINDOW * 2).starts_with("window"));
        assert!(bad(|s| s.min_sample = 1).starts_with("min_sample"));
        assert!(bad(|s| s.prompt_price = f64::NAN).starts_with("prompt_price"));
        assert!(bad(|s| s.completion_price = -1.0).starts_with("completion_price"));
        assert!(bad(|s| s.currency = "usd".into()).contains("ISO 4217"));
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let s = Settings {
            prompt_price: 2.0,
            completion_price: 8.0,
            ..Settings::default()
        };
        assert!((s.cost(500_000, 250_000) - 3.0).abs() < 1e-12);
    }
}
