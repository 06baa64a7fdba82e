//! Compiling a rule: every name resolved, every literal typed, every regex built, once, when
//! the rule is saved. A rule that could fail at evaluation time is refused here instead, with
//! a message that names the field.

use std::fmt;

use chrono_tz::Tz;
use regex::{Regex, RegexBuilder};

use super::condition::{Condition, Leaf as LeafSpec, Literal, MAX_DEPTH, MAX_LEAVES, Op};
use super::schedule::{Schedule, Weekday, parse_span};
use super::spec::{Goal, RuleSpec, Status};
use super::vars::{self, Clock, Ty, Var};
use crate::device::DeviceType;
use crate::hash::fnv1a64;
use crate::ids::RuleId;
use crate::page::{PageType, PageTypes};
use crate::time::{Timestamp, duration_ms};

/// The largest compiled size of one regex; larger patterns are refused so that a rule cannot
/// make evaluation slow.
pub const MAX_REGEX_BYTES: usize = 256 * 1024;
/// The most values an `in` list may hold.
pub const MAX_IN_LIST: usize = 256;

/// A rule ready to be evaluated.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its identifier.
    pub id: RuleId,
    pub(crate) key: u64,
    pub(crate) when: Node,
    pub(crate) delay_ms: i64,
    pub(crate) repeat_ms: Option<i64>,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) rollout_bp: u32,
    pub(crate) pages: PageTypes,
    spec: RuleSpec,
}

/// One reason a rule was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field, e.g. `when.all[1].value`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Why a rule was refused: every problem found, not just the first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The rule's id as written.
    pub rule: String,
    /// The problems.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {:?} is invalid:", self.rule)?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl Rule {
    /// Compiles a rule. Dates in conditions and schedules are read in the site's time zone.
    pub fn compile(spec: RuleSpec, tz: Tz) -> Result<Rule, RuleError> {
        let mut errors = Vec::new();
        let mut err = |field: &str, reason: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                reason,
            })
        };
        let id = RuleId::parse(&spec.id).map_err(|e| err("id", format!("{:?} {e}", spec.id)));
        if spec.name.trim().is_empty() || spec.name.chars().count() > 120 {
            err("name", "must be 1 to 120 characters".to_owned());
        }
        if !(0.0..=100.0).contains(&spec.rollout) {
            err(
                "rollout",
                format!("{} is not a percentage between 0 and 100", spec.rollout),
            );
        }
        if let Some(0) = spec.max_per_visitor {
            err(
                "max_per_visitor",
                "0 would never fire; set status = \"paused\" instead".to_owned(),
            );
        }
        if let Goal::Event(name) = &spec.goal {
            if name.contains(char::is_whitespace) {
                err(
                    "goal",
                    format!("event name {name:?} must not contain spaces"),
                );
            }
        }
        if let Some(d) = &spec.department {
            if d.trim().is_empty() || d.len() > 64 {
                err("department", "must be 1 to 64 characters".to_owned());
            }
        }
        for (field, reason) in spec.message.validate() {
            err(&format!("message.{field}"), reason);
        }
        for (lang, message) in &spec.translations {
            if !is_language_tag(lang) {
                err(
                    &format!("translations.{lang}"),
                    "is not a language tag such as \"fr\" or \"pt-BR\"".to_owned(),
                );
            }
            if message.kind() != spec.message.kind() {
                err(
                    &format!("translations.{lang}.type"),
                    format!(
                        "is {:?} but the message is {:?}; a translation keeps the message's type",
                        message.kind(),
                        spec.message.kind()
                    ),
                );
            }
            for (field, reason) in message.validate() {
                err(&format!("translations.{lang}.{field}"), reason);
            }
        }
        if let Some(ai) = &spec.ai_greeting {
            if ai.prompt.trim().is_empty() || ai.prompt.len() > 2000 {
                err(
                    "ai_greeting.prompt",
                    "must be 1 to 2000 characters".to_owned(),
                );
            }
            if !(20..=500).contains(&ai.max_chars) {
                err(
                    "ai_greeting.max_chars",
                    "must be between 20 and 500".to_owned(),
                );
            }
        }
        let schedule = match spec.schedule.as_ref().map(|s| Schedule::compile(s, tz)) {
            Some(Ok(s)) => Some(s),
            Some(Err(problems)) => {
                for (field, reason) in problems {
                    err(&field, reason);
                }
                None
            }
            None => None,
        };
        let when = {
            let mut c = Compiler {
                tz,
                leaves: 0,
                reads_event: false,
                errors: Vec::new(),
            };
            let node = c.node(&spec.when, "when", 0);
            if c.reads_event && !spec.delay.is_zero() {
                err(
                    "delay",
                    "event.name and event.props hold only while their event is handled, so a \
                     delayed rule would never see them; use event.tracked for \"this visit had the event\""
                        .to_owned(),
                );
            }
            if c.leaves > MAX_LEAVES {
                err(
                    "when",
                    format!("has {} conditions; at most {MAX_LEAVES}", c.leaves),
                );
            }
            errors.extend(c.errors);
            node
        };
        match (id, when) {
            (Ok(id), Some(when)) if errors.is_empty() => Ok(Rule {
                key: fnv1a64(id.as_str()),
                id,
                when,
                delay_ms: duration_ms(spec.delay),
                repeat_ms: spec.repeat_after.map(duration_ms),
                schedule,
                rollout_bp: (spec.rollout * 100.0).round() as u32,
                pages: spec.pages.iter().copied().collect(),
                spec,
            }),
            _ => Err(RuleError {
                rule: spec.id.clone(),
                errors,
            }),
        }
    }

    /// The rule as written, for export.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.spec.status
    }

    /// Its priority.
    pub fn priority(&self) -> i32 {
        self.spec.priority
    }

    /// The message in `language` when there is a translation, else the default one.
    pub fn message_for(&self, language: Option<&str>) -> &super::message::Message {
        let Some(lang) = language else {
            return &self.spec.message;
        };
        // "pt-BR" falls back to "pt" before the default.
        let primary = lang.split('-').next().unwrap_or(lang);
        self.spec
            .translations
            .get(lang)
            .or_else(|| self.spec.translations.get(primary))
            .unwrap_or(&self.spec.message)
    }
}

fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// A compiled condition tree.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Leaf(Box<Leaf>),
}

/// A compiled test of one variable.
#[derive(Clone, Debug)]
pub(crate) struct Leaf {
    pub(crate) var: Var,
    pub(crate) clock: Clock,
    pub(crate) test: Test,
    /// Where the leaf is in the rule, e.g. `when.all[1]`, for explanations.
    pub(crate) path: Box<str>,
    /// The leaf as people read it, e.g. `cart.items > 0`.
    pub(crate) text: Box<str>,
}

/// A value a test compares with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Num(f64),
    Str(Box<str>),
    Bool(bool),
    Enum(u8),
}

/// What `contains` looks for, prepared for each kind of value it may meet.
#[derive(Clone, Debug)]
pub(crate) struct Needle {
    pub(crate) text: Box<str>,
    pub(crate) hash: u64,
    pub(crate) page_type: Option<PageType>,
}

/// How a numeric comparison compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A compiled test.
#[derive(Clone, Debug)]
pub(crate) enum Test {
    Exists(bool),
    Eq(Scalar),
    Ne(Scalar),
    In(Box<[Scalar]>),
    NotIn(Box<[Scalar]>),
    Cmp(Cmp, f64),
    Between(f64, f64),
    Contains(Needle),
    NotContains(Needle),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Matches(Box<Regex>),
    Before(Timestamp),
    After(Timestamp),
    During(Timestamp, Timestamp),
}

