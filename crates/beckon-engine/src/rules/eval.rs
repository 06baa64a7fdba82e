//! Evaluating compiled conditions against a session, and saying when the answer could change.

use std::fmt;

use super::compile::{Cmp, Leaf, Node, Scalar, Test};
use super::schedule::{local_hour_weekday, next_local_boundary};
use super::vars::{Clock, Var};
use crate::event::{AttrValue, Event};
use crate::page::PageTypes;
use crate::profile::{Profile, get_attr};
use crate::session::{Session, event_props};
use crate::time::Timestamp;

/// Everything a condition may look at.
pub(crate) struct Ctx<'a> {
    pub(crate) session: &'a Session,
    pub(crate) profile: &'a Profile,
    pub(crate) event: &'a Event,
    pub(crate) now: Timestamp,
}

/// A condition's answer now, and the next instant at which it could change without any event
/// (`None`: only an event can change it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Truth {
    pub(crate) holds: bool,
    pub(crate) changes_at: Option<Timestamp>,
}

/// A variable's value, borrowed from the state.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    Missing,
    Num(f64),
    Str(&'a str),
    Bool(bool),
    Enum(u8, &'static str),
    Names(&'a [u64]),
    Types(PageTypes),
    Time(Timestamp),
}

impl Node {
    /// Evaluates the tree. A child that is false and cannot change without an event makes an
    /// `all` false until the next event, so evaluation stops there (and symmetrically for `any`).
    pub(crate) fn eval(&self, cx: &Ctx) -> Truth {
        match self {
            Node::Leaf(leaf) => leaf.eval(cx),
            Node::Not(child) => {
                let t = child.eval(cx);
                Truth {
                    holds: !t.holds,
                    changes_at: t.changes_at,
                }
            }
            Node::All(children) => combine(children, cx, false),
            Node::Any(children) => combine(children, cx, true),
        }
    }

    /// Why the tree does not hold at `cx.now`: the first failing leaf, with its value.
    pub(crate) fn explain(&self, cx: &Ctx) -> String {
        match self {
            Node::Leaf(leaf) => leaf.explain(cx),
            Node::Not(child) => format!("not({}) held", child.describe()),
            Node::All(children) => children
                .iter()
                .find(|c| !c.eval(cx).holds)
                .map_or_else(String::new, |c| c.explain(cx)),
            Node::Any(children) => {
                let why: Vec<String> = children.iter().map(|c| c.explain(cx)).collect();
                format!("none of these held: {}", why.join("; "))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Node::Leaf(leaf) => leaf.text.to_string(),
            Node::Not(child) => format!("not({})", child.describe()),
            Node::All(c) => format!(
                "all({})",
                c.iter().map(Node::describe).collect::<Vec<_>>().join(", ")
            ),
            Node::Any(c) => format!(
                "any({})",
                c.iter().map(Node::describe).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// `all` (`decisive = false`) or `any` (`decisive = true`) over children.
fn combine(children: &[Node], cx: &Ctx, decisive: bool) -> Truth {
    let mut changes_at: Option<Timestamp> = None;
    let mut holds = !decisive;
    for child in children {
        let t = child.eval(cx);
        if t.holds == decisive {
            if t.changes_at.is_none() {
                return Truth {
                    holds: decisive,
                    changes_at: None,
                };
            }
            holds = decisive;
        }
        changes_at = earliest(changes_at, t.changes_at);
    }
    Truth { holds, changes_at }
}

/// The earlier of two optional instants.
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Leaf {
    fn eval(&self, cx: &Ctx) -> Truth {
        let value = value(&self.var, cx);
        let holds = self.test.apply(value);
        let changes_at = match self.clock {
            Clock::Still => None,
            Clock::VisibleSeconds | Clock::CheckoutSeconds | Clock::Seconds => {
                match (value, self.grows(cx)) {
                    (Value::Num(_), true) => self.crossing(self.millis(cx), cx.now),
                    _ => None,
                }
            }
            Clock::Hour => Some(next_local_boundary(
                cx.now,
                cx.session.utc_offset_minutes,
                false,
            )),
            Clock::Weekday => Some(next_local_boundary(
                cx.now,
                cx.session.utc_offset_minutes,
                true,
            )),
            Clock::Now => match self.test {
                Test::Before(t) if cx.now < t => Some(t),
                Test::After(t) if cx.now <= t => Some(t.plus_ms(1)),
                Test::During(a, _) if cx.now < a => Some(a),
                Test::During(_, b) if cx.now <= b => Some(b.plus_ms(1)),
                _ => None,
            },
        };
        Truth { holds, changes_at }
    }

    /// Whether the variable is growing now.
    fn grows(&self, cx: &Ctx) -> bool {
        let visible = cx.session.visible_since.is_some();
        match self.clock {
            Clock::VisibleSeconds => visible,
            Clock::CheckoutSeconds => visible && cx.session.on_unfinished_checkout(),
            _ => true,
        }
    }

    /// The variable's exact value in milliseconds, for crossing arithmetic in integers.
    fn millis(&self, cx: &Ctx) -> i64 {
        let s = cx.session;
        match self.var {
            Var::TimeOnPage => s.page_active_ms(cx.now),
            Var::TimeOnSite => s.site_active_ms(cx.now),
            Var::CheckoutTime => s.checkout_active_ms(cx.now),
            Var::TimeIdle => cx.now.ms_since(s.last_interaction),
            Var::CartIdle => s.cart.as_ref().map_or(0, |c| cx.now.ms_since(c.changed_at)),
            _ => 0,
        }
    }

    /// When a growing seconds variable, now at `ms`, flips this leaf's answer.
    fn crossing(&self, ms: i64, now: Timestamp) -> Option<Timestamp> {
        // The first whole millisecond at which `value > c` (strict) or `value >= c` holds.
        // `as i64` saturates for huge thresholds; the additions must not overflow either.
        let above = |c: f64| {
            ((c * 1000.0).floor() as i64)
                .saturating_add(1)
                .saturating_sub(ms)
                .max(1)
        };
        let at_least = |c: f64| ((c * 1000.0).ceil() as i64).saturating_sub(ms).max(1);
        let v = ms as f64 / 1000.0;
        let delta = match self.test {
            Test::Cmp(Cmp::Gt, c) if v <= c => above(c),
            Test::Cmp(Cmp::Gte, c) if v < c => at_least(c),
            Test::Cmp(Cmp::Lt, c) if v < c => at_least(c),
            Test::Cmp(Cmp::Lte, c) if v <= c => above(c),
            Test::Between(lo, _) if v < lo => at_least(lo),
            Test::Between(_, hi) if v <= hi => above(hi),
            _ => return None,
        };
        Some(now.plus_ms(delta))
    }

    fn explain(&self, cx: &Ctx) -> String {
        let name = self.text.split(' ').next().unwrap_or("");
        format!(
            "{} (at {}) failed: {name} is {}",
            self.text,
            self.path,
            value(&self.var, cx)
        )
    }
}

impl Test {
    fn apply(&self, v: Value) -> bool {
        if let Test::Exists(want) = self {
            return !matches!(v, Value::Missing) == *want;
        }
        if matches!(v, Value::Missing) {
            // A condition about a value we do not have is false, whatever its operator: "the
            // plan is not pro" says nothing about a visitor who never told us their plan.
            return false;
        }
        match self {
            Test::Exists(_) => unreachable!("handled above"),
            Test::Eq(s) => equals(v, s),
            Test::Ne(s) => comparable(v, s) && !equals(v, s),
            Test::In(list) => list.iter().any(|s| equals(v, s)),
            Test::NotIn(list) => {
                list.iter().any(|s| comparable(v, s)) && !list.iter().any(|s| equals(v, s))
            }
            Test::Cmp(cmp, c) => match v {
                Value::Num(n) => match cmp {
                    Cmp::Gt => n > *c,
                    Cmp::Gte => n >= *c,
                    Cmp::Lt => n < *c,
                    Cmp::Lte => n <= *c,
                },
                _ => false,
            },
            Test::Between(lo, hi) => matches!(v, Value::Num(n) if n >= *lo && n <= *hi),
            Test::Contains(needle) => contains(v, needle) == Some(true),
            Test::NotContains(needle) => contains(v, needle) == Some(false),
            Test::StartsWith(p) => matches!(v, Value::Str(s) if s.starts_with(&**p)),
            Test::EndsWith(p) => matches!(v, Value::Str(s) if s.ends_with(&**p)),
            Test::Matches(re) => matches!(v, Value::Str(s) if re.is_match(s)),
            Test::Before(t) => matches!(v, Value::Time(x) if x < *t),
            Test::After(t) => matches!(v, Value::Time(x) if x > *t),
            Test::During(a, b) => matches!(v, Value::Time(x) if x >= *a && x <= *b),
        }
    }
}

fn equals(v: Value, s: &Scalar) -> bool {
    match (v, s) {
        (Value::Num(a), Scalar::Num(b)) => a == *b,
        (Value::Str(a), Scalar::Str(b)) => a == &**b,
        (Value::Bool(a), Scalar::Bool(b)) => a == *b,
        (Value::Enum(a, _), Scalar::Enum(b)) => a == *b,
        _ => false,
    }
}

/// Whether `v` and `s` are of the same kind, so that "not equal" means something.
fn comparable(v: Value, s: &Scalar) -> bool {
    matches!(
        (v, s),
        (Value::Num(_), Scalar::Num(_))
            | (Value::Str(_), Scalar::Str(_))
            | (Value::Bool(_), Scalar::Bool(_))
            | (Value::Enum(..), Scalar::Enum(_))
    )
}

/// Membership or substring; `None` when the value is of a kind `contains` does not apply to.
fn contains(v: Value, needle: &super::compile::Needle) -> Option<bool> {
    match v {
        Value::Str(s) => Some(s.contains(&*needle.text)),
        Value::Names(list) => Some(list.contains(&needle.hash)),
        Value::Types(set) => needle.page_type.map(|t| set.contains(t)),
        _ => None,
    }
}

/// Reads a variable from the context.
pub(crate) fn value<'a>(var: &Var, cx: &Ctx<'a>) -> Value<'a> {
    let s = cx.session;
    let p = cx.profile;
    let secs = |ms: i64| Value::Num(ms as f64 / 1000.0);
    let text = |t: &'a str| {
        if t.is_empty() {
            Value::Missing
        } else {
            Value::Str(t)
        }
    };
    let opt = |t: &'a Option<String>| t.as_deref().map_or(Value::Missing, Value::Str);
    let time = |t: Option<Timestamp>| t.map_or(Value::Missing, Value::Time);
    match var {
        Var::PageUrl => text(&s.page.url),
        Var::PagePath => text(&s.page.path),
        Var::PageTitle => text(&s.page.title),
        Var::PageType => s
            .page
            .page_type
            .map_or(Value::Missing, |t| Value::Enum(t as u8, t.as_str())),
        Var::PageReferrer => text(&s.page.referrer),
        Var::PageProduct => opt(&s.page.product),
        Var::UtmSource => opt(&s.utm.source),
        Var::UtmMedium => opt(&s.utm.medium),
        Var::UtmCampaign => opt(&s.utm.campaign),
        Var::PageViews => Value::Num(s.page.views.into()),
        Var::TimeOnPage => secs(s.page_active_ms(cx.now)),
        Var::TimeOnSite => secs(s.site_active_ms(cx.now)),
        Var::TimeIdle => secs(cx.now.ms_since(s.last_interaction)),
        Var::TimeHour => Value::Num(local_hour_weekday(cx.now, s.utc_offset_minutes).0.into()),
        Var::TimeWeekday => {
            let d = local_hour_weekday(cx.now, s.utc_offset_minutes).1;
            Value::Enum(d, super::schedule::Weekday::ALL[d as usize].as_str())
        }
        Var::TimeDate => Value::Time(cx.now),
        Var::Scroll => Value::Num(s.page.scroll.into()),
        Var::ExitIntent => Value::Bool(s.page.exit_intent),
        Var::Hovered => Value::Names(&s.hovered),
        Var::Clicked => Value::Names(&s.clicked),
        Var::Compared => Value::Num(s.compared.len() as f64),
        Var::Pages => Value::Num(s.pages.into()),
        Var::PageTypes => Value::Types(s.page_types),
        Var::CartValue => s
            .cart
            .as_ref()
            .map_or(Value::Missing, |c| Value::Num(c.value)),
        Var::CartItems => Value::Num(s.cart_items().into()),
        Var::CartCurrency => s
            .cart
            .as_ref()
            .map_or(Value::Missing, |c| text(&c.currency)),
        Var::CartIdle => s
            .cart
            .as_ref()
            .map_or(Value::Missing, |c| secs(cx.now.ms_since(c.changed_at))),
        Var::CartItemRemoved => Value::Bool(s.item_removed),
        Var::CheckoutTime => secs(s.checkout_active_ms(cx.now)),
        Var::Visits => Value::Num(p.visits.into()),
        Var::Returning => Value::Bool(p.visits > 1),
        Var::FirstSeen => time(p.first_seen),
        Var::LastSeen => time(p.last_seen),
        Var::Conversations => Value::Num(p.conversations.into()),
        Var::Converted => Value::Bool(s.converted_at.is_some()),
        Var::EverConverted => Value::Bool(p.ever_converted()),
        Var::Dismissals => Value::Num(p.dismissals.into()),
        Var::Interventions => Value::Num(p.interventions_seen.into()),
        Var::Language => opt(&s.language),
        Var::Trait(key) => attr(get_attr(&p.traits, key)),
        Var::Attribute(key) => attr(get_attr(&p.attributes, key)),
        Var::DeviceType => Value::Enum(s.device.kind as u8, s.device.kind.as_str()),
        Var::Browser => text(&s.device.browser),
        Var::BrowserVersion => Value::Num(s.device.browser_version.into()),
        Var::Os => text(&s.device.os),
        Var::EventName => match cx.event {
            Event::Track { name, .. } => Value::Str(name),
            _ => Value::Missing,
        },
        Var::EventProp(key) => attr(get_attr(event_props(cx.event), key)),
        Var::Tracked => Value::Names(&s.tracked),
    }
}

fn attr(v: Option<&AttrValue>) -> Value<'_> {
    match v {
        None => Value::Missing,
        Some(AttrValue::Bool(b)) => Value::Bool(*b),
        Some(AttrValue::Num(n)) => Value::Num(*n),
        Some(AttrValue::Str(s)) => Value::Str(s),
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Missing => f.write_str("missing"),
            Value::Num(n) => write!(f, "{n}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Enum(_, name) => f.write_str(name),
            Value::Names(list) => write!(f, "a set of {} names", list.len()),
            Value::Types(set) => {
                let names: Vec<&str> = set.iter().map(|t| t.as_str()).collect();
                write!(f, "[{}]", names.join(", "))
            }
            Value::Time(t) => write!(f, "{t}"),
        }
    }
}
