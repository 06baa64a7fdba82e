//! The widget's side of the wire protocol (`docs/wire-protocol.md`): batches posted to
//! `/v1/events`, the socket at `/v1/ws`, the visitor id and token the server issues, and the
//! frames it sends down. Only the shapes a widget needs are known here.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::SimError;
use crate::script::Context;

/// How long a request or an acknowledgement may take before the visit counts it as failed.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The server to drive: where it is, and the site and origin the visitors speak for.
#[derive(Clone, Debug)]
pub struct Target {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    /// `ws://host:port`.
    pub ws_base: String,
    /// The `Origin` every request carries (a page of the site's).
    pub origin: String,
    /// The site key.
    pub site: String,
    http: reqwest::Client,
}

impl Target {
    /// The server at `url` (`http://host[:port]`), with the origin given or derived from the
    /// URL.
    pub fn new(url: &str, site: &str, origin: Option<&str>) -> Result<Target, SimError> {
        let bad = |why: &str| SimError::Config(format!("--url {url:?}: {why}"));
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(bad(
                "https is not supported: point the simulator at the server itself (http://host:port)",
            ));
        } else {
            return Err(bad("must start with http://"));
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty()
            || authority.contains(['@', '?', '#', ' '])
            || rest.trim_end_matches('/') != authority
        {
            return Err(bad("must be http://host or http://host:port, with no path"));
        }
        let base = format!("http://{authority}");
        let origin = match origin {
            Some(o) => {
                if !(o.starts_with("http://") || o.starts_with("https://"))
                    || HeaderValue::from_str(o).is_err()
                {
                    return Err(SimError::Config(format!(
                        "--origin {o:?}: must be an origin such as http://127.0.0.1:8080"
                    )));
                }
                o.trim_end_matches('/').to_owned()
            }
            None => base.clone(),
        };
        let http = reqwest::Client::builder()
            .timeout(ANSWER_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| SimError::Config(format!("cannot make an HTTP client: {e}")))?;
        Ok(Target {
            ws_base: format!("ws://{authority}"),
            base,
            origin,
            site: site.to_owned(),
            http,
        })
    }

    /// Checks that the server answers and takes this site from this origin, before any
    /// visitor starts: `/healthz`, then the widget's own first read, `/v1/chat/config`.
    pub async fn preflight(&self, user_agent: &str) -> Result<(), SimError> {
        let unreachable = |reason: String| SimError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let health = self
            .http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        if !health.status().is_success() {
            return Err(unreachable(format!(
                "/healthz answered HTTP {}",
                health.status().as_u16()
            )));
        }
        let answer = self
            .http
            .get(format!(
                "{}/v1/chat/config?site={}",
                self.base,
                query_escape(&self.site)
            ))
            .header("origin", &self.origin)
            .header("user-agent", user_agent)
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = answer.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        Err(SimError::SiteRefused {
            site: self.site.clone(),
            origin: self.origin.clone(),
            status,
            message: body["error"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned(),
        })
    }

    /// Posts one batch to `/v1/events`, as the widget's beacon does.
    pub async fn post(&self, user_agent: &str, body: &Value) -> Result<Answer, String> {
        let response = self
            .http
            .post(format!(
                "{}/v1/events?site={}",
                self.base,
                query_escape(&self.site)
            ))
            .header("origin", &self.origin)
            .header("user-agent", user_agent)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST /v1/events: {}", error_chain(&e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// Opens the visitor's socket, as the widget on a page of the site does.
    pub async fn socket(
        &self,
        user_agent: &str,
        identity: Option<&Identity>,
        session: &str,
    ) -> Result<Socket, String> {
        let mut url = format!(
            "{}/v1/ws?site={}&session={}",
            self.ws_base,
            query_escape(&self.site),
            query_escape(session)
        );
        if let Some(i) = identity {
            url.push_str(&format!(
                "&visitor={}&token={}",
                query_escape(&i.visitor),
                query_escape(&i.token)
            ));
        }
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        let headers = request.headers_mut();
        headers.insert(
            "origin",
            HeaderValue::from_str(&self.origin).map_err(|e| e.to_string())?,
        );
        headers.insert(
            "user-agent",
            HeaderValue::from_str(user_agent).map_err(|e| e.to_string())?,
        );
        // A simulator holds many sockets that read small frames: small buffers.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (ws, _) = tokio::time::timeout(ANSWER_TIMEOUT, connect)
            .await
            .map_err(|_| "WebSocket upgrade: no answer".to_owned())?
            .map_err(|e| match e {
                tungstenite::Error::Http(r) => {
                    format!("WebSocket upgrade: HTTP {}", r.status().as_u16())
                }
                e => format!("WebSocket upgrade: {e}"),
            })?;
        Ok(Socket { ws })
    }
}

/// The answer to a posted batch.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// When to come back, for a 429 or a 503.
    pub retry_after: Option<Duration>,
    /// Its JSON body (`Null` when it had none).
    pub body: Value,
}

/// A visitor id and the token that goes with it, both the server's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The visitor id.
    pub visitor: String,
    /// Its token.
    pub token: String,
}

impl Identity {
    /// The identity an answer or a frame carries: the `identity` member of a `202`, or an
    /// `identity` frame.
    pub fn of(answer: &Value) -> Option<Identity> {
        let obj = match answer.get("type").and_then(Value::as_str) {
            Some("identity") => answer,
            _ => answer.get("identity")?,
        };
        Some(Identity {
            visitor: obj.get("visitor")?.as_str()?.to_owned(),
            token: obj.get("token")?.as_str()?.to_owned(),
        })
    }
}

