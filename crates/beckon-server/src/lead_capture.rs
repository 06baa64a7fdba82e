//! Leads from the e-mail capture form: a `lead` event the visit accepted (its intervention was
//! issued to this visitor) becomes a [`NewLead`] in the same write as the event itself, with
//! the consent in the words the rule showed and the visit's context, and its announcement to
//! the site's destinations. The wire's field names are known here, and only here and in `wire`.

use beckon_engine::Engine;
use beckon_engine::rules::message::Message;
use beckon_engine::{SiteId, Timestamp, VisitorId};
use beckon_store::conversations::{CartSeen, Context, PageSeen};
use beckon_store::leads::{Consent, LeadContext, LeadId, LeadSource, NewLead};
use beckon_store::{Applied, BatchContext, LoggedEvent};
use serde_json::Value;

use crate::edge;

/// The leads that `events` capture.
pub fn captured(
    engine: &Engine,
    site: &SiteId,
    visitor: &VisitorId,
    events: &[LoggedEvent],
    request: &BatchContext,
    visit: impl FnOnce() -> Option<Value>,
    now: Timestamp,
) -> Vec<NewLead> {
    let is_lead = |e: &&LoggedEvent| e.kind == "lead" && e.applied == Applied::Decided;
    // Nearly every batch holds none: the visit's context is made only for one that does.
    if !events.iter().any(|e| is_lead(&e)) {
        return Vec::new();
    }
    let visit = visit();
    events
        .iter()
        // Only a lead the engine took: its intervention was issued to this visitor in this
        // visit. One only logged (a late event of an ended visit, whose outcome nobody checks)
        // or refused captures nothing.
        .filter(is_lead)
        .filter_map(|e| serde_json::from_str::<Value>(&e.body).ok())
        .filter_map(|body| {
            let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").trim();
            // `wire` checked the address already; a lead without one is no lead.
            let email = beckon_outbox::check_email(text("email")).ok()?;
            let rule = text("rule").to_owned();
            let language = request.language.as_deref();
            let consent = match engine.rules().get(&rule).map(|r| r.message_for(language)) {
                Some(Message::EmailCapture { consent, .. }) => consent.clone(),
                _ => format!("The consent shown by rule {rule:?} (no longer an e-mail capture)"),
            };
            let mut lead = NewLead {
                id: LeadId::random(),
                site: site.clone(),
                visitor: Some(visitor.clone()),
                email,
                name: text("name").to_owned(),
                question: text("question").to_owned(),
                consent: Consent {
                    text: consent,
                    at: now,
                },
                source: LeadSource::Capture,
                context: LeadContext {
                    visit: context(request, visit.as_ref(), now),
                    rule: Some(rule),
                    intervention: Some(text("intervention").to_owned()),
                    conversation: None,
                    transcript: Vec::new(),
                },
                at: now,
                announce: Vec::new(),
            };
            lead.announce = vec![beckon_outbox::payload::lead_created(&lead)];
            Some(lead)
        })
        .collect()
}

/// The visit as the shard knows it: the page the form was sent from, the cart, the device, the
/// language and the traits (the whole list of pages lives in the log).
fn context(request: &BatchContext, visit: Option<&Value>, now: Timestamp) -> Context {
    let null = Value::Null;
    let v = visit.unwrap_or(&null);
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let device = edge::device(&request.user_agent);
    let page = &v["page"];
    let cart = &v["cart"];
    Context {
        pages: (!text(&page["path"]).is_empty())
            .then(|| PageSeen {
                path: text(&page["path"]),
                title: text(&page["title"]),
                page_type: text(&page["type"]),
                at: now,
            })
            .into_iter()
            .collect(),
        cart: cart["value"].as_f64().map(|value| CartSeen {
            value,
            currency: text(&cart["currency"]),
            items: cart["items"]
                .as_u64()
                .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32),
        }),
        device: device.kind.as_str().to_owned(),
        browser: match device.browser_version {
            0 => device.browser.clone(),
            n => format!("{} {n}", device.browser),
        },
        os: device.os,
        referrer: String::new(),
        language: request.language.clone().unwrap_or_default(),
        traits: v["visitor"]["traits"]
            .as_object()
            .map(|t| {
                t.iter()
                    .take(32)
                    .map(|(k, v)| match v {
                        Value::String(s) => (k.clone(), s.clone()),
                        other => (k.clone(), other.to_string()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beckon_engine::rules::RuleSet;
    use beckon_engine::{EventId, Policy};

    fn event(applied: Applied) -> LoggedEvent {
        LoggedEvent {
            key: "k1".to_owned(),
            id: EventId::parse("k1").unwrap(),
            kind: "lead".to_owned(),
            body: r#"{"rule":"capture","intervention":"i_1","email":"ada@example.com","consent":true}"#
                .to_owned(),
            applied,
        }
    }

    #[test]
    fn only_a_lead_the_engine_took_is_captured() {
        let site = SiteId::parse("shop").unwrap();
        let engine = Engine::new(
            site.clone(),
            Policy::default(),
            RuleSet::from_rules(Vec::new(), beckon_engine::Tz::UTC),
        )
        .unwrap();
        let visitor = VisitorId::parse("v_00000000000000000001").unwrap();
        let take = |applied| {
            captured(
                &engine,
                &site,
                &visitor,
                &[event(applied)],
                &BatchContext::default(),
                || None,
                Timestamp::from_millis(1),
            )
        };
        let taken = take(Applied::Decided);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].email, "ada@example.com");
        assert_eq!(taken[0].announce.len(), 1);
        assert!(
            take(Applied::Logged).is_empty(),
            "a late event of an ended visit"
        );
        assert!(take(Applied::Refused("never issued".to_owned())).is_empty());
    }
}