struct Compiler {
    tz: Tz,
    leaves: usize,
    /// A leaf reads the event being handled (`event.name`, `event.props.*`).
    reads_event: bool,
    errors: Vec<FieldError>,
}

impl Compiler {
    fn fail(&mut self, field: String, reason: String) -> Option<Node> {
        self.errors.push(FieldError { field, reason });
        None
    }

    fn node(&mut self, c: &Condition, path: &str, depth: usize) -> Option<Node> {
        if depth > MAX_DEPTH {
            return self.fail(
                path.to_owned(),
                format!("nests all/any/not deeper than {MAX_DEPTH} levels"),
            );
        }
        let children = |this: &mut Self, kids: &[Condition], name: &str| {
            if kids.is_empty() {
                this.fail(
                    format!("{path}.{name}"),
                    format!("is empty; `{name}` needs at least one condition (a rule waits for a real signal)"),
                );
                return None;
            }
            let compiled: Vec<Option<Node>> = kids
                .iter()
                .enumerate()
                .map(|(i, k)| this.node(k, &format!("{path}.{name}[{i}]"), depth + 1))
                .collect();
            compiled.into_iter().collect::<Option<Box<[Node]>>>()
        };
        match c {
            Condition::All(kids) => children(self, kids, "all").map(Node::All),
            Condition::Any(kids) => children(self, kids, "any").map(Node::Any),
            Condition::Not(kid) => self
                .node(kid, &format!("{path}.not"), depth + 1)
                .map(|n| Node::Not(Box::new(n))),
            Condition::Leaf(leaf) => {
                self.leaves += 1;
                self.leaf(leaf, path)
            }
        }
    }

    fn leaf(&mut self, leaf: &LeafSpec, path: &str) -> Option<Node> {
        let (var, ty, clock) = match vars::resolve(&leaf.var) {
            Ok(found) => found,
            Err(reason) => return self.fail(format!("{path}.var"), reason),
        };
        self.reads_event |= matches!(var, Var::EventName | Var::EventProp(_));
        let text = match &leaf.value {
            Some(v) => format!("{} {} {v}", leaf.var, leaf.op.symbol()),
            None => format!("{} {}", leaf.var, leaf.op.symbol()),
        };
        match self.test(leaf, ty, clock) {
            Ok(test) => Some(Node::Leaf(Box::new(Leaf {
                var,
                clock,
                test,
                path: path.into(),
                text: text.into(),
            }))),
            Err((field, reason)) => self.fail(format!("{path}.{field}"), reason),
        }
    }

