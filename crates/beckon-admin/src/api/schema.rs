//! Shapes that exist only to describe the engine's own formats in the OpenAPI document: the
//! engine knows nothing of the document, and its types stay free of it. The API still reads
//! rules and policies with the engine's own serde, so the document can only be stricter than
//! the code, never looser without a test noticing (schemathesis runs against it).

use utoipa::ToSchema;

/// A rule as in a rule file (`beckon rules export --json`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RuleDoc {
    /// Stable identifier: 1 to 64 of `[A-Za-z0-9._:-]`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    id: String,
    /// What the rule is for, for people (1 to 120 characters).
    #[schema(min_length = 1, max_length = 120)]
    name: String,
    /// `draft` (the default), `live`, `paused` or `archived`.
    #[schema(pattern = "^(draft|live|paused|archived)$")]
    status: Option<String>,
    /// Higher wins when several rules hold at once.
    priority: Option<i32>,
    /// The conditions: `{"all": [...]}`, `{"any": [...]}`, `{"not": {...}}` or a leaf
    /// `{"var", "op", "value"}`.
    #[schema(value_type = Object)]
    when: serde_json::Value,
    /// How long the conditions must keep holding (`"10s"`).
    delay: Option<String>,
    /// The least time before the same visitor sees it again (`"1d"`).
    repeat_after: Option<String>,
    /// The most times one visitor ever sees it.
    #[schema(minimum = 1)]
    max_per_visitor: Option<u32>,
    /// Dates and business hours.
    #[schema(value_type = Option<Object>)]
    schedule: Option<serde_json::Value>,
    /// Share of visitors it is rolled out to, in percent.
    #[schema(minimum = 0, maximum = 100)]
    rollout: Option<f64>,
    /// Page types it is limited to.
    pages: Option<Vec<String>>,
    /// The department a handed-off conversation goes to.
    department: Option<String>,
    /// `order`, `lead` or `event:<name>`.
    goal: Option<String>,
    /// The message: `{"type": "text" | "card" | "offer" | "comparison" | …, …}`.
    #[schema(value_type = Object)]
    message: serde_json::Value,
    /// The message in other languages, by language.
    #[schema(value_type = Option<Object>)]
    translations: Option<serde_json::Value>,
}

/// A site's guardrail policy; fields left out take their defaults.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PolicyDoc {
    /// At most this many interventions per session (default 2).
    #[schema(nullable = false)]
    max_per_session: Option<u32>,
    /// At most this many per visitor in any 24 hours (default 3).
    #[schema(nullable = false)]
    max_per_visitor_day: Option<u32>,
    /// Quiet after a dismissal (`"10m"`).
    #[schema(nullable = false)]
    dismiss_cooldown: Option<String>,
    /// This many dismissals within `silence` silence the visitor (default 2).
    #[schema(nullable = false)]
    dismissals_before_silence: Option<u32>,
    /// How long repeated dismissals silence a visitor (`"30d"`).
    #[schema(nullable = false)]
    silence: Option<String>,
    /// Quiet after a conversion beyond the session (`"0s"`).
    #[schema(nullable = false)]
    quiet_after_conversion: Option<String>,
    /// Nothing this early in a visit without a cart or exit intent (`"5s"`).
    #[schema(nullable = false)]
    arrival_grace: Option<String>,
    /// A new tab within this of the last activity is the same visit (`"30m"`).
    #[schema(nullable = false)]
    visit_gap: Option<String>,
    /// Page types on which nothing is shown.
    #[schema(nullable = false)]
    quiet_page_types: Option<Vec<String>>,
    /// Path prefixes on which nothing is shown.
    #[schema(nullable = false)]
    quiet_paths: Option<Vec<String>>,
    /// Share of visitors held out, in percent (0 to 50; default 10).
    #[schema(nullable = false, minimum = 0, maximum = 50)]
    holdout_percent: Option<f64>,
    /// Salt of the holdout hash.
    #[schema(nullable = false)]
    holdout_salt: Option<String>,
    /// The site's time zone (IANA).
    #[schema(nullable = false)]
    timezone: Option<String>,
}

/// Whole numbers as JSON Schema has them: `7` and `7.0` alike (serde's integers refuse the
/// second, JSON Schema's `integer` allows it).
pub mod whole {
    use serde::{Deserialize, Deserializer, de::Error};

    fn from_number<E: Error>(n: serde_json::Number) -> Result<u64, E> {
        if let Some(v) = n.as_u64() {
            return Ok(v);
        }
        match n.as_f64() {
            Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(f as u64),
            _ => Err(E::custom(format!(
                "{n} is not a whole number of at least 0"
            ))),
        }
    }

    /// A required whole number.
    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        from_number(serde_json::Number::deserialize(d)?)
    }

    /// An optional whole number (`null` or absent: none).
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(from_number)
            .transpose()
    }
}
