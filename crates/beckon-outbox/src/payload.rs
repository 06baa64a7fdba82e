//! What destinations are sent: one JSON document per event, in the shape the Standard Webhooks
//! specification recommends (`type`, `timestamp`, `data`). This module is the only place that
//! knows it; `docs/webhooks.md` documents it for receivers.
//!
//! A payload is made once, when the event happens, and stored; every try sends the same bytes.

use beckon_engine::Timestamp;
use beckon_store::conversations::{Context, Conversation, Message};
use beckon_store::leads::{Lead, LeadContext, LeadId, LeadStatus, NewLead};
use beckon_store::outbox::{NewEvent, Topic};
use serde_json::{Value, json};

/// An instant as RFC 3339 in UTC, with milliseconds.
pub fn rfc3339(at: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(at.as_millis())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn envelope(topic: Topic, at: Timestamp, data: Value, lead: Option<LeadId>) -> NewEvent {
    let body = json!({
        "type": topic.as_str(),
        "timestamp": rfc3339(at),
        "data": data,
    });
    NewEvent {
        topic,
        payload: body.to_string(),
        lead,
    }
}

fn visit(c: &Context) -> Value {
    json!({
        "pages": c.pages.iter().map(|p| json!({
            "path": p.path, "title": p.title, "page_type": p.page_type, "at": rfc3339(p.at),
        })).collect::<Vec<_>>(),
        "cart": c.cart.as_ref().map(|cart| json!({
            "value": cart.value, "currency": cart.currency, "items": cart.items,
        })),
        "device": c.device,
        "browser": c.browser,
        "os": c.os,
        "referrer": c.referrer,
        "language": c.language,
        "traits": c.traits.iter().map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect::<serde_json::Map<_, _>>(),
    })
}

fn context(c: &LeadContext) -> Value {
    json!({
        "visit": visit(&c.visit),
        "rule": c.rule,
        "intervention": c.intervention,
        "conversation": c.conversation.as_ref().map(|c| c.as_str()),
        "transcript": c.transcript.iter().map(|l| json!({
            "author": l.author, "text": l.text, "at": rfc3339(l.at),
        })).collect::<Vec<_>>(),
    })
}

/// The lead as every lead event carries it.
fn stored_lead(l: &Lead) -> Value {
    json!({
        "id": l.id.as_str(),
        "visitor": l.visitor.as_ref().map(|v| v.as_str()),
        "email": l.email,
        "name": l.name,
        "question": l.question,
        "consent": { "text": l.consent.text, "at": rfc3339(l.consent.at) },
        "source": l.source.as_str(),
        "status": l.status.as_str(),
        "owner": l.owner,
        "context": context(&l.context),
        "created_at": rfc3339(l.created_at),
        "contacted_at": l.contacted_at.map(rfc3339),
    })
}

/// `lead.created`, for a lead about to be captured.
pub fn lead_created(l: &NewLead) -> NewEvent {
    let lead = Lead {
        id: l.id.clone(),
        site: l.site.clone(),
        visitor: l.visitor.clone(),
        email: l.email.clone(),
        name: l.name.clone(),
        question: l.question.clone(),
        consent: l.consent.clone(),
        source: l.source,
        context: l.context.clone(),
        status: LeadStatus::New,
        owner: None,
        created_at: l.at,
        contacted_at: None,
        overdue_at: None,
    };
    envelope(
        Topic::LeadCreated,
        l.at,
        json!({ "lead": stored_lead(&lead) }),
        Some(l.id.clone()),
    )
}

/// `lead.updated`: its status or owner changed.
pub fn lead_updated(l: &Lead, at: Timestamp) -> NewEvent {
    envelope(
        Topic::LeadUpdated,
        at,
        json!({ "lead": stored_lead(l) }),
        Some(l.id.clone()),
    )
}

/// `lead.overdue`: nobody contacted it in time.
pub fn lead_overdue(l: &Lead) -> NewEvent {
    let at = l.overdue_at.unwrap_or(l.created_at);
    envelope(
        Topic::LeadOverdue,
        at,
        json!({ "lead": stored_lead(l) }),
        Some(l.id.clone()),
    )
}

/// Announces overdue leads (for [`beckon_store::leads::Leads::take_overdue`]).
pub struct Overdue;

impl beckon_store::leads::AnnounceOverdue for Overdue {
    fn announce(&self, lead: &Lead) -> NewEvent {
        lead_overdue(lead)
    }
}

fn conversation_data(c: &Conversation) -> Value {
    json!({
        "id": c.id.as_str(),
        "visitor": c.visitor.as_str(),
        "status": c.status.as_str(),
        "department": c.department,
        "assignee": c.assignee,
        "origin": c.origin,
        "prechat": c.prechat,
        "handoff": c.handoff,
        "context": visit(&c.context),
        "started_at": rfc3339(c.started_at),
        "closed_at": c.closed.map(|(at, _)| rfc3339(at)),
        "closed_by": c.closed.map(|(_, by)| by.as_str()),
        "rating": c.rating.as_ref().map(|r| json!({
            "score": r.score, "comment": r.comment, "at": rfc3339(r.at),
        })),
    })
}

fn transcript(messages: &[Message]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                json!({
                    "seq": m.seq,
                    "author": m.author,
                    "name": m.author_name,
                    "text": m.text,
                    "file": m.attachment.as_ref().map(|a| a.name.clone()),
                    "at": rfc3339(m.at),
                })
            })
            .collect(),
    )
}

/// A conversation event: started, handed off, closed, rated. The transcript goes with every
/// one but the start, so a CRM can keep the whole exchange with the customer's record.
pub fn conversation(
    topic: Topic,
    c: &Conversation,
    messages: &[Message],
    at: Timestamp,
) -> NewEvent {
    let mut data = json!({ "conversation": conversation_data(c) });
    if topic != Topic::ConversationStarted {
        data["transcript"] = transcript(messages);
    }
    envelope(topic, at, data, None)
}

/// The test button's sample: a lead-shaped example, marked as a test.
pub fn sample(at: Timestamp) -> NewEvent {
    envelope(
        Topic::TestSample,
        at,
        json!({
            "test": true,
            "message": "A test from Beckon: this endpoint receives signed deliveries.",
        }),
        None,
    )
}
