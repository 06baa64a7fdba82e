//! A rule's AI-written greeting, put in place of its own text when the desk has one ready for
//! the visitor's context (see `beckon_agent::greeting`). The decision never waits: a greeting
//! not yet written leaves the rule's text, and what is shown is what the exposure records.

use beckon_agent::Desk;
use beckon_agent::greeting::GreetingAsk;
use serde_json::Value;

use crate::sites::SiteRuntime;
use crate::visit::Fired;
use crate::wire_message::Message;

/// The text a greeting replaces: a text's line, a card's body, an open chat's line.
fn greeting_text(m: &mut Message) -> Option<&mut String> {
    match m {
        Message::Text { text } => Some(text),
        Message::Card { body, .. } => Some(body),
        Message::OpenChat { text, .. } => text.as_mut(),
        _ => None,
    }
}

/// Bands of cart value, so that a greeting is written per kind of cart, not per cent.
fn cart_band(value: f64) -> &'static str {
    match value {
        v if v <= 0.0 => "empty",
        v if v < 50.0 => "small",
        v if v < 150.0 => "medium",
        _ => "large",
    }
}

/// A product's id as a greeting may name it: letters, digits, `-`, `_` and `.`, at most 64
/// (anything else is left out).
fn product_id(raw: &str) -> String {
    let ok = raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { raw.to_owned() } else { String::new() }
}

/// Puts ready greetings in place; `context` is the visitor's template context (computed only
/// when some fired rule asks for a greeting).
pub fn apply(
    desk: &Desk,
    site: &SiteRuntime,
    fired: &mut [Fired],
    context: impl FnOnce() -> Option<Value>,
) {
    let mut context = Some(context);
    let mut ctx: Option<Value> = None;
    for f in fired.iter_mut() {
        let Some(message) = f.message.as_mut() else {
            continue;
        };
        let Some(rule) = site.engine.rules().get(f.rule.as_str()) else {
            continue;
        };
        let Some(ai) = &rule.spec().ai_greeting else {
            continue;
        };
        if ctx.is_none() {
            ctx = context.take().and_then(|c| c());
        }
        let Some(c) = &ctx else {
            return;
        };
        let Some(text) = greeting_text(message) else {
            continue;
        };
        let s = |path: &[&str]| {
            let mut v = c;
            for p in path {
                v = &v[*p];
            }
            match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            }
        };
        let value = c["cart"]["value"].as_f64().unwrap_or(0.0);
        let language = s(&["visitor", "language"]);
        let returning = c["visitor"]["returning"].as_bool().unwrap_or(false);
        // Only what the key holds goes into the prompt, and nothing a visitor writes freely
        // (a page's title is the visitor's to forge: one visitor must not write the greeting
        // that others of the same context are shown).
        let product = product_id(&s(&["page", "product"]));
        let key = format!(
            "{}|{}|{}|{}|{}|{}",
            f.rule,
            s(&["page", "type"]),
            product,
            cart_band(value),
            language,
            returning
        );
        let described = format!(
            "on a {} page{}; cart: {}; {} visitor{}",
            s(&["page", "type"]),
            match product.as_str() {
                "" => String::new(),
                p => format!(" about the product {p}"),
            },
            match cart_band(value) {
                "empty" => "empty".to_owned(),
                band => format!("{band} ({} items)", s(&["cart", "items"])),
            },
            if returning { "a returning" } else { "a new" },
            if language.is_empty() {
                String::new()
            } else {
                format!(", language {language}")
            },
        );
        let ask = GreetingAsk {
            prompt: ai.prompt.clone(),
            max_chars: ai.max_chars,
            fixed: text.clone(),
            context: described,
            language,
        };
        if let Some(written) = desk.greeting(&site.record.id, key, ask) {
            *text = written;
        }
    }
}
