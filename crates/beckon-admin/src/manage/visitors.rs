//! Visitors: who is on a site now, and one visitor's timeline — pages, signals, decisions,
//! suppressions with their reasons, messages and outcomes — rebuilt from the log by the
//! engine, which also answers "why didn't rule X fire at 14:02?".

use beckon_engine::{Engine, Policy, SiteId, Timestamp, VisitorId};
use serde::Serialize;

use crate::AdminState;
use crate::auth::Actor;
use crate::error::{AdminError, AdminResult};

/// How far back "live" reaches.
pub const LIVE_MINUTES: i64 = 30;
/// The most live visitors listed.
pub const LIVE_LIMIT: usize = 200;

/// A visitor on the site now.
#[derive(Clone, Debug, Serialize)]
pub struct LiveVisitor {
    /// Their id.
    pub visitor: String,
    /// Last active (local time of the site).
    pub last_seen: String,
    /// The page they are on.
    pub path: String,
    /// Its type.
    pub page_type: String,
    /// Items in their cart.
    pub cart_items: u64,
    /// Their cart's value.
    pub cart_value: f64,
    /// Visits so far.
    pub visits: u64,
    /// Messages fired for them this visit.
    pub fired: u32,
}

/// One rule's verdict in a decision.
#[derive(Clone, Debug, Serialize)]
pub struct RuleLine {
    /// The rule.
    pub rule: String,
    /// The verdict's kind (`fired`, `condition_failed`, `held`, …).
    pub kind: String,
    /// The verdict in words.
    pub text: String,
}

/// One decision of the engine.
#[derive(Clone, Debug, Serialize)]
pub struct DecisionLine {
    /// When (milliseconds since the epoch).
    pub at_ms: i64,
    /// The event decided on.
    pub event: String,
    /// The guardrail that held every rule back, if one did, in words.
    pub held: Option<String>,
    /// Every rule's verdict, in the order tried.
    pub rules: Vec<RuleLine>,
}

/// One logged event.
#[derive(Clone, Debug, Serialize)]
pub struct EventLine {
    /// Its type.
    pub kind: String,
    /// Its fields, shortened.
    pub detail: String,
    /// `decided`, `logged` or `refused:…`.
    pub applied: String,
}

/// One batch of a visitor's timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineStep {
    /// When the server handled it (milliseconds since the epoch).
    pub at_ms: i64,
    /// `browser`, `backend` or `timer`.
    pub source: String,
    /// The session.
    pub session: Option<String>,
    /// Set when the edge judged the sender a bot, with why.
    pub bot: Option<String>,
    /// The events.
    pub events: Vec<EventLine>,
    /// What the engine decided, with its reasons.
    pub decisions: Vec<DecisionLine>,
    /// What fired: rule and arm (`treated` or `holdout`).
    pub fired: Vec<(String, String)>,
}

/// Rebuilds a visitor's timeline from the log (the running server's replay).
#[async_trait::async_trait]
pub trait Explainer: Send + Sync + 'static {
    /// The visitor's timeline, oldest first.
    async fn timeline(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
    ) -> Result<Vec<TimelineStep>, String>;
}

/// The answer to "why didn't rule X fire at T?".
#[derive(Clone, Debug, Serialize)]
pub struct Why {
    /// The rule asked about.
    pub rule: String,
    /// The decision the answer comes from: the last one at or before the time asked.
    pub decided_at: Option<String>,
    /// The event of that decision.
    pub event: Option<String>,
    /// The answer in words.
    pub answer: String,
    /// Whether the rule fired (or, held out, would have).
    pub fired: bool,
}

