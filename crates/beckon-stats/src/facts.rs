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

/// One visit as the widget reported it: its first and last batch from the browser, in any of
/// its tabs.
#[derive(Clone, Debug, PartialEq)]
pub struct Visit {
    /// The visitor.
    pub visitor: VisitorId,
    /// The visit's id: the session id of the tab that began it (the one its exposures carry).
    pub session: SessionId,
    /// The visit's first browser batch.
    pub first: Timestamp,
    /// Its last browser batch.
    pub last: Timestamp,
    /// Any of its batches was logged a bot's (by the edge, or by what the visit did).
    pub bot: bool,
}

/// One tab's browser batches, as a store can sum them: the widget names a session per tab,
/// and a tab opened while a visit is going on joins that visit (the server's `visit_gap`)
/// instead of beginning one. [`visits`] puts the tabs back together into visits.
#[derive(Clone, Debug, PartialEq)]
pub struct Tab {
    /// The visitor.
    pub visitor: VisitorId,
    /// The tab's session id.
    pub session: SessionId,
    /// Its first browser batch.
    pub first: Timestamp,
    /// Its last.
    pub last: Timestamp,
    /// When one of its batches began a visit (the log's `begins`), if one did.
    pub began: Option<Timestamp>,
    /// Any of its batches was logged a bot's (by the edge, or by what the visit did).
    pub bot: bool,
}

/// The visits `tabs` make: a tab that began a visit is that visit (under its session id), and
/// a tab that did not joins the visit its visitor began last before the tab's first batch. A
/// tab with no such visit (it began before the batches read) stands for a visit of its own.
pub fn visits(mut tabs: Vec<Tab>) -> Vec<Visit> {
    tabs.sort_by(|a, b| {
        (&a.visitor, a.began.is_none(), a.began, a.first).cmp(&(
            &b.visitor,
            b.began.is_none(),
            b.began,
            b.first,
        ))
    });
    let mut out: Vec<Visit> = Vec::with_capacity(tabs.len());
    // Per visitor, the visits begun (index in `out`, when), in order.
    let mut begun: Vec<(usize, Timestamp)> = Vec::new();
    for (i, tab) in tabs.iter().enumerate() {
        if i == 0 || tabs[i - 1].visitor != tab.visitor {
            begun.clear();
        }
        let joined = match tab.began {
            Some(_) => None,
            None => begun
                .iter()
                .rev()
                .find(|(_, at)| *at <= tab.first)
                .map(|(j, _)| *j),
        };
        match joined {
            Some(j) => {
                let v = &mut out[j];
                v.first = v.first.min(tab.first);
                v.last = v.last.max(tab.last);
                v.bot |= tab.bot;
            }
            None => {
                if let Some(at) = tab.began {
                    begun.push((out.len(), at));
                }
                out.push(Visit {
                    visitor: tab.visitor.clone(),
                    session: tab.session.clone(),
                    first: tab.first,
                    last: tab.last,
                    bot: tab.bot,
                });
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Index;
    use beckon_engine::RuleId;
    use beckon_engine::rules::Goal;
    use std::time::Duration;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_millis(1_000_000_000 + s * 1_000)
    }

    fn tab(v: u32, s: u32, first: i64, last: i64, began: Option<i64>) -> Tab {
        Tab {
            visitor: VisitorId::parse(&format!("v_{v:0>20}")).unwrap(),
            session: SessionId::parse(&format!("s_{s:0>20}")).unwrap(),
            first: t(first),
            last: t(last),
            began: began.map(t),
            bot: false,
        }
    }

    #[test]
    fn a_second_tab_of_a_visit_neither_ends_it_early_nor_counts_as_coming_back() {
        let tabs = vec![
            // Visitor 1: tab 1 begins the visit and is quiet after 2 s; tab 2 opens at 10 s
            // and goes on for five minutes.
            tab(1, 2, 10, 300, None),
            tab(1, 1, 0, 2, Some(0)),
            // Visitor 2: a tab whose visit began before what was read, then a new visit.
            tab(2, 3, 0, 5, None),
            tab(2, 4, 7_200, 7_300, Some(7_200)),
        ];
        let mut v = visits(tabs);
        v.sort_by_key(|v| (v.visitor.clone(), v.first));
        let got: Vec<_> = v
            .iter()
            .map(|v| (v.session.as_str().to_owned(), v.first, v.last))
            .collect();
        assert_eq!(
            got,
            vec![
                (format!("s_{:0>20}", 1), t(0), t(300)),
                (format!("s_{:0>20}", 3), t(0), t(5)),
                (format!("s_{:0>20}", 4), t(7_200), t(7_300)),
            ]
        );

        // Triggered at 1 s in tab 1: they stayed (in tab 2) and did not come back.
        let facts = Facts {
            exposures: vec![Exposure {
                visitor: v[0].visitor.clone(),
                session: v[0].session.clone(),
                rule: RuleId::parse("offer").unwrap(),
                arm: beckon_engine::session::Arm::Treated,
                at: t(1),
            }],
            visits: v,
            ..Facts::default()
        };
        let units = Index::new(&facts).units(None, &Goal::Order, Duration::from_secs(3_600));
        assert!(!units[0].left && !units[0].returned, "{:?}", units[0]);
    }
}
