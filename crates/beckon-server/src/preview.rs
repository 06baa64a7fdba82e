//! Previews for the rule editor: a draft rule's message rendered by the engine for a sample
//! visitor, and served to the real `widget.js` in an isolated frame through the same wire
//! protocol a site's visitors get (`/preview/{token}/v1/events` and `/v1/ws`). Nothing of a
//! preview touches a shard, the log or any visitor: it lives in memory for a few minutes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use beckon_engine::rules::message::render_or_plain;
use beckon_engine::rules::{RuleFile, RuleSet, RuleSpec};
use beckon_engine::{
    AttrValue, CartUpdate, Device, DeviceType, Engine, Event, PageType, PageView, Policy, Profile,
    SessionStart, SiteId, Timestamp, Utm, VisitorId,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::wire_message::Message;

/// How long a preview can be fetched.
pub const PREVIEW_TTL: Duration = Duration::from_secs(15 * 60);
/// The most previews held at once (the oldest goes first).
pub const MAX_PREVIEWS: usize = 1_000;

/// The sample visitor a preview is drawn for; every field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sample {
    /// The page type (`product`, `checkout`, …).
    pub page_type: Option<String>,
    /// The page's path.
    pub path: Option<String>,
    /// The page's title.
    pub title: Option<String>,
    /// The product or plan the page is about.
    pub product: Option<String>,
    /// Items in the cart.
    pub cart_items: Option<u32>,
    /// The cart's value.
    pub cart_value: Option<f64>,
    /// The cart's currency.
    pub currency: Option<String>,
    /// The visitor's language (`fr`): picks the rule's translation.
    pub language: Option<String>,
    /// `desktop`, `tablet` or `mobile`.
    pub device: Option<String>,
    /// Traits, as `identify` would set them.
    pub traits: HashMap<String, String>,
}

/// The most traits a sample may carry.
const MAX_TRAITS: usize = 20;

/// Renders `rule`'s message for `sample` under `policy`, as the widget would receive it.
/// Errors say what is wrong with the rule or the sample.
pub fn render(
    site: &SiteId,
    policy: &Policy,
    rule: RuleSpec,
    sample: &Sample,
) -> Result<Value, String> {
    if sample.traits.len() > MAX_TRAITS {
        return Err(format!("a sample may have at most {MAX_TRAITS} traits"));
    }
    let id = rule.id.clone();
    let rules = RuleSet::compile(RuleFile { rules: vec![rule] }, Engine::timezone(policy))
        .map_err(|e| e.to_string())?;
    let engine = Engine::new(site.clone(), policy.clone(), rules).map_err(|e| e.to_string())?;
    let now = Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    );
    let kind = match sample.device.as_deref() {
        Some(d) => d.parse::<DeviceType>()?,
        None => DeviceType::Desktop,
    };
    let language = sample.language.clone().filter(|l| !l.trim().is_empty());
    let start = SessionStart {
        device: Device {
            kind,
            browser: "Chrome".to_owned(),
            browser_version: 131,
            os: "macOS".to_owned(),
        },
        bot: false,
        language: language.clone(),
        utc_offset_minutes: 0,
    };
    let visitor = VisitorId::parse("preview").expect("a valid id");
    let mut profile = Profile::default();
    let mut session = engine.start_session(visitor, start, &mut profile, now);
    let page_type = match sample.page_type.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(t.parse::<PageType>()?),
        None => None,
    };
    let path = sample.path.clone().unwrap_or_else(|| "/".to_owned());
    let mut events = vec![Event::PageView(PageView {
        url: format!("https://shop.example{path}"),
        path,
        title: sample.title.clone().unwrap_or_default(),
        page_type,
        referrer: String::new(),
        product: sample.product.clone().filter(|p| !p.is_empty()),
        utm: Utm::default(),
    })];
    if sample.cart_items.is_some() || sample.cart_value.is_some() {
        events.push(Event::Cart(CartUpdate {
            value: sample.cart_value.unwrap_or(0.0),
            currency: sample.currency.clone().unwrap_or_else(|| "USD".to_owned()),
            items: sample.cart_items.unwrap_or(0),
        }));
    }
    if !sample.traits.is_empty() {
        events.push(Event::Identify {
            traits: sample
                .traits
                .iter()
                .map(|(k, v)| (k.clone(), AttrValue::Str(v.clone())))
                .collect(),
        });
    }
    for event in &events {
        // Only the state matters: whether the conditions hold for the sample is the
        // backtest's question, not the preview's.
        let _ = engine.decide(&mut session, &mut profile, event, now);
    }
    let compiled = engine.rules().get(&id).ok_or("the rule did not compile")?;
    let template = compiled.message_for(language.as_deref());
    let (rendered, _) = render_or_plain(template, &session.template_context(&profile));
    Ok(json!({
        "type": "intervention",
        "id": "preview",
        "rule": id,
        "message": Message::from(&rendered),
    }))
}

