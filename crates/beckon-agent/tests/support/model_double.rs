//! A stand-in for a hosted model: a real HTTP server in the test process speaking the
//! chat-completions wire format — server-sent `chat.completion.chunk`s ending with
//! `data: [DONE]`, tool calls sent in fragments joined by index, usage in the last chunk. It
//! answers by a script, from what it is sent, so a test can tell what reached it:
//! - a conversation holding a tool's answer gets a sentence made from that answer (the product's
//!   name, stock and price), streamed in pieces;
//! - a question about stock gets a `lookup_product` call, its arguments split across chunks;
//! - anything else gets "The model says: …" streamed word by word.
//!
//! Knobs: statuses to answer first (a 500, a 429 with `Retry-After`), a delay before answering,
//! and answering with one JSON body instead of a stream. Every request body is kept.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the double does and what it was sent.
#[derive(Default)]
pub struct Script {
    /// Statuses to answer, one per request, before answering normally.
    pub fail_first: Vec<u16>,
    /// Waits this long before answering.
    pub delay: Option<Duration>,
    /// Answers one JSON completion instead of a stream.
    pub whole: bool,
    /// Every request body, in order.
    pub requests: Vec<Value>,
    /// The `Authorization` header of each request.
    pub auth: Vec<Option<String>>,
}

/// A running double.
pub struct ModelDouble {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    /// Its script and record.
    pub script: Arc<Mutex<Script>>,
}

impl ModelDouble {
    /// Starts the double on a free port.
    pub async fn start() -> ModelDouble {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(completions))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ModelDouble { base_url, script }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.script.lock().unwrap().requests.clone()
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({
        "id": "chatcmpl-double", "object": "chat.completion.chunk", "created": 1, "model": "double",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
    });
    format!("data: {c}\n\n")
}

/// What the script says to this conversation: text pieces, or tool-call fragments.
fn answer(messages: &[Value]) -> (Vec<String>, bool) {
    if let Some(tool) = messages.iter().rev().find(|m| m["role"] == "tool") {
        let result: Value =
            serde_json::from_str(tool["content"].as_str().unwrap_or("{}")).unwrap_or_default();
        if let Some(status) = result["status"].as_str() {
            let text = format!(
                "Your order {} is {status}.",
                result["order_id"].as_str().unwrap_or("?")
            );
            return (
                text.split_inclusive(' ').map(str::to_owned).collect(),
                false,
            );
        }
        let p = &result["products"][0];
        let text = match p["name"].as_str() {
            Some(name) => format!(
                "Good news: the {name} is in stock, {} left, at {} {}.",
                p["stock"],
                p["price"],
                p["currency"].as_str().unwrap_or("")
            ),
            None => "I could not find that product.".to_owned(),
        };
        let pieces = text.split_inclusive(' ').map(str::to_owned).collect();
        return (pieces, false);
    }
    let question = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_lowercase();
    if question.contains("stock") {
        return (
            vec![r#"{"query":"#.to_owned(), r#""summit daypack"}"#.to_owned()],
            true,
        );
    }
    if question.contains("order 1042") {
        return (
            vec![r#"{"order_id":"#.to_owned(), r#""1042"}"#.to_owned()],
            true,
        );
    }
    let text = format!("The model says: you asked {question:?}.");
    (
        text.split_inclusive(' ').map(str::to_owned).collect(),
        false,
    )
}

async fn completions(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (fail, delay, whole) = {
        let mut s = script.lock().unwrap();
        s.requests.push(body.clone());
        s.auth.push(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        );
        let fail = if s.fail_first.is_empty() {
            None
        } else {
            Some(s.fail_first.remove(0))
        };
        (fail, s.delay, s.whole)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if let Some(status) = fail {
        let mut r = (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"error": {"message": "the double refuses", "type": "server_error"}})),
        )
            .into_response();
        if status == 429 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().unwrap());
        }
        return r;
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let (pieces, tool) = answer(&messages);
    let asked_order = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .is_some_and(|q| q.to_lowercase().contains("order 1042"));
    let tool_name = if asked_order {
        "order_status"
    } else {
        "lookup_product"
    };
    let usage = json!({"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150});
    if whole {
        let message = if tool {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": tool_name, "arguments": pieces.concat()}}]})
        } else {
            json!({"role": "assistant", "content": pieces.concat()})
        };
        return Json(json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": message,
            "finish_reason": if tool { "tool_calls" } else { "stop" }}], "usage": usage}))
        .into_response();
    }
    let mut frames: Vec<String> = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    if tool {
        frames.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": tool_name, "arguments": ""}}]}),
            None,
        ));
        for p in &pieces {
            frames.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
                None,
            ));
        }
        frames.push(chunk(json!({}), Some("tool_calls")));
    } else {
        for p in &pieces {
            frames.push(chunk(json!({"content": p}), None));
        }
        frames.push(chunk(json!({}), Some("stop")));
    }
    frames.push(format!(
        "data: {}\n\n",
        json!({"id": "x", "object": "chat.completion.chunk", "choices": [], "usage": usage})
    ));
    frames.push("data: [DONE]\n\n".to_owned());
    let stream = async_stream(frames);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// The frames, a little apart, as a model writes them.
fn async_stream(
    frames: Vec<String>,
) -> impl futures::Stream<Item = Result<String, std::convert::Infallible>> {
    futures::stream::unfold(frames.into_iter(), |mut it| async move {
        let next = it.next()?;
        tokio::time::sleep(Duration::from_millis(15)).await;
        Some((Ok(next), it))
    })
}
