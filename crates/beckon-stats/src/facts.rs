//! What the analysis reads: the facts of one site over a period, as the store hands them over.
//! Plain data in the engine's vocabulary; the store fills it, [`crate::report`] reads it.

use beckon_engine::session::Arm;
use beckon_engine::{RuleId, SessionId, Timestamp, VisitorId};

/// A rule firing for a visitor: shown (treated) or a ghost (held out).
#[derive(Clone, Debug, PartialEq)]
pub struct Exposure {
    /// The visitor.
    pub visitor: VisitorId,
    /// The visit it fired in.
    pub session: SessionId,
    /// The rule.
    pub rule: RuleId,
    /// Treated (shown) or held out (ghost).
    pub arm: Arm,
    /// When.
    pub at: Timestamp,
}

/// What a visitor did with an intervention, as the widget reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReactionKind {
    /// It was on screen.
    Shown,
    /// Dismissed.
    Dismissed,
    /// Engaged with (accepted, replied, applied a coupon, submitted).
    Engaged,
}

/// A visitor's reaction to one rule's intervention.
#[derive(Clone, Debug, PartialEq)]
pub struct Reaction {
    /// The visitor.
    pub visitor: VisitorId,
    /// The rule.
    pub rule: RuleId,
    /// What they did.
    pub kind: ReactionKind,
    /// When.
    pub at: Timestamp,
}

/// Something a rule's goal can count.
#[derive(Clone, Debug, PartialEq)]
pub enum OutcomeKind {
    /// An order, with its value.
    Order {
        /// The order's value (0 when the site sent none).
        value: f64,
    },
    /// A captured lead (from the form or the chat).
    Lead,
    /// A custom event, by name.
    Event(String),
}

/// One outcome of a visitor.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The visitor.
    pub visitor: VisitorId,
    /// What.
    pub kind: OutcomeKind,
    /// When.
    pub at: Timestamp,
}

/// One visit as the widget reported it: its first and last batch from the browser.
#[derive(Clone, Debug, PartialEq)]
pub struct Visit {
    /// The visitor.
    pub visitor: VisitorId,
    /// The session.
    pub session: SessionId,
    /// The visit's first browser batch.
    pub first: Timestamp,
    /// Its last browser batch.
    pub last: Timestamp,
    /// The edge judged any of its batches automated.
    pub bot: bool,
}

/// Model calls made for a site, at one moment (one row of the store's record of calls).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelUse {
    /// When.
    pub at: Timestamp,
    /// The visitor whose conversation it served, if it served one.
    pub visitor: Option<VisitorId>,
    /// Calls made (0 when the daily budget kept the model out and the offline responder
    /// answered).
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

/// Everything the analysis of one site over a period needs. Exposures are those of the
/// period; outcomes, reactions and visits run past its end, as far as the attribution window
/// and the return horizon reach (but never past now).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Exposures, oldest first.
    pub exposures: Vec<Exposure>,
    /// Reactions, oldest first.
    pub reactions: Vec<Reaction>,
    /// Outcomes, oldest first.
    pub outcomes: Vec<Outcome>,
    /// Visits, in no particular order.
    pub visits: Vec<Visit>,
    /// Model use, oldest first.
    pub model_use: Vec<ModelUse>,
}