/// The previews held, by token.
#[derive(Default)]
pub struct Previews {
    held: Mutex<HashMap<String, (Instant, Value)>>,
}

impl Previews {
    /// Keeps `intervention` for [`PREVIEW_TTL`]; returns its token.
    pub fn keep(&self, intervention: Value) -> String {
        let mut bytes = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, (at, _)| at.elapsed() < PREVIEW_TTL);
        if held.len() >= MAX_PREVIEWS
            && let Some(oldest) = held
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            held.remove(&oldest);
        }
        held.insert(token.clone(), (Instant::now(), intervention));
        token
    }

    fn get(&self, token: &str) -> Option<Value> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(token)
            .filter(|(at, _)| at.elapsed() < PREVIEW_TTL)
            .map(|(_, v)| v.clone())
    }
}

/// What a preview answers a batch: every event acknowledged, and the intervention when the
/// batch holds a page view (once per page, as a visitor would see it).
fn answer(batch: &Value, intervention: &Value) -> (Vec<Value>, Option<Value>) {
    let events = batch["events"].as_array().cloned().unwrap_or_default();
    let ids: Vec<Value> = events
        .iter()
        .filter_map(|e| e.get("id").cloned())
        .take(100)
        .collect();
    let page = events.iter().any(|e| e["type"] == "page");
    (ids, page.then(|| intervention.clone()))
}

fn open_cors(mut response: Response) -> Response {
    // The frame is sandboxed (an opaque origin) and sends no credentials.
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// `POST /preview/{token}/v1/events`.
pub async fn events(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(intervention) = state.previews.get(&token) else {
        return open_cors(
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "this preview has expired"})),
            )
                .into_response(),
        );
    };
    let batch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (ids, shown) = answer(&batch, &intervention);
    let body = json!({
        "accepted": ids.len(),
        "duplicates": 0,
        "interventions": shown.into_iter().collect::<Vec<_>>(),
    });
    open_cors((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `GET /preview/{token}/v1/ws`.
pub async fn socket(
    State(state): State<AppState>,
    Path(token): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(intervention) = state.previews.get(&token) else {
        return (StatusCode::NOT_FOUND, "this preview has expired").into_response();
    };
    upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| serve_socket(socket, intervention))
}

async fn serve_socket(mut socket: WebSocket, intervention: Value) {
    let idle = Duration::from_secs(60);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(idle, socket.recv()).await {
        let Frame::Text(text) = frame else { continue };
        let batch: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let (ids, shown) = answer(&batch, &intervention);
        let ack = json!({"type": "ack", "ids": ids}).to_string();
        if socket.send(Frame::Text(ack.into())).await.is_err() {
            return;
        }
        if let Some(iv) = shown
            && socket
                .send(Frame::Text(iv.to_string().into()))
                .await
                .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(message: Value) -> RuleSpec {
        serde_json::from_value(json!({
            "id": "draft", "name": "Draft", "when": {"all": [
                {"var": "behaviour.exit_intent", "op": "equals", "value": true}]},
            "message": message,
            "translations": {"fr": {"type": "text", "text": "Attendez : {{ cart.items }} articles"}},
        }))
        .unwrap()
    }

    #[test]
    fn a_draft_renders_for_the_sample_whether_or_not_its_conditions_hold() {
        let site = SiteId::parse("shop").unwrap();
        let sample = Sample {
            cart_items: Some(3),
            cart_value: Some(120.0),
            traits: HashMap::from([("name".to_owned(), "Ada".to_owned())]),
            ..Sample::default()
        };
        let message = json!({"type": "text", "text": "{{ visitor.traits.name }}, {{ cart.items }} items wait"});
        let iv = render(&site, &Policy::default(), rule(message.clone()), &sample).unwrap();
        assert_eq!(iv["message"]["text"], "Ada, 3 items wait");
        assert_eq!(iv["rule"], "draft");
        let french = Sample {
            language: Some("fr".to_owned()),
            ..sample
        };
        let iv = render(&site, &Policy::default(), rule(message), &french).unwrap();
        assert_eq!(iv["message"]["text"], "Attendez : 3 articles");
    }

    #[test]
    fn a_rule_the_engine_refuses_or_a_bad_sample_says_why() {
        let site = SiteId::parse("shop").unwrap();
        let bad = json!({"type": "text", "text": ""});
        let mut spec = rule(bad);
        spec.when =
            serde_json::from_value(json!({"all": [{"var": "nope", "op": "equals", "value": 1}]}))
                .unwrap();
        let e = render(&site, &Policy::default(), spec, &Sample::default()).unwrap_err();
        assert!(e.contains("unknown variable"), "{e}");
        let sample = Sample {
            page_type: Some("spaceship".to_owned()),
            ..Sample::default()
        };
        let ok_rule = rule(json!({"type": "text", "text": "hi"}));
        assert!(render(&site, &Policy::default(), ok_rule, &sample).is_err());
    }
}
