//! The wire shapes of `docs/wire-protocol.md`, and their conversion into engine events.
//!
//! This is the only module that knows JSON field names of the widget protocol. Conversion is
//! by hand so that every rejection says what is wrong.

use std::collections::BTreeMap;

use beckon_engine::{
    AttrValue, CartUpdate, Event, EventId, PageType, PageView, RuleId, Tracked, Utm,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most events one batch may carry.
pub const MAX_BATCH_EVENTS: usize = 100;
/// The largest request body accepted on `/v1/events`, and the largest WebSocket frame.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest string field accepted in an event (URLs, titles, names).
pub const MAX_FIELD_CHARS: usize = 2048;
/// The most traits or properties one event may carry.
pub const MAX_PROPS: usize = 32;

/// The longest order id accepted (it is the conversion's idempotency key).
pub const MAX_ORDER_ID_CHARS: usize = 128;

/// A batch as posted to `/v1/events?site=…`.
#[derive(Debug, Deserialize)]
pub struct Batch {
    /// The site key (also in the URL, which is what counts; must match when present).
    #[serde(default)]
    pub site: Option<String>,
    /// The visitor id the widget keeps (absent on a first visit).
    #[serde(default)]
    pub visitor: Option<String>,
    /// The token the server issued with the visitor id.
    #[serde(default)]
    pub token: Option<String>,
    /// The session id.
    pub session: String,
    /// About the browser.
    #[serde(default)]
    pub context: ClientContext,
    /// The events.
    pub events: Vec<Value>,
}

/// A WebSocket frame sent up.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UpFrame {
    /// A batch of events.
    Events {
        /// About the browser.
        #[serde(default)]
        context: Option<ClientContext>,
        /// The events.
        events: Vec<Value>,
    },
}

/// What the widget says about the browser.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ClientContext {
    /// The browser's first language (`navigator.languages[0]`, else `navigator.language`).
    #[serde(default)]
    pub lang: Option<String>,
    /// Minutes east of UTC.
    #[serde(default)]
    pub tz_offset: Option<i32>,
    /// `navigator.webdriver`: the browser says it is automated.
    #[serde(default)]
    pub webdriver: Option<bool>,
    /// The marks automation tools left in the page, as the widget found them
    /// (`beckon_bots::MARKERS`' names).
    #[serde(default)]
    pub automation: Option<Vec<String>>,
}

impl ClientContext {
    /// What the browser reports of its automation.
    pub fn automation(&self) -> beckon_bots::Automation<'_> {
        beckon_bots::Automation {
            webdriver: self.webdriver.unwrap_or(false),
            markers: self.automation.as_deref().unwrap_or_default(),
        }
    }
}

/// A frame sent down.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DownFrame {
    /// The visitor id and token this socket speaks for, from now on (sent first when the
    /// socket's own were missing or wrong).
    Identity(Identity),
    /// These events are stored.
    Ack {
        /// Their ids.
        ids: Vec<String>,
    },
    /// Show this.
    Intervention(Intervention),
    /// What was wrong.
    Error {
        /// The reason.
        error: String,
    },
    /// A person of the site started a conversation with this visitor: open the chat.
    ChatInvite,
}

/// A visitor id with its token, issued by the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The visitor id.
    pub visitor: String,
    /// Its token.
    pub token: String,
}

/// An intervention, as sent to the widget.
#[derive(Clone, Debug, Serialize)]
pub struct Intervention {
    /// Its id.
    pub id: String,
    /// The rule.
    pub rule: String,
    /// The rendered message.
    pub message: crate::wire_message::Message,
}

/// The answer to `POST /v1/events`.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// New events stored.
    pub accepted: usize,
    /// Events already stored before (resends).
    pub duplicates: usize,
    /// What fired in response.
    pub interventions: Vec<Intervention>,
    /// Set when the request's token was missing or wrong: the batch was filed under this new
    /// visitor, whom the widget is from now on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// An outcome event's claim: which intervention it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeOf {
    /// The intervention id, as the server sent it (empty when the event named none).
    pub intervention: String,
    /// The rule.
    pub rule: RuleId,
}

