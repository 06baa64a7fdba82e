//! A live chat through running `beckon serve` nodes, spoken by its two sides as they speak it:
//! a person of the site at the admin API (an account made with `beckon user add`, an API
//! token made once signed in), and a visitor's socket speaking the chat's frames
//! (`docs/wire-protocol.md`, Chat). Each call names the node it goes to, so that a test
//! chooses which node a request reaches (and so what is forwarded or relayed).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{CHROME, ORIGIN, PATIENCE, Reply, SITE};

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
