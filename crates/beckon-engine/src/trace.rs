//! Explanations: why a rule did or did not fire at an instant.
//!
//! Every suppression has a reason, so "why didn't rule X fire at 14:02?" always has an answer.
//! Traces are built only when asked for ([`crate::Engine::explain`]); the hot path records
//! nothing.

use std::fmt;

use serde::Serialize;

use crate::ids::RuleId;
use crate::page::PageType;
use crate::rules::Status;
use crate::time::Timestamp;

/// A guardrail that held every rule back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Suppression {
    /// The visitor is a bot.
    Bot,
    /// Nothing in the visit has shown a person there yet: no pointer, touch, key or scroll.
    NoInteraction,
    /// The visitor converted in this session.
    Converted,
    /// The visitor converted recently (the policy's quiet time after a conversion).
    ConvertedRecently {
        /// Quiet until.
        until: Timestamp,
    },
    /// Repeated dismissals silenced the visitor.
    Silenced {
        /// Silent until.
        until: Timestamp,
    },
    /// The session's cap is reached.
    SessionCap {
        /// The cap.
        max: u32,
    },
    /// The visitor's daily cap is reached.
    DailyCap {
        /// The cap.
        max: u32,
        /// When a slot frees up.
        until: Timestamp,
    },
    /// The cooldown after a dismissal.
    Cooldown {
        /// Quiet until.
        until: Timestamp,
    },
    /// The chat is open.
    ChatOpen,
    /// A conversation is running.
    ConversationActive,
    /// An intervention is already on screen (or, for a held-out visitor, was just logged).
    InterventionOpen,
    /// The page is one the site keeps quiet.
    QuietPage,
    /// The visit just started, and there is neither a cart nor an exit signal.
    ArrivalGrace {
        /// Grace ends at.
        until: Timestamp,
    },
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suppression::Bot => f.write_str("the visitor is a bot"),
            Suppression::NoInteraction => {
                f.write_str("no pointer, touch, key or scroll yet in this visit")
            }
            Suppression::Converted => f.write_str("the visitor converted in this session"),
            Suppression::ConvertedRecently { until } => {
                write!(f, "the visitor converted recently; quiet until {until}")
            }
            Suppression::Silenced { until } => {
                write!(f, "repeated dismissals; silent until {until}")
            }
            Suppression::SessionCap { max } => {
                write!(f, "{max} interventions this session already")
            }
            Suppression::DailyCap { max, until } => {
                write!(
                    f,
                    "{max} interventions in the last 24 hours; next possible at {until}"
                )
            }
            Suppression::Cooldown { until } => {
                write!(f, "cooling down after a dismissal until {until}")
            }
            Suppression::ChatOpen => f.write_str("the chat is open"),
            Suppression::ConversationActive => f.write_str("a conversation is running"),
            Suppression::InterventionOpen => f.write_str("an intervention is already showing"),
            Suppression::QuietPage => f.write_str("this page is kept quiet"),
            Suppression::ArrivalGrace { until } => {
                write!(
                    f,
                    "the visit just started (no cart, no exit signal) until {until}"
                )
            }
        }
    }
}

/// What happened to one rule at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It fired and the visitor sees it.
    Fired,
    /// It would have fired; the visitor is held out, so a ghost exposure is logged.
    Ghost,
    /// It is not live.
    NotLive {
        /// Its status.
        status: Status,
    },
    /// The current page type is outside its scope.
    OutOfScope {
        /// The page type.
        page_type: Option<PageType>,
    },
    /// Outside its dates or business hours.
    OutsideSchedule {
        /// When it could open.
        until: Option<Timestamp>,
    },
    /// A condition failed.
    ConditionFailed {
        /// Which, and the value it saw.
        why: String,
    },
    /// The conditions hold, but not yet for the rule's delay.
    Waiting {
        /// When the delay is over.
        until: Timestamp,
    },
    /// The visitor saw it too recently (repeat cycle).
    RepeatCycle {
        /// When it may repeat.
        until: Timestamp,
    },
    /// The visitor has seen it as often as it may ever be shown.
    LifetimeCap {
        /// Times seen.
        count: u32,
    },
    /// The visitor is outside the rule's rollout percentage.
    NotInRollout,
    /// Its conditions hold, but a guardrail holds it back.
    Held {
        /// The guardrail.
        by: Suppression,
    },
    /// It was ready, but a rule of higher priority fired.
    Outranked {
        /// The rule that won.
        by: RuleId,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Fired => f.write_str("fired"),
            Verdict::Ghost => f.write_str("would have fired; held out, ghost exposure logged"),
            Verdict::NotLive { status } => write!(f, "not live ({})", status.as_str()),
            Verdict::OutOfScope { page_type } => match page_type {
                Some(t) => write!(f, "not for {t} pages"),
                None => f.write_str("not for this page"),
            },
            Verdict::OutsideSchedule { until: Some(t) } => {
                write!(f, "outside its schedule until {t}")
            }
            Verdict::OutsideSchedule { until: None } => f.write_str("its schedule has ended"),
            Verdict::ConditionFailed { why } => f.write_str(why),
            Verdict::Waiting { until } => write!(f, "conditions hold; delay runs until {until}"),
            Verdict::RepeatCycle { until } => write!(f, "seen recently; may repeat at {until}"),
            Verdict::LifetimeCap { count } => write!(f, "seen {count} times, its lifetime cap"),
            Verdict::NotInRollout => f.write_str("visitor outside the rule's rollout"),
            Verdict::Held { by } => write!(f, "held back: {by}"),
            Verdict::Outranked { by } => write!(f, "outranked by {by}"),
        }
    }
}

/// One rule's verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleTrace {
    /// The rule.
    pub rule: RuleId,
    /// What happened to it.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The explanation of one decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trace {
    /// The instant of the decision.
    pub at: Timestamp,
    /// The event that led to it.
    pub event: &'static str,
    /// A guardrail that held every rule back, if any.
    pub held: Option<Suppression>,
    /// Every rule, in evaluation order.
    pub rules: Vec<RuleTrace>,
}

impl Trace {
    /// The verdict for one rule.
    pub fn verdict(&self, rule: &str) -> Option<&Verdict> {
        self.rules
            .iter()
            .find(|r| r.rule.as_str() == rule)
            .map(|r| &r.verdict)
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {} on {}", self.at, self.event)?;
        if let Some(h) = &self.held {
            write!(f, " (held: {h})")?;
        }
        for r in &self.rules {
            write!(f, "\n  {}: {}", r.rule, r.verdict)?;
        }
        Ok(())
    }
}