/// One incoming event, converted.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The client's id.
    pub id: EventId,
    /// The idempotency key: the id, or `order:<order id>` for a conversion with one.
    pub key: String,
    /// The wire type.
    pub kind: &'static str,
    /// The engine event.
    pub event: Event,
    /// For shown, dismissed, engaged and lead: the intervention it is about.
    pub outcome: Option<OutcomeOf>,
    /// The event's known fields as JSON, for the log: nothing the protocol does not know is
    /// ever stored.
    pub body: String,
}

/// The fields of each event type that are kept (besides `id`, `type` and `t`).
fn known_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "page" => &["url", "path", "title", "page_type", "referrer", "product"],
        "visibility" => &["visible"],
        "scroll" => &["depth"],
        "hover" | "click" => &["element", "item"],
        "cart" => &["value", "currency", "items"],
        "convert" => &["order_id", "value"],
        "identify" => &["traits"],
        "track" => &["name", "props"],
        "shown" | "dismissed" | "engaged" => &["rule", "intervention"],
        "lead" => &[
            "rule",
            "intervention",
            "email",
            "name",
            "question",
            "consent",
        ],
        "chat" => &["text"],
        _ => &[],
    }
}

/// The protocol's name for a type, as a static string (the log and the metrics use it).
fn kind_name(kind: &str) -> Option<&'static str> {
    const KINDS: &[&str] = &[
        "page",
        "visibility",
        "scroll",
        "exit_intent",
        "activity",
        "idle",
        "hover",
        "click",
        "cart",
        "convert",
        "identify",
        "track",
        "chat_opened",
        "chat_closed",
        "shown",
        "dismissed",
        "engaged",
        "lead",
        "chat",
        "conversation_started",
        "conversation_ended",
    ];
    KINDS.iter().copied().find(|k| *k == kind)
}

/// The engine event of a logged event, for a replay: the wire's events, and the server's own
/// `tick`.
pub fn logged_event(kind: &str, body: &str) -> Result<Event, String> {
    if kind == "tick" {
        return Ok(Event::Tick);
    }
    let value: Value = serde_json::from_str(body).map_err(|e| format!("logged body: {e}"))?;
    parse_event(0, value).map(|i| i.event)
}

/// The body the log keeps for a timer's tick.
pub const TICK_BODY: &str = "{\"type\":\"tick\"}";

