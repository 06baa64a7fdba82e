//! Rules as their authors write them: the TOML file format and the JSON API body.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::condition::Condition;
use super::message::{AiGreeting, Message};
use super::schedule::ScheduleSpec;
use crate::page::PageType;

/// A rule, as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable identifier (`cart-exit-offer`).
    pub id: String,
    /// What the rule is for, for people.
    pub name: String,
    /// draft, live, paused or archived; only live rules fire.
    #[serde(default)]
    pub status: Status,
    /// Higher wins when several rules hold at once.
    #[serde(default)]
    pub priority: i32,
    /// The conditions.
    pub when: Condition,
    /// How long the conditions must keep holding before the rule fires.
    #[serde(
        default,
        with = "super::duration",
        skip_serializing_if = "Duration::is_zero"
    )]
    pub delay: Duration,
    /// The least time before the same visitor sees this rule again.
    #[serde(
        default,
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub repeat_after: Option<Duration>,
    /// The most times one visitor ever sees this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_visitor: Option<u32>,
    /// Dates and business hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// Share of visitors the rule is rolled out to, in percent.
    #[serde(default = "full_rollout", skip_serializing_if = "is_full_rollout")]
    pub rollout: f64,
    /// Page types the rule is limited to; empty: every page type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<PageType>,
    /// The department a handed-off conversation goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// What counts as this rule's conversion.
    #[serde(default)]
    pub goal: Goal,
    /// The message.
    pub message: Message,
    /// The same message in other languages, keyed by language ("fr", "de").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: BTreeMap<String, Message>,
    /// Let a model write the greeting from the context, within limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_greeting: Option<AiGreeting>,
}

fn full_rollout() -> f64 {
    100.0
}

fn is_full_rollout(r: &f64) -> bool {
    *r == 100.0
}

/// A file of rules: `[[rules]]` tables in TOML, `{"rules": [...]}` in JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// A rule's lifecycle state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being written; never fires.
    #[default]
    Draft,
    /// Fires.
    Live,
    /// Stopped for now.
    Paused,
    /// Retired; kept for its numbers.
    Archived,
}

impl Status {
    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Live => "live",
            Status::Paused => "paused",
            Status::Archived => "archived",
        }
    }
}

/// What counts as a rule's conversion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Goal {
    /// An order (a `convert` event).
    #[default]
    Order,
    /// A captured lead.
    Lead,
    /// A custom event by name (`"event:trial_started"`).
    Event(String),
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Goal::Order => f.write_str("order"),
            Goal::Lead => f.write_str("lead"),
            Goal::Event(name) => write!(f, "event:{name}"),
        }
    }
}

impl FromStr for Goal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "order" => Ok(Goal::Order),
            "lead" => Ok(Goal::Lead),
            _ => match s.strip_prefix("event:") {
                Some(name) if !name.is_empty() && name.len() <= 64 => {
                    Ok(Goal::Event(name.to_owned()))
                }
                _ => Err(format!(
                    "unknown goal {s:?}; expected \"order\", \"lead\" or \"event:NAME\""
                )),
            },
        }
    }
}

impl Serialize for Goal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Goal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