/// Formats an instant in the site's time zone.
pub fn local(policy: &Policy, t: Timestamp) -> String {
    let tz = Engine::timezone(policy);
    chrono::DateTime::from_timestamp_millis(t.as_millis())
        .map(|d| d.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Reads a local time typed by a person (`2026-12-01T14:02`, or `14:02` on the day of
/// `day`) in the site's time zone; the end of that minute, so that a decision at 14:02:40
/// counts as "at 14:02".
pub fn parse_local(policy: &Policy, text: &str, day: Timestamp) -> AdminResult<Timestamp> {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
    let tz = Engine::timezone(policy);
    let text = text.trim();
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
        .or_else(|_| {
            let time = NaiveTime::parse_from_str(text, "%H:%M")?;
            let date: NaiveDate = chrono::DateTime::from_timestamp_millis(day.as_millis())
                .map(|d| d.with_timezone(&tz).date_naive())
                .unwrap_or_default();
            Ok::<_, chrono::ParseError>(date.and_time(time))
        })
        .map_err(|_| AdminError::field("at", format!("{text:?} is not a time such as 14:02")))?;
    let local = tz
        .from_local_datetime(&naive)
        .earliest()
        .ok_or_else(|| AdminError::field("at", format!("{text} does not exist in {}", tz)))?;
    Ok(Timestamp::from_millis(local.timestamp_millis() + 59_999))
}

/// Answers "why didn't `rule` fire at `at`?" from a timeline.
pub fn why(timeline: &[TimelineStep], policy: &Policy, rule: &str, at: Timestamp) -> Why {
    let decision = timeline
        .iter()
        .flat_map(|s| s.decisions.iter())
        .rfind(|d| d.at_ms <= at.as_millis());
    let Some(d) = decision else {
        return Why {
            rule: rule.to_owned(),
            decided_at: None,
            event: None,
            answer: "nothing was decided for this visitor by then: no event had arrived".to_owned(),
            fired: false,
        };
    };
    let decided_at = Some(local(policy, Timestamp::from_millis(d.at_ms)));
    let (answer, fired) = match d.rules.iter().find(|r| r.rule == rule) {
        Some(r) => (r.text.clone(), matches!(r.kind.as_str(), "fired" | "ghost")),
        None => match &d.held {
            Some(h) => (format!("no rule was tried: {h}"), false),
            None => (
                "the rule did not exist in the rule set in force then".to_owned(),
                false,
            ),
        },
    };
    Why {
        rule: rule.to_owned(),
        decided_at,
        event: Some(d.event.clone()),
        answer,
        fired,
    }
}

/// The site's visitors active in the last [`LIVE_MINUTES`] (people only).
pub async fn live(state: &AdminState, actor: &Actor, key: &str) -> AdminResult<Vec<LiveVisitor>> {
    let site = actor.site(key)?;
    let policy = crate::manage::sites::get(state, actor, key).await?.policy;
    let since = crate::clock::now().plus_ms(-LIVE_MINUTES * 60_000);
    let records = state
        .insight
        .recent_visitors(&site, since, LIVE_LIMIT)
        .await?;
    Ok(records
        .into_iter()
        .filter_map(|r| {
            // The store leaves bots' visits out: they are in the log, not among the people.
            let session = r.session?;
            let ctx = serde_json::to_value(session.state.template_context(&r.profile)).ok()?;
            Some(LiveVisitor {
                visitor: r.visitor.as_str().to_owned(),
                last_seen: local(&policy, r.last_seen),
                path: ctx["page"]["path"].as_str().unwrap_or("").to_owned(),
                page_type: ctx["page"]["type"].as_str().unwrap_or("other").to_owned(),
                cart_items: ctx["cart"]["items"].as_u64().unwrap_or(0),
                cart_value: ctx["cart"]["value"].as_f64().unwrap_or(0.0),
                visits: ctx["visitor"]["visits"].as_u64().unwrap_or(0),
                fired: session.state.fired(),
            })
        })
        .collect())
}

/// One visitor's timeline.
pub async fn timeline(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    visitor: &str,
) -> AdminResult<Vec<TimelineStep>> {
    let site = actor.site(key)?;
    let visitor = VisitorId::parse(visitor)
        .map_err(|_| AdminError::NotFound(format!("no visitor {visitor:?}")))?;
    let explainer = state
        .explainer
        .as_ref()
        .ok_or_else(|| AdminError::Conflict("the timeline needs a running server".to_owned()))?;
    let steps = explainer
        .timeline(&site, &visitor)
        .await
        .map_err(AdminError::Store)?;
    if steps.is_empty() {
        return Err(AdminError::NotFound(format!(
            "no visitor {:?} in the log",
            visitor.as_str()
        )));
    }
    Ok(steps)
}