/// Converts one wire event. Errors name the event and the field.
pub fn parse_event(index: usize, v: Value) -> Result<Incoming, String> {
    let at = |field: &str| format!("events[{index}].{field}");
    let obj = v
        .as_object()
        .ok_or_else(|| format!("events[{index}] must be an object"))?;
    let id = str_field(obj, "id", &at)?.ok_or_else(|| format!("{} is required", at("id")))?;
    let id = EventId::parse(&id).map_err(|e| format!("{} {e}", at("id")))?;
    let kind = str_field(obj, "type", &at)?.ok_or_else(|| format!("{} is required", at("type")))?;
    let kind =
        kind_name(&kind).ok_or_else(|| format!("{}: unknown event type {kind:?}", at("type")))?;
    let s = |f: &str| -> Result<String, String> { Ok(str_field(obj, f, &at)?.unwrap_or_default()) };
    let opt = |f: &str| str_field(obj, f, &at);
    let rule = || -> Result<RuleId, String> {
        let r = s("rule")?;
        RuleId::parse(&r).map_err(|e| format!("{} {e}", at("rule")))
    };
    let mut key = id.as_str().to_owned();
    let event = match kind {
        "page" => {
            let url = s("url")?;
            let page_type = match opt("page_type")? {
                None => None,
                Some(t) => Some(
                    t.parse::<PageType>()
                        .map_err(|e| format!("{}: {e}", at("page_type")))?,
                ),
            };
            Event::PageView(PageView {
                utm: utm_of(&url),
                path: match s("path")? {
                    p if p.is_empty() => "/".to_owned(),
                    p => p,
                },
                url,
                title: s("title")?,
                page_type,
                referrer: s("referrer")?,
                product: opt("product")?,
            })
        }
        "visibility" => Event::Visibility {
            visible: bool_field(obj, "visible", &at)?,
        },
        "scroll" => Event::Scroll {
            depth: num_field(obj, "depth", &at)?.clamp(0.0, 100.0) as u8,
        },
        "exit_intent" => Event::ExitIntent,
        "activity" => Event::Activity,
        "idle" => Event::Idle,
        "hover" | "click" => {
            let t = Tracked {
                element: s("element")?,
                item: opt("item")?,
            };
            if t.element.is_empty() {
                return Err(format!("{} is required", at("element")));
            }
            if kind == "hover" {
                Event::Hover(t)
            } else {
                Event::Click(t)
            }
        }
        "cart" => {
            let value = num_field(obj, "value", &at)?;
            let items = num_field(obj, "items", &at)?;
            if value < 0.0 || !(0.0..=1e6).contains(&items) {
                return Err(format!("{} and items must be non-negative", at("value")));
            }
            Event::Cart(CartUpdate {
                value,
                currency: s("currency")?
                    .chars()
                    .take(3)
                    .collect::<String>()
                    .to_uppercase(),
                items: items as u32,
            })
        }
        "convert" => {
            let order_id = opt("order_id")?.filter(|o| !o.is_empty());
            if let Some(order) = &order_id {
                if order.chars().count() > MAX_ORDER_ID_CHARS {
                    return Err(format!(
                        "{} is longer than {MAX_ORDER_ID_CHARS} characters",
                        at("order_id")
                    ));
                }
                // An order counts once per site, whoever reports it and however late.
                key = format!("order:{order}");
            }
            Event::Conversion {
                order_id,
                value: obj
                    .get("value")
                    .and_then(Value::as_f64)
                    .filter(|v| v.is_finite())
                    .unwrap_or(0.0),
            }
        }
        "identify" => Event::Identify {
            traits: props(obj.get("traits"), &at("traits"))?,
        },
        "track" => {
            let name = s("name")?;
            // Characters, not bytes: the widget counts what a person typed.
            if name.is_empty() || name.chars().count() > 64 {
                return Err(format!("{} must be 1 to 64 characters", at("name")));
            }
            Event::Track {
                name,
                props: props(obj.get("props"), &at("props"))?,
            }
        }
        "chat_opened" => Event::ChatOpened,
        "conversation_started" => Event::ConversationStarted,
        "conversation_ended" => Event::ConversationEnded,
        "chat_closed" => Event::ChatClosed,
        "shown" => Event::Shown { rule: rule()? },
        "dismissed" => Event::Dismissed { rule: rule()? },
        "engaged" => Event::Engaged { rule: rule()? },
        // The widget reports the engagement itself with `engaged`; the lead's details are for
        // the follow-up flow, which reads them from the log.
        "lead" => {
            rule()?;
            beckon_outbox::check_email(&s("email")?)
                .map_err(|e| format!("{}: {e}", at("email")))?;
            for (field, longest) in [("name", 200), ("question", 2000)] {
                if s(field)?.chars().count() > longest {
                    return Err(format!("{} is longer than {longest} characters", at(field)));
                }
            }
            if obj.get("consent") != Some(&Value::Bool(true)) {
                return Err(format!(
                    "{} must be true: a lead is only taken with the visitor's consent",
                    at("consent")
                ));
            }
            Event::Activity
        }
        // A chat message is activity for the engine; the conversation service reads it from
        // the log.
        "chat" => {
            s("text")?;
            Event::Activity
        }
        _ => unreachable!("kind_name admits only the types above"),
    };
    let outcome = match kind {
        "shown" | "dismissed" | "engaged" | "lead" => Some(OutcomeOf {
            intervention: s("intervention")?,
            rule: rule()?,
        }),
        _ => None,
    };
    let mut kept = serde_json::Map::new();
    for field in ["id", "type"].iter().chain(known_fields(kind)) {
        if let Some(value) = obj.get(*field) {
            kept.insert((*field).to_owned(), value.clone());
        }
    }
    // The client's clock, kept for the record when it is a number.
    if let Some(t) = obj.get("t").filter(|t| t.is_number()) {
        kept.insert("t".to_owned(), t.clone());
    }
    Ok(Incoming {
        id,
        key,
        kind,
        event,
        outcome,
        body: Value::Object(kept).to_string(),
    })
}

