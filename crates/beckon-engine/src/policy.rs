//! The site's guardrail policy: the rules above the rules.
//!
//! Defaults are the safe ones of PRODUCT.md; a site may loosen or tighten each of them. Bots
//! are not a setting: they never trigger.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::page::PageType;
use crate::profile::{MAX_RECENT_DISMISSALS, MAX_RECENT_FIRES};

/// Guardrails that hold for every rule of a site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// At most this many interventions per session.
    pub max_per_session: u32,
    /// At most this many interventions per visitor in any rolling 24 hours.
    pub max_per_visitor_day: u32,
    /// Quiet time after a dismissal.
    #[serde(with = "crate::rules::duration")]
    pub dismiss_cooldown: Duration,
    /// This many dismissals within `silence` silence the visitor for `silence`.
    pub dismissals_before_silence: u32,
    /// How long repeated dismissals silence a visitor.
    #[serde(with = "crate::rules::duration")]
    pub silence: Duration,
    /// After a conversion nothing more is shown in that session; this extends the quiet time
    /// beyond the session (zero: only the rest of the session).
    #[serde(with = "crate::rules::duration")]
    pub quiet_after_conversion: Duration,
    /// Nothing in the first moments of a visit, unless the cart holds items or the visitor
    /// shows exit intent.
    #[serde(with = "crate::rules::duration")]
    pub arrival_grace: Duration,
    /// A new session id seen within this time of the visitor's last activity continues the
    /// same visit (another tab, cleared tab storage) instead of starting a new one, so a
    /// second tab cannot reset the session's cap or its conversion.
    #[serde(with = "crate::rules::duration")]
    pub visit_gap: Duration,
    /// Page types on which nothing is ever shown (legal, account, …).
    pub quiet_page_types: Vec<PageType>,
    /// Path prefixes on which nothing is ever shown, e.g. "/account", "/legal".
    pub quiet_paths: Vec<String>,
    /// Share of visitors held out, in percent (0–50). They see nothing; ghost exposures are
    /// logged instead.
    pub holdout_percent: f64,
    /// Salt of the holdout hash. Changing it reshuffles the arms, so it is part of the policy.
    pub holdout_salt: String,
    /// The site's time zone (IANA name), for rule schedules and business hours.
    pub timezone: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_per_session: 2,
            max_per_visitor_day: 3,
            dismiss_cooldown: Duration::from_secs(10 * 60),
            dismissals_before_silence: 2,
            silence: Duration::from_secs(30 * 24 * 60 * 60),
            quiet_after_conversion: Duration::ZERO,
            arrival_grace: Duration::from_secs(5),
            visit_gap: Duration::from_secs(30 * 60),
            quiet_page_types: Vec::new(),
            quiet_paths: Vec::new(),
            holdout_percent: 10.0,
            holdout_salt: "beckon".to_owned(),
            timezone: "UTC".to_owned(),
        }
    }
}

/// Why a policy cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("policy.{field}: {reason}")]
pub struct PolicyError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The holdout share can never exceed this: a holdout larger than the treated group would
/// make the site pay for an experiment instead of running one.
pub const MAX_HOLDOUT_PERCENT: f64 = 50.0;

impl Policy {
    /// Checks the values a type cannot rule out.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fail = |field, reason: String| Err(PolicyError { field, reason });
        if !(0.0..=MAX_HOLDOUT_PERCENT).contains(&self.holdout_percent) {
            return fail(
                "holdout_percent",
                format!(
                    "{} is outside 0–{MAX_HOLDOUT_PERCENT}",
                    self.holdout_percent
                ),
            );
        }
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return fail(
                "timezone",
                format!(
                    "{:?} is not an IANA time zone name such as \"Europe/Paris\"",
                    self.timezone
                ),
            );
        }
        if self.max_per_visitor_day as usize > MAX_RECENT_FIRES {
            return fail(
                "max_per_visitor_day",
                format!(
                    "{} is above {MAX_RECENT_FIRES}, the most a profile remembers",
                    self.max_per_visitor_day
                ),
            );
        }
        if self.dismissals_before_silence as usize > MAX_RECENT_DISMISSALS {
            return fail(
                "dismissals_before_silence",
                format!(
                    "{} is above {MAX_RECENT_DISMISSALS}, the most a profile remembers",
                    self.dismissals_before_silence
                ),
            );
        }
        if let Some(p) = self.quiet_paths.iter().find(|p| !p.starts_with('/')) {
            return fail("quiet_paths", format!("{p:?} must start with '/'"));
        }
        Ok(())
    }

    /// The holdout share in basis points (1/100 of a percent), as the hash compares it.
    pub(crate) fn holdout_basis_points(&self) -> u32 {
        (self.holdout_percent * 100.0).round() as u32
    }
}