    /// Types one test; errors are `(field within the leaf, reason)`.
    fn test(&self, leaf: &LeafSpec, ty: Ty, clock: Clock) -> Result<Test, (&'static str, String)> {
        let name = leaf.var.as_str();
        let op = leaf.op;
        let mismatch = || {
            (
                "op",
                format!(
                    "{} does not apply to {name}, which is {}{}",
                    op.as_str(),
                    ty.describe(),
                    suggest(ty)
                ),
            )
        };
        let value = || {
            leaf.value
                .as_ref()
                .ok_or(("value", format!("{} needs a value", op.as_str())))
        };
        let continuous = matches!(
            clock,
            Clock::VisibleSeconds | Clock::CheckoutSeconds | Clock::Seconds
        );
        match op {
            Op::Exists => match &leaf.value {
                None => Ok(Test::Exists(true)),
                Some(Literal::Bool(b)) => Ok(Test::Exists(*b)),
                Some(other) => Err(("value", format!("exists takes true or false, not {other}"))),
            },
            Op::Equals | Op::NotEquals | Op::In | Op::NotIn => {
                if !matches!(
                    ty,
                    Ty::Num
                        | Ty::Str
                        | Ty::Bool
                        | Ty::PageType
                        | Ty::DeviceType
                        | Ty::Weekday
                        | Ty::Dynamic
                ) {
                    return Err(mismatch());
                }
                if continuous {
                    return Err((
                        "op",
                        format!(
                            "{name} is measured continuously, so it is never exactly one value; use gte, lte or between"
                        ),
                    ));
                }
                let v = value()?;
                match op {
                    Op::Equals => Ok(Test::Eq(scalar(v, ty, name)?)),
                    Op::NotEquals => Ok(Test::Ne(scalar(v, ty, name)?)),
                    _ => {
                        let Literal::List(items) = v else {
                            return Err((
                                "value",
                                format!("{} takes a list, e.g. [\"a\", \"b\"]", op.as_str()),
                            ));
                        };
                        if items.is_empty() || items.len() > MAX_IN_LIST {
                            return Err(("value", format!("must hold 1 to {MAX_IN_LIST} values")));
                        }
                        let list = items.iter().map(|i| scalar(i, ty, name)).collect::<Result<
                            Box<[Scalar]>,
                            _,
                        >>(
                        )?;
                        Ok(if op == Op::In {
                            Test::In(list)
                        } else {
                            Test::NotIn(list)
                        })
                    }
                }
            }
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                if !matches!(ty, Ty::Num | Ty::Dynamic) {
                    return Err(mismatch());
                }
                let n = number(value()?)?;
                let cmp = match op {
                    Op::Gt => Cmp::Gt,
                    Op::Gte => Cmp::Gte,
                    Op::Lt => Cmp::Lt,
                    _ => Cmp::Lte,
                };
                Ok(Test::Cmp(cmp, n))
            }
            Op::Between => {
                let Literal::List(items) = value()? else {
                    return Err(("value", "between takes [low, high]".to_owned()));
                };
                let [lo, hi] = items.as_slice() else {
                    return Err((
                        "value",
                        format!("between takes exactly two values, not {}", items.len()),
                    ));
                };
                match ty {
                    Ty::Num | Ty::Dynamic => {
                        let (lo, hi) = (number(lo)?, number(hi)?);
                        if lo > hi {
                            return Err(("value", format!("low {lo} is above high {hi}")));
                        }
                        Ok(Test::Between(lo, hi))
                    }
                    Ty::Time => {
                        let (lo, hi) = (self.span(lo)?.0, self.span(hi)?.1);
                        if lo > hi {
                            return Err(("value", "the first date is after the second".to_owned()));
                        }
                        Ok(Test::During(lo, hi))
                    }
                    _ => Err(mismatch()),
                }
            }
            Op::Before | Op::After => {
                if ty != Ty::Time {
                    return Err(mismatch());
                }
                let (first, last) = self.span(value()?)?;
                Ok(if op == Op::Before {
                    Test::Before(first)
                } else {
                    Test::After(last)
                })
            }
            Op::Contains | Op::NotContains => {
                if !matches!(ty, Ty::Str | Ty::Dynamic | Ty::Names | Ty::PageTypes) {
                    return Err(mismatch());
                }
                let text = string(value()?)?;
                let needle = match ty {
                    Ty::Str | Ty::Dynamic | Ty::Names => Needle {
                        hash: fnv1a64(&text),
                        text: text.into(),
                        page_type: None,
                    },
                    Ty::PageTypes => {
                        let t = text.parse::<PageType>().map_err(|e| ("value", e))?;
                        Needle {
                            hash: 0,
                            text: text.into(),
                            page_type: Some(t),
                        }
                    }
                    _ => return Err(mismatch()),
                };
                Ok(if op == Op::Contains {
                    Test::Contains(needle)
                } else {
                    Test::NotContains(needle)
                })
            }
            Op::StartsWith | Op::EndsWith | Op::Matches => {
                if !matches!(ty, Ty::Str | Ty::Dynamic) {
                    return Err(mismatch());
                }
                let text = string(value()?)?;
                Ok(match op {
                    Op::StartsWith => Test::StartsWith(text.into()),
                    Op::EndsWith => Test::EndsWith(text.into()),
                    _ => Test::Matches(Box::new(
                        RegexBuilder::new(&text)
                            .size_limit(MAX_REGEX_BYTES)
                            .build()
                            .map_err(|e| {
                                (
                                    "value",
                                    format!("bad regular expression: {}", one_line(&e.to_string())),
                                )
                            })?,
                    )),
                })
            }
        }
    }

    fn span(&self, lit: &Literal) -> Result<(Timestamp, Timestamp), (&'static str, String)> {
        parse_span(&string(lit)?, self.tz).map_err(|e| ("value", e))
    }
}

