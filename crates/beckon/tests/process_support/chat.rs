//! A live chat through running `beckon serve` nodes, spoken by its two sides as they speak it:
//! a person of the site at the admin API (an account made with `beckon user add`, an API
//! token made once signed in), and a visitor's socket speaking the chat's frames
//! (`docs/wire-protocol.md`, Chat). Each call names the node it goes to, so that a test
//! chooses which node a request reaches (and so what is forwarded or relayed).
//!
//! The cluster's chat is scripted here too: a visitor owned by a chosen node
//! ([`visitor_owned_by`]), and the chat after the desk's node died ([`chat_after_the_kill`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use beckon_cluster::NodeLease;
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{CHROME, ORIGIN, PATIENCE, Reply, SITE, post_batch};

/// How long one call of the person's waits for its answer: a node that died answers at once
/// (its port is closed), and a retried call must not wait out a long bound each time.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// What a retried call or frame waits between two tries.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Makes `email` an agent of [`SITE`] with `beckon user add`, on the database `config`
/// names, with `password` given on standard input.
pub async fn add_agent(config: &Path, email: &str, name: &str, password: &str) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(["user", "add", "--email", email, "--name", name])
        .args(["--role", "agent", "--site", SITE, "--password-stdin"])
        .args(["--config", config.to_str().expect("a UTF-8 path")])
        .env_remove("BECKON_LISTEN")
        .env_remove("BECKON_DATA")
        .env_remove("BECKON_DATABASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the beckon binary runs");
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .await
        .expect("the password written");
    drop(stdin);
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("beckon user add ends within the bound")
        .expect("beckon user add runs");
    assert!(
        out.status.success(),
        "beckon user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A person of the site acting through the admin API with an API token, on whichever node
/// each call names.
pub struct Person {
    http: reqwest::Client,
    token: String,
    /// Their account's id.
    pub id: i64,
}

impl Person {
    /// Signs in at the node `base` (a login session), makes an API token for [`SITE`] with it,
    /// and acts with the token from then on, as a script does.
    pub async fn sign_in(base: &str, email: &str, password: &str) -> Person {
        let session = reqwest::Client::builder()
            .cookie_store(true)
            .timeout(PATIENCE)
            .build()
            .expect("HTTP client");
        let r = session
            .post(format!("{base}/api/v1/login"))
            .header("origin", base)
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("the login's answer");
        let login = Reply::of(r).await.expect("the login's body");
        assert_eq!(login.status, 200, "{email} signs in: {}", login.text);
        let csrf = login.body["csrf"].as_str().expect("a CSRF token");
        let r = session
            .post(format!("{base}/api/v1/tokens"))
            .header("origin", base)
            .header("x-csrf-token", csrf)
            .json(&json!({"name": "cluster test", "sites": [SITE]}))
            .send()
            .await
            .expect("the token's answer");
        let made = Reply::of(r).await.expect("the token's body");
        assert_eq!(made.status, 201, "a token is made: {}", made.text);
        Person {
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .build()
                .expect("HTTP client"),
            token: made.body["secret"]
                .as_str()
                .expect("the token's secret")
                .to_owned(),
            id: login.body["person"]["id"]
                .as_i64()
                .expect("the person's id"),
        }
    }

    /// `method /api/v1/sites/SITE/{path}` at the node `base`, with `body` as JSON.
    pub async fn call(
        &self,
        method: Method,
        base: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{base}/api/v1/sites/{SITE}/{path}"))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::of(request.send().await?).await
    }

    /// [`Person::call`] again until it is answered `want` or `within` has passed; the answer,
    /// or the last failure.
    pub async fn call_until(
        &self,
        want: u16,
        within: Duration,
        method: Method,
        base: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, String> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.call(method.clone(), base, path, body.clone()).await {
                Ok(r) if r.status == want => return Ok(r),
                Ok(r) => format!("{} {}", r.status, r.text),
                Err(e) => e.to_string(),
            };
            if Instant::now() + RETRY_AFTER >= deadline {
                return Err(format!("{method} {path} at {base}: {last}"));
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }
}

/// A message of the chat as a frame carries it: `chat` from `from` with `text`.
pub fn is_line(frame: &Value, from: &str, text: &str) -> bool {
    frame["type"] == "chat" && frame["from"] == from && frame["text"] == text
}

/// A visitor's socket: `GET /v1/ws` on one node, speaking the chat's frames.
pub struct ChatSocket {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Every text frame heard, in order.
    pub heard: Vec<Value>,
}

/// Why [`ChatSocket::until`] heard no frame it wanted.
#[derive(Debug)]
pub enum Unheard {
    /// The socket was closed, with this code (none: the connection ended without a close
    /// frame).
    Closed(Option<u16>),
    /// Nothing it wanted came in time.
    Silent,
}

impl ChatSocket {
    /// Opens the socket of `visitor` (with its `token`) for `session` on the node at `node`,
    /// as desktop Chrome on a page of [`ORIGIN`].
    pub async fn open(node: SocketAddr, visitor: &str, token: &str, session: &str) -> ChatSocket {
        let url = format!(
            "ws://{node}/v1/ws?site={SITE}&visitor={visitor}&token={token}&session={session}"
        );
        let mut request = url.into_client_request().expect("a WebSocket request");
        let headers = request.headers_mut();
        headers.insert("origin", ORIGIN.parse().expect("a header"));
        headers.insert("user-agent", CHROME.parse().expect("a header"));
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .expect("the socket opens within the bound")
            .expect("the socket opens");
        ChatSocket {
            ws,
            heard: Vec::new(),
        }
    }

    /// Sends a chat frame.
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("a frame sent");
    }

    /// The next frame that satisfies `want`, read within `within` (the others are kept in
    /// [`ChatSocket::heard`] too); or why none came.
    pub async fn until(
        &mut self,
        within: Duration,
        want: impl Fn(&Value) -> bool,
    ) -> Result<Value, Unheard> {
        let deadline = Instant::now() + within;
        loop {
            // `next` on the stream loses nothing when the wait is cut short.
            let next = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(next) => next,
                Err(_) => return Err(Unheard::Silent),
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("a JSON frame");
                    self.heard.push(frame.clone());
                    if want(&frame) {
                        return Ok(frame);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Unheard::Closed(frame.map(|f| f.code.into())));
                }
                // Pings are answered by the library.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(Unheard::Closed(None)),
            }
        }
    }

    /// Says `text` as message `id` until it is stored (`said`), within `within`: a
    /// `chat_error` (the desk's node did not answer) is followed by the same message again,
    /// as the widget does; its `seq`, or what went wrong last.
    pub async fn say(&mut self, id: &str, text: &str, within: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + within;
        loop {
            self.send(json!({"type": "say", "id": id, "text": text}))
                .await;
            let answer = self
                .until(deadline.saturating_duration_since(Instant::now()), |f| {
                    (f["type"] == "said" || f["type"] == "chat_error") && f["id"] == id
                })
                .await;
            let error = match answer {
                Ok(f) if f["type"] == "said" => return Ok(f["seq"].as_u64().expect("a seq")),
                Ok(f) => f.to_string(),
                Err(unheard) => return Err(format!("{id}: {unheard:?}")),
            };
            if Instant::now() + RETRY_AFTER >= deadline {
                return Err(format!("{id}: {error}"));
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }
}

/// A new visitor, arrived with a page view at the node `base` (which mints an id among those
/// it owns), that `owner` owns among `nodes`: its id and token. A visitor another node owns
/// is drawn again after `heartbeat`.
pub async fn visitor_owned_by(
    base: &str,
    owner: &str,
    nodes: &[NodeLease],
    heartbeat: Duration,
) -> (String, String) {
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    // A node whose view is a beat behind may mint one it no longer owns: another is drawn.
    for n in 0..20 {
        let body = json!({
            "site": SITE, "session": "s_chat",
            "context": {"lang": "en-US", "tz_offset": 60, "screen": [1280, 800]},
            "events": [
                {"id": format!("s_chat:l0ad{n:02}:1"), "type": "page", "t": 1_763_700_000_000_i64,
                 "url": format!("{ORIGIN}/orders"), "path": "/orders", "title": "Orders",
                 "page_type": "other", "referrer": ""},
                {"id": format!("s_chat:l0ad{n:02}:2"), "type": "activity",
                 "t": 1_763_700_000_001_i64},
            ],
        });
        let r = post_batch(&http, base, body.to_string())
            .await
            .expect("the chat visitor's first batch");
        assert_eq!(r.status, 202, "{}", r.text);
        let visitor = r.body["identity"]["visitor"].as_str().expect("an identity");
        let token = r.body["identity"]["token"].as_str().expect("a token");
        let owned = beckon_cluster::rendezvous::owner(SITE, visitor, nodes).expect("an owner");
        if owned.name == owner {
            return (visitor.to_owned(), token.to_owned());
        }
        tokio::time::sleep(heartbeat).await;
    }
    panic!("{base} never minted a visitor that {owner} owns");
}

/// Waits until the person, through the node `base`, sees the visitor's `text` in the
/// conversation at `path`.
pub async fn person_sees(person: &Person, base: &str, path: &str, text: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let last = match person.call(Method::GET, base, path, None).await {
            Ok(r)
                if r.status == 200
                    && r.body["messages"].as_array().is_some_and(|m| {
                        m.iter()
                            .any(|m| m["from"] == "visitor" && m["text"] == text)
                    }) =>
            {
                return;
            }
            Ok(r) => format!("{} {}", r.status, r.text),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "the person never saw {text:?} through {base}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What [`chat_after_the_kill`] says, each line its sender's id for it and its text, and
/// where the visitor's socket is (for what a failure tells).
#[derive(Debug, Clone, Copy)]
pub struct AfterTheKill {
    /// The text of the person's line before the kill, which the socket must have heard once.
    pub before: &'static str,
    /// The person's line after the kill.
    pub written: (&'static str, &'static str),
    /// The visitor's answer to it.
    pub answer: (&'static str, &'static str),
    /// The node the visitor's socket is on.
    pub socket_on: &'static str,
    /// The node that owns the visitor, which the socket is relayed to.
    pub relayed_to: &'static str,
}

/// How the chat went on after the kill, each from the kill.
pub struct ChatAfter {
    /// The person's message was taken (through a survivor that does not run the desk).
    pub written: Duration,
    /// The visitor heard it on their socket.
    pub heard: Duration,
    /// The visitor's own next message was stored.
    pub said: Duration,
    /// Whether the person had to come online again at the desk's new node.
    pub available_again: bool,
}

/// The chat after the desk's node died: the person writes again through `base` (a survivor
/// that does not run the desk) until the desk's new node takes it, the visitor hears it on
/// the socket they kept (it was on the survivors only, so it stays open), answers, and the
/// person sees the answer.
pub async fn chat_after_the_kill(
    person: Person,
    mut socket: ChatSocket,
    base: String,
    path: String,
    killed_at: std::time::Instant,
    lines: AfterTheKill,
) -> ChatAfter {
    person
        .call_until(
            201,
            PATIENCE,
            Method::POST,
            &base,
            &format!("{path}/messages"),
            Some(json!({"id": lines.written.0, "text": lines.written.1})),
        )
        .await
        .unwrap_or_else(|e| panic!("the person writes after the kill: {e}"));
    let written = killed_at.elapsed();
    socket
        .until(PATIENCE, |f| is_line(f, "agent", lines.written.1))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the visitor's socket on {} (relayed to {}, both alive) heard nothing of the \
                 person after the kill: {e:?}",
                lines.socket_on, lines.relayed_to
            )
        });
    let heard = killed_at.elapsed();
    socket
        .say(lines.answer.0, lines.answer.1, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("the visitor answers after the kill: {e}"));
    let said = killed_at.elapsed();
    person_sees(&person, &base, &path, lines.answer.1).await;
    let desk = person
        .call_until(200, PATIENCE, Method::GET, &base, "desk", None)
        .await
        .unwrap_or_else(|e| panic!("the desk after the kill: {e}"));
    let available_again = desk.body["available"] != true;
    if available_again {
        let again = person
            .call_until(
                200,
                PATIENCE,
                Method::PUT,
                &base,
                "desk/availability",
                Some(json!({"available": true})),
            )
            .await
            .unwrap_or_else(|e| panic!("the person comes online again: {e}"));
        assert_eq!(again.body["available"], true, "{}", again.text);
    }
    let holding = desk.body["people"]
        .as_array()
        .and_then(|people| people.iter().find(|p| p["id"] == person.id))
        .map(|p| p["holding"].clone());
    assert_eq!(
        holding,
        Some(json!(1)),
        "the person still holds the conversation at the desk's new node: {}",
        desk.text
    );
    // Nothing was heard twice on the socket: each of the person's lines once.
    let _ = socket.until(Duration::from_millis(300), |_| false).await;
    for line in [lines.before, lines.written.1] {
        let n = socket
            .heard
            .iter()
            .filter(|f| is_line(f, "agent", line))
            .count();
        assert_eq!(n, 1, "{line:?} reached the visitor's socket {n} times");
    }
    ChatAfter {
        written,
        heard,
        said,
        available_again,
    }
}
