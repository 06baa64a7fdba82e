//! Team alerts to a Slack-compatible incoming webhook: `{"text": …}` in Slack's markup, with
//! what a visitor typed escaped as Slack asks (`&`, `<`, `>`), so an address or a question can
//! never become a mention or a link of its own.

use std::time::Instant;

use beckon_engine::Timestamp;
use beckon_store::outbox::{Target, Topic};
use serde_json::Value;

use crate::webhook::{Tried, classify};

/// Slack's escaping of text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The alert's text for an event's payload.
pub fn text(topic: Topic, payload: &Value) -> String {
    let s = |v: &Value| escape(v.as_str().unwrap_or_default());
    let lead = &payload["data"]["lead"];
    let who = || {
        let mut who = format!("*{}*", s(&lead["email"]));
        if !s(&lead["name"]).is_empty() {
            who.push_str(&format!(" ({})", s(&lead["name"])));
        }
        who
    };
    let question = || {
        let q = s(&lead["question"]);
        if q.is_empty() {
            String::new()
        } else {
            format!("\n> {}", q.replace('\n', "\n> "))
        }
    };
    let page = || {
        lead["context"]["visit"]["pages"]
            .as_array()
            .and_then(|p| p.last())
            .map(|p| format!(" on {}", s(&p["path"])))
            .unwrap_or_default()
    };
    match topic {
        Topic::LeadCreated => format!("New lead: {}{}{}", who(), page(), question()),
        Topic::LeadOverdue => format!(
            ":warning: Nobody has contacted {} yet (captured {}){}",
            who(),
            s(&lead["created_at"]),
            question()
        ),
        Topic::LeadUpdated => format!("Lead {} is now {}", who(), s(&lead["status"])),
        Topic::TestSample => "A test from Beckon: this channel receives team alerts.".to_owned(),
        other => {
            let c = &payload["data"]["conversation"];
            format!(
                "Conversation {} with visitor {}: {}",
                s(&c["id"]),
                s(&c["visitor"]),
                other.as_str()
            )
        }
    }
}

/// Sends an alert.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    topic: Topic,
    payload: &str,
    now: Timestamp,
) -> Tried {
    let began = Instant::now();
    let Target::Slack { url } = target else {
        return Tried::failed("not a team chat".to_owned(), began.elapsed());
    };
    let value: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let body = serde_json::json!({ "text": text(topic, &value) });
    let sent = client.post(url).json(&body).send().await;
    classify(sent, now, began).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_visitor_typed_cannot_mention_or_link() {
        let payload = serde_json::json!({"data": {"lead": {
            "email": "<!channel>@x.example", "name": "<http://evil|click>", "question": "a & b",
            "context": {"visit": {"pages": [{"path": "/p/<x>"}]}},
        }}});
        let t = text(Topic::LeadCreated, &payload);
        // No `<` at all (Slack's links and mentions), `>` only as the quote's own marker.
        assert!(!t.contains('<'), "{t}");
        assert!(
            t.lines().all(|l| !l.contains('>') || l.starts_with("> ")),
            "{t}"
        );
        assert!(t.contains("&lt;!channel&gt;@x.example"));
        assert!(t.contains("&lt;http://evil|click&gt;"));
        assert!(t.contains("a &amp; b"));
        assert!(t.contains("/p/&lt;x&gt;"));
    }
}