/// Hints at the operators a type does take.
fn suggest(ty: Ty) -> &'static str {
    match ty {
        Ty::Num => "; use gt, gte, lt, lte, between, equals or in",
        Ty::Str => "; use equals, contains, starts_with, ends_with, matches or in",
        Ty::Bool => "; use equals true/false",
        Ty::Time => "; use before, after or between dates",
        Ty::PageType | Ty::DeviceType | Ty::Weekday => "; use equals or in",
        Ty::Names | Ty::PageTypes => "; use contains or not_contains",
        Ty::Dynamic => "",
    }
}

fn scalar(lit: &Literal, ty: Ty, name: &str) -> Result<Scalar, (&'static str, String)> {
    let wrong = |want: &str| {
        (
            "value",
            format!(
                "{name} is {}, so the value must be {want}, not {lit}",
                ty.describe()
            ),
        )
    };
    match (ty, lit) {
        (Ty::Num | Ty::Dynamic, Literal::Num(n)) if !n.is_finite() => {
            Err(("value", format!("{n} is not a number a value can equal")))
        }
        (Ty::Num, Literal::Num(n)) => Ok(Scalar::Num(*n)),
        (Ty::Num, _) => Err(wrong("a number")),
        (Ty::Str, Literal::Str(s)) => Ok(Scalar::Str(s.as_str().into())),
        (Ty::Str, _) => Err(wrong("text")),
        (Ty::Bool, Literal::Bool(b)) => Ok(Scalar::Bool(*b)),
        (Ty::Bool, _) => Err(wrong("true or false")),
        (Ty::PageType, Literal::Str(s)) => s
            .parse::<PageType>()
            .map(|t| Scalar::Enum(t as u8))
            .map_err(|e| ("value", e)),
        (Ty::PageType, _) => Err(wrong(&format!("one of {}", vars::page_type_names()))),
        (Ty::DeviceType, Literal::Str(s)) => s
            .parse::<DeviceType>()
            .map(|t| Scalar::Enum(t as u8))
            .map_err(|e| ("value", e)),
        (Ty::DeviceType, _) => Err(wrong("desktop, tablet or mobile")),
        (Ty::Weekday, Literal::Str(s)) => s
            .parse::<Weekday>()
            .map(|d| Scalar::Enum(d.index()))
            .map_err(|e| ("value", e)),
        (Ty::Weekday, _) => Err(wrong("one of mon … sun")),
        (Ty::Dynamic, Literal::Num(n)) => Ok(Scalar::Num(*n)),
        (Ty::Dynamic, Literal::Str(s)) => Ok(Scalar::Str(s.as_str().into())),
        (Ty::Dynamic, Literal::Bool(b)) => Ok(Scalar::Bool(*b)),
        _ => Err(("value", format!("{lit} is not a single value"))),
    }
}

fn number(lit: &Literal) -> Result<f64, (&'static str, String)> {
    match lit {
        Literal::Num(n) if n.is_finite() => Ok(*n),
        other => Err(("value", format!("must be a number, not {other}"))),
    }
}

fn string(lit: &Literal) -> Result<String, (&'static str, String)> {
    match lit {
        Literal::Str(s) => Ok(s.clone()),
        other => Err(("value", format!("must be text, not {other}"))),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