/// An intervention the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intervention {
    /// Its id.
    pub id: String,
    /// Its rule.
    pub rule: String,
    /// Its message's type (`text`, `offer`, `email_capture`, …).
    pub kind: String,
}

impl Intervention {
    /// An `intervention` frame, or an element of a `202`'s `interventions`.
    pub fn of(v: &Value) -> Option<Intervention> {
        Some(Intervention {
            id: v.get("id")?.as_str()?.to_owned(),
            rule: v.get("rule")?.as_str()?.to_owned(),
            kind: v
                .get("message")
                .and_then(|m| m.get("type"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// A frame down the socket.
#[derive(Clone, Debug, PartialEq)]
pub enum Down {
    /// Speak for this visitor from now on.
    Identity(Identity),
    /// These events are stored.
    Ack(Vec<String>),
    /// Show this.
    Intervention(Intervention),
    /// What was wrong with the last frame.
    Error(String),
    /// Anything else (chat frames): not the simulator's business.
    Other,
}

impl Down {
    fn parse(text: &str) -> Down {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return Down::Other;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("identity") => Identity::of(&v).map_or(Down::Other, Down::Identity),
            Some("ack") => Down::Ack(
                v["ids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Some("intervention") => Intervention::of(&v).map_or(Down::Other, Down::Intervention),
            Some("error") => Down::Error(v["error"].as_str().unwrap_or("?").to_owned()),
            _ => Down::Other,
        }
    }
}

/// A visitor's open socket.
pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    /// Sends an `events` frame.
    pub async fn send(&mut self, frame: &Value) -> Result<(), String> {
        let text = frame.to_string();
        tokio::time::timeout(ANSWER_TIMEOUT, self.ws.send(Message::Text(text.into())))
            .await
            .map_err(|_| "the socket would not take a frame".to_owned())?
            .map_err(|e| format!("socket: {e}"))
    }

    /// The next frame, or `None` once `until` has passed. Pings are answered while reading.
    pub async fn next(&mut self, until: Instant) -> Result<Option<Down>, String> {
        loop {
            let msg = match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(msg) => msg,
            };
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(Some(Down::parse(&t))),
                Some(Ok(Message::Close(frame))) => {
                    return Err(match frame {
                        Some(f) => format!("socket closed by the server: {}", u16::from(f.code)),
                        None => "socket closed by the server".to_owned(),
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("socket: {e}")),
                None => return Err("socket ended".to_owned()),
            }
        }
    }

    /// Closes the socket, as leaving the page does. The server's answer is not awaited.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// The body of `POST /v1/events`.
pub fn http_body(
    site: &str,
    identity: Option<&Identity>,
    session: &str,
    context: &Context,
    events: &[Value],
) -> Value {
    let mut body = json!({
        "site": site,
        "session": session,
        "context": context_json(context),
        "events": events,
    });
    if let Some(i) = identity {
        body["visitor"] = Value::from(i.visitor.as_str());
        body["token"] = Value::from(i.token.as_str());
    }
    body
}

/// An `events` frame; the context goes with a socket's first frame, as the widget sends it.
pub fn ws_frame(context: Option<&Context>, events: &[Value]) -> Value {
    let mut frame = json!({ "type": "events", "events": events });
    if let Some(c) = context {
        frame["context"] = context_json(c);
    }
    frame
}

fn context_json(c: &Context) -> Value {
    json!({
        "lang": c.lang,
        "tz_offset": c.tz_offset,
        "screen": [c.screen.0, c.screen.1],
        "webdriver": c.webdriver,
    })
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error with its causes ("error sending request: … Connection refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let line = s.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_origins() {
        let t = Target::new("http://127.0.0.1:8080/", "demo", None).unwrap();
        assert_eq!(t.base, "http://127.0.0.1:8080");
        assert_eq!(t.ws_base, "ws://127.0.0.1:8080");
        assert_eq!(t.origin, "http://127.0.0.1:8080");
        let t = Target::new("http://localhost:9", "demo", Some("https://shop.example/")).unwrap();
        assert_eq!(t.origin, "https://shop.example");
        for bad in [
            "https://x",
            "127.0.0.1:8080",
            "http://",
            "http://h/path",
            "http://u@h",
        ] {
            assert!(Target::new(bad, "demo", None).is_err(), "{bad}");
        }
        assert!(Target::new("http://h", "demo", Some("shop.example")).is_err());
    }

    #[test]
    fn frames_down_are_read() {
        let f = Down::parse(r#"{"type":"identity","visitor":"v_1","token":"t"}"#);
        assert_eq!(
            f,
            Down::Identity(Identity {
                visitor: "v_1".into(),
                token: "t".into()
            })
        );
        let f = Down::parse(
            r#"{"type":"intervention","id":"i_1","rule":"r","message":{"type":"offer","text":"x"}}"#,
        );
        assert_eq!(
            f,
            Down::Intervention(Intervention {
                id: "i_1".into(),
                rule: "r".into(),
                kind: "offer".into()
            })
        );
        assert_eq!(
            Down::parse(r#"{"type":"ack","ids":["a","b"]}"#),
            Down::Ack(vec!["a".into(), "b".into()])
        );
        assert_eq!(Down::parse(r#"{"type":"chat_state"}"#), Down::Other);
        assert_eq!(query_escape("a+b/c d"), "a%2Bb%2Fc%20d");
    }
}