fn str_field(
    obj: &serde_json::Map<String, Value>,
    f: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<String>, String> {
    match obj.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_FIELD_CHARS => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!(
            "{} is longer than {MAX_FIELD_CHARS} characters",
            at(f)
        )),
        Some(_) => Err(format!("{} must be a string", at(f))),
    }
}

fn num_field(
    obj: &serde_json::Map<String, Value>,
    f: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<f64, String> {
    obj.get(f)
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("{} must be a number", at(f)))
}

fn bool_field(
    obj: &serde_json::Map<String, Value>,
    f: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<bool, String> {
    obj.get(f)
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("{} must be true or false", at(f)))
}

fn props(v: Option<&Value>, at: &str) -> Result<Vec<(String, AttrValue)>, String> {
    // `null` is "none", as for every other optional field: the backend's `/v1/track` forwards
    // an omitted `props` as null, which was refused as "must be an object".
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{at} must be an object"))?;
    if obj.len() > MAX_PROPS {
        return Err(format!("{at} has more than {MAX_PROPS} keys"));
    }
    let mut out = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        if k.is_empty() || k.chars().count() > 64 {
            return Err(format!("{at}: key {k:?} must be 1 to 64 characters"));
        }
        let value = match v {
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => AttrValue::Num(n.as_f64().unwrap_or(0.0)),
            Value::String(s) if s.chars().count() <= MAX_FIELD_CHARS => AttrValue::Str(s.clone()),
            Value::Null => continue,
            _ => return Err(format!("{at}.{k} must be text, a number or true/false")),
        };
        out.push((k.clone(), value));
    }
    Ok(out)
}

/// The campaign parameters of a URL's query string.
fn utm_of(url: &str) -> Utm {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    let params: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let get = |k: &str| {
        params
            .get(k)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string())
    };
    Utm {
        source: get("utm_source"),
        medium: get("utm_medium"),
        campaign: get("utm_campaign"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_events_carry_type_product_and_campaign() {
        let e = parse_event(
            0,
            json!({"id": "s:1", "type": "page", "url": "https://x.test/p?utm_source=news&utm_campaign=fall", "path": "/p", "title": "P", "page_type": "product", "product": "sku-1"}),
        )
        .unwrap();
        let Event::PageView(p) = e.event else {
            panic!("not a page view")
        };
        assert_eq!(p.page_type, Some(PageType::Product));
        assert_eq!(p.utm.source.as_deref(), Some("news"));
        assert_eq!(p.utm.campaign.as_deref(), Some("fall"));
        assert_eq!(p.product.as_deref(), Some("sku-1"));
    }

    #[test]
    fn malformed_events_are_refused_with_the_field_named() {
        let cases = [
            (json!({"type": "page"}), "events[0].id is required"),
            (
                json!({"id": "a", "type": "teleport"}),
                "unknown event type \"teleport\"",
            ),
            (
                json!({"id": "a", "type": "page", "page_type": "chekout"}),
                "events[0].page_type",
            ),
            (
                json!({"id": "a", "type": "scroll", "depth": "deep"}),
                "events[0].depth must be a number",
            ),
            (
                json!({"id": "a", "type": "cart", "value": -1, "items": 1}),
                "non-negative",
            ),
            (
                json!({"id": "a", "type": "dismissed", "rule": "<script>"}),
                "events[0].rule",
            ),
            (
                json!({"id": "a", "type": "track", "name": "x", "props": {"k": [1]}}),
                "events[0].props.k",
            ),
            (json!(["not", "an", "object"]), "must be an object"),
        ];
        for (input, want) in cases {
            let err = parse_event(0, input.clone()).unwrap_err();
            assert!(
                err.contains(want),
                "{input}: {err:?} should contain {want:?}"
            );
        }
    }
}
