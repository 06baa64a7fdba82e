//! What a person taking over a conversation sees of the visit: the pages, the cart, the device,
//! the referrer and the traits, read from the visitor's logged batches (whose event bodies are
//! the wire's fields, which only this crate knows).

use beckon_store::LoggedBatch;
use beckon_store::conversations::{CartSeen, Context, MAX_CONTEXT_PAGES, PageSeen};
use serde_json::Value;

use crate::edge;

/// The visit's context, from its batches (oldest first).
pub fn from_log(batches: &[LoggedBatch]) -> Context {
    let mut c = Context::default();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    for b in batches {
        if !b.context.user_agent.is_empty() && c.device.is_empty() {
            let d = edge::device(&b.context.user_agent);
            c.device = d.kind.as_str().to_owned();
            c.browser = match d.browser_version {
                0 => d.browser.clone(),
                v => format!("{} {v}", d.browser),
            };
            c.os = d.os;
        }
        if let Some(lang) = &b.context.language {
            c.language = lang.clone();
        }
        for e in &b.events {
            let Ok(body) = serde_json::from_str::<Value>(&e.body) else {
                continue;
            };
            match e.kind.as_str() {
                "page" => {
                    let referrer = text(&body, "referrer");
                    if c.referrer.is_empty() && !referrer.is_empty() {
                        c.referrer = referrer;
                    }
                    c.pages.push(PageSeen {
                        path: text(&body, "path"),
                        title: text(&body, "title"),
                        page_type: text(&body, "page_type"),
                        at: b.at,
                    });
                }
                "cart" => {
                    c.cart = Some(CartSeen {
                        value: body.get("value").and_then(Value::as_f64).unwrap_or(0.0),
                        currency: text(&body, "currency"),
                        items: body
                            .get("items")
                            .and_then(Value::as_u64)
                            .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32),
                    });
                }
                "identify" => {
                    if let Some(traits) = body.get("traits").and_then(Value::as_object) {
                        for (k, v) in traits.iter().take(32) {
                            let v = match v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            c.traits.retain(|(name, _)| name != k);
                            c.traits.push((k.clone(), v));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let extra = c.pages.len().saturating_sub(MAX_CONTEXT_PAGES);
    c.pages.drain(..extra);
    c
}
