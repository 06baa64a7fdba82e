//! Shared helpers for the server's socket-level tests: a real server on 127.0.0.1:0 over a
//! fresh SQLite database, an HTTP client that plays a desktop Chrome, a WebSocket client, and
//! builders for the wire shapes of `docs/wire-protocol.md`.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beckon_engine::{
    Arm, Engine, Event, Policy, RuleSet, SessionId, SiteId, Suppression, VisitorId,
};
use beckon_server::Options;
use beckon_server::clock::Clock;
use beckon_server::limits::Limits;
use beckon_server::sites::Sites;
use beckon_server::token::Tokens;
use beckon_store::{Exposure, SecretDigest, SiteRecord, Store, StoredEvent, VisitorRecord};
use beckon_store_sqlite::SqliteStore;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A real desktop Chrome on Windows: what a person's browser sends.
pub const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// The origin the test sites allow.
pub const ORIGIN: &str = "https://shop.example";
/// The example rules shipped with Beckon.
pub const DEMO_RULES: &str = include_str!("../../../../examples/demo-rules.toml");
/// The longest a test waits for something the server should do on its own (a timer, a
/// shutdown). A bound, not a pause: waits end as soon as the thing happens.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A site to install: its key, secret, allowed origins, rules (TOML) and policy.
#[derive(Clone, Debug)]
pub struct Site {
    pub key: String,
    pub secret: String,
    pub origins: Vec<String>,
    pub rules: String,
    pub policy: Policy,
}

impl Site {
    /// A site that allows [`ORIGIN`] only, with secret `sk_{key}_secret`.
    pub fn new(key: &str, rules: &str, policy: Policy) -> Site {
        Site {
            key: key.to_owned(),
            secret: format!("sk_{key}_secret"),
            origins: vec![ORIGIN.to_owned()],
            rules: rules.to_owned(),
            policy,
        }
    }

    /// The site's id.
    pub fn id(&self) -> SiteId {
        SiteId::parse(&self.key).expect("a valid site key")
    }
}

/// A live rule in TOML with `id`, its condition (inline TOML) and extra `key = value` lines.
/// Its message is a text naming the rule.
pub fn rule(id: &str, when: &str, extra: &str) -> String {
    format!(
        "[[rules]]\nid = \"{id}\"\nname = \"{id}\"\nstatus = \"live\"\nwhen = {when}\n{extra}\nmessage = {{ type = \"text\", text = \"{id} says hello\" }}\n"
    )
}

/// A rule that fires when the cart holds items and the visitor shows exit intent, with no
/// repeat cycle: only a guardrail can keep it from firing again.
pub fn cart_exit_rule(id: &str) -> String {
    rule(
        id,
        r#"{ all = [ { var = "cart.items", op = "gt", value = 0 }, { var = "behaviour.exit_intent", op = "equals", value = true } ] }"#,
        "priority = 100",
    )
}

/// Opens a fresh in-memory database, migrated.
pub async fn memory_store() -> Arc<dyn Store> {
    let store = SqliteStore::in_memory().await.expect("in-memory SQLite");
    store.migrate().await.expect("migrations");
    Arc::new(store)
}

/// Opens (creating if needed) the database file at `path`, migrated.
pub async fn file_store(path: &Path) -> Arc<dyn Store> {
    let store = SqliteStore::open(path).await.expect("SQLite file");
    store.migrate().await.expect("migrations");
    Arc::new(store)
}

/// Writes the site and its rules (compiled first, so a typo fails here) into `store`.
pub async fn install(store: &dyn Store, site: &Site) {
    let rules = RuleSet::from_toml(&site.rules, Engine::timezone(&site.policy))
        .unwrap_or_else(|e| panic!("rules of {} compile: {e}", site.key));
    store
        .put_site(&SiteRecord {
            id: site.id(),
            secret: SecretDigest::of(&site.secret),
            origins: site.origins.clone(),
            policy: site.policy.clone(),
            version: 0,
        })
        .await
        .expect("put_site");
    store
        .replace_rules(&site.id(), &rules.to_file().rules)
        .await
        .expect("replace_rules");
}

/// A running server on a real socket.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The server's storage, to check what it wrote.
    pub store: Arc<dyn Store>,
    /// The sites as the server compiled them (their engines tell a visitor's arm).
    pub sites: Sites,
    /// A client with no default user agent: each request says who it plays.
    pub http: reqwest::Client,
    /// The server's visitor tokens: the test plays visitors the server issued ids to.
    pub tokens: Tokens,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// A server on a fresh in-memory database holding `sites`.
    pub async fn with_sites(sites: &[Site]) -> TestServer {
        let store = memory_store().await;
        for site in sites {
            install(store.as_ref(), site).await;
        }
        TestServer::start(store).await
    }

    /// A server on a fresh in-memory database holding `sites`, with these limits.
    pub async fn with_limits(sites: &[Site], limits: Limits) -> TestServer {
        let store = memory_store().await;
        for site in sites {
            install(store.as_ref(), site).await;
        }
        TestServer::start_with(
            store,
            Options {
                shards: 2,
                limits,
                ..Options::default()
            },
        )
        .await
    }

    /// A server on `store`, serving the sites it holds (and resuming its live sessions), once
    /// `/readyz` says it is ready.
    pub async fn start(store: Arc<dyn Store>) -> TestServer {
        TestServer::start_with(
            store,
            Options {
                shards: 2,
                limits: Limits::unthrottled(),
                ..Options::default()
            },
        )
        .await
    }

    /// A server on `store` with these options.
    pub async fn start_with(store: Arc<dyn Store>, options: Options) -> TestServer {
        let server = beckon_server::start(store.clone(), options)
            .await
            .expect("server starts");
        let sites = server.state.sites.clone();
        let tokens = server.state.tokens.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(PATIENCE)
            .build()
            .expect("HTTP client");
        let t = TestServer {
            base,
            store,
            sites,
            http,
            tokens,
            stop: Some(stop),
            task,
        };
        t.wait_ready().await;
        t
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let r = self.http.get(self.url("/readyz")).send().await;
            if matches!(&r, Ok(r) if r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never answered 200: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server and waits until it has flushed everything it accepted.
    pub async fn shutdown(mut self) {
        drop(self.http);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("the server stops within the bound")
            .expect("the server task does not panic")
            .expect("serve returns Ok");
    }

    /// A full URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The engine the server runs for `site`.
    pub fn engine(&self, site: &str) -> Arc<Engine> {
        self.sites
            .get(site)
            .unwrap_or_else(|| panic!("site {site} is served"))
            .engine
            .clone()
    }

    /// A visitor id starting with `prefix` that `site`'s engine puts in `arm`.
    pub fn visitor_in(&self, site: &str, arm: Arm, prefix: &str) -> String {
        self.visitor_in_all(&[site], arm, prefix)
    }

    /// A visitor id starting with `prefix` that every one of `sites` puts in `arm` (the arm
    /// depends on the site).
    pub fn visitor_in_all(&self, sites: &[&str], arm: Arm, prefix: &str) -> String {
        let engines: Vec<Arc<Engine>> = sites.iter().map(|s| self.engine(s)).collect();
        (0..10_000)
            .map(|i| format!("{prefix}{i}"))
            .find(|v| {
                let id = VisitorId::parse(v).expect("valid id");
                engines.iter().all(|e| e.arm(&id) == arm)
            })
            .unwrap_or_else(|| panic!("no {arm:?} visitor among 10 000 ids"))
    }

    /// A treated visitor of `site`.
    pub fn treated(&self, site: &str, prefix: &str) -> String {
        self.visitor_in(site, Arm::Treated, prefix)
    }

    /// `POST /v1/events` as desktop Chrome from [`ORIGIN`].
    pub async fn post_events(&self, body: &Value) -> Reply {
        self.post_events_as(Some(ORIGIN), CHROME, body.to_string())
            .await
    }

    /// The token the server issues to `visitor` on `site`.
    pub fn token(&self, site: &str, visitor: &str) -> String {
        self.tokens.issue(
            &SiteId::parse(site).expect("site id"),
            &VisitorId::parse(visitor).expect("visitor id"),
        )
    }

    /// `POST /v1/events?site=…` with this origin (none: no header), user agent and raw body;
    /// the site key in the URL is the body's `site`, as the widget sends it. A JSON body naming
    /// a visitor without a `token` member gets the visitor's token, as the widget would send it
    /// (a test that plays a forger sets `token` itself).
    pub async fn post_events_as(&self, origin: Option<&str>, ua: &str, body: String) -> Reply {
        let (body, site) = match serde_json::from_str::<Value>(&body) {
            Ok(Value::Object(mut b)) => {
                let site = b.get("site").and_then(Value::as_str).map(str::to_owned);
                if let (Some(s), Some(v)) = (&site, b.get("visitor").and_then(Value::as_str)) {
                    if !b.contains_key("token") {
                        if let (Ok(_), Ok(_)) = (SiteId::parse(s), VisitorId::parse(v)) {
                            let t = self.token(s, v);
                            b.insert("token".to_owned(), Value::String(t));
                        }
                    }
                }
                (Value::Object(b).to_string(), site)
            }
            _ => (body, None),
        };
        self.post_events_to(site.as_deref(), origin, ua, body).await
    }

    /// `POST /v1/events?site={site}` (no site: no query) with this origin, user agent and raw
    /// body.
    pub async fn post_events_to(
        &self,
        site: Option<&str>,
        origin: Option<&str>,
        ua: &str,
        body: String,
    ) -> Reply {
        let path = match site {
            Some(site) => format!("/v1/events?site={site}"),
            None => "/v1/events".to_owned(),
        };
        let mut req = self
            .http
            .post(self.url(&path))
            .header("content-type", "application/json")
            .header("user-agent", ua)
            .body(body);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        Reply::of(req.send().await.expect("the request reaches the server")).await
    }

    /// A POST by the merchant's backend, with `auth` as the `Authorization` header.
    pub async fn backend(&self, path: &str, auth: Option<&str>, body: &Value) -> Reply {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        Reply::of(req.send().await.expect("the request reaches the server")).await
    }

    /// Opens `/v1/ws` as desktop Chrome from `origin`.
    pub async fn ws(&self, origin: &str, site: &str, visitor: &str, session: &str) -> Ws {
        self.try_ws(origin, site, visitor, session)
            .await
            .unwrap_or_else(|e| panic!("WebSocket upgrade refused: {e}"))
    }

    /// Opens `/v1/ws`, returning the handshake error as is.
    pub async fn try_ws(
        &self,
        origin: &str,
        site: &str,
        visitor: &str,
        session: &str,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let token = match (SiteId::parse(site), VisitorId::parse(visitor)) {
            (Ok(_), Ok(_)) => self.token(site, visitor),
            _ => String::new(),
        };
        self.try_ws_with_token(origin, site, visitor, &token, session)
            .await
    }

    /// Opens `/v1/ws` with this token (empty: none), returning the handshake error as is.
    pub async fn try_ws_with_token(
        &self,
        origin: &str,
        site: &str,
        visitor: &str,
        token: &str,
        session: &str,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!(
            "{}/v1/ws?site={site}&visitor={visitor}&token={token}&session={session}",
            self.base.replacen("http://", "ws://", 1)
        );
        let mut request = url.into_client_request().expect("a WebSocket request");
        let h = request.headers_mut();
        h.insert("origin", origin.parse().expect("header value"));
        h.insert("user-agent", CHROME.parse().expect("header value"));
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Ws { stream })
    }

    /// Every exposure of `site`, oldest first.
    pub async fn exposures(&self, site: &str) -> Vec<Exposure> {
        exposures(self.store.as_ref(), site).await
    }

    /// The stored events of a session, ticks left out.
    pub async fn events(&self, site: &str, session: &str) -> Vec<StoredEvent> {
        events(self.store.as_ref(), site, session).await
    }

    /// A visitor's persisted state.
    pub async fn visitor(&self, site: &str, visitor: &str) -> Option<VisitorRecord> {
        visitor_record(self.store.as_ref(), site, visitor).await
    }

    /// The guardrail that would hold every rule back if `event` came now to the visitor's
    /// persisted session: the server's engine explaining a copy of the stored state.
    pub async fn held_by(&self, site: &str, visitor: &str, event: &Event) -> Option<Suppression> {
        let record = self
            .visitor(site, visitor)
            .await
            .unwrap_or_else(|| panic!("{visitor} is stored"));
        let mut session = record.session.expect("a live session").state;
        let mut profile = record.profile;
        let engine = self.engine(site);
        let (_, trace) = engine.explain(&mut session, &mut profile, event, Clock::System.now());
        trace.held
    }
}

/// Every exposure of `site` in `store`.
pub async fn exposures(store: &dyn Store, site: &str) -> Vec<Exposure> {
    store
        .exposures(&SiteId::parse(site).expect("site id"))
        .await
        .expect("exposures")
}

/// The stored events of a session, the server's own timer ticks left out.
pub async fn events(store: &dyn Store, site: &str, session: &str) -> Vec<StoredEvent> {
    store
        .session_events(
            &SiteId::parse(site).expect("site id"),
            &SessionId::parse(session).expect("session id"),
        )
        .await
        .expect("session events")
        .into_iter()
        .filter(|e| e.kind != "tick")
        .collect()
}

/// A visitor's persisted state in `store`.
pub async fn visitor_record(store: &dyn Store, site: &str, visitor: &str) -> Option<VisitorRecord> {
    store
        .visitor(
            &SiteId::parse(site).expect("site id"),
            &VisitorId::parse(visitor).expect("visitor id"),
        )
        .await
        .expect("visitor")
}

/// An HTTP answer: status, headers and the body as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    async fn of(r: reqwest::Response) -> Reply {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            body,
        }
    }

    /// The interventions of a 202.
    pub fn interventions(&self) -> &Vec<Value> {
        self.body["interventions"]
            .as_array()
            .unwrap_or_else(|| panic!("no interventions in {self:?}"))
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("not a JSON error: {} {:?}", self.status, self.text))
    }
}

/// A WebSocket client.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    /// Sends a text frame.
    pub async fn send_text(&mut self, text: String) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("the frame is sent");
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: &Value) {
        self.send_text(frame.to_string()).await;
    }

    /// The next JSON frame, waiting at most `within`; `None` if none came in time.
    pub async fn next_within(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(&t).expect("a JSON frame"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                other => panic!("the socket ended: {other:?}"),
            }
        }
    }

    /// The next JSON frame; fails the test if none comes within [`PATIENCE`].
    pub async fn next(&mut self) -> Value {
        self.next_within(PATIENCE)
            .await
            .expect("a frame within the bound")
    }

    /// The close code the server sends, reading past the frames before it; fails the test if
    /// the socket is not closed within [`PATIENCE`].
    pub async fn close_code(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("the socket is closed within the bound");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the socket failed: {e}"),
            }
        }
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// A batch for `POST /v1/events`.
pub fn batch(site: &str, visitor: &str, session: &str, events: Vec<Value>) -> Value {
    json!({
        "site": site, "visitor": visitor, "session": session,
        "context": {"lang": "en-US", "tz_offset": 60, "screen": [1280, 800]},
        "events": events,
    })
}

/// An `events` frame for the WebSocket.
pub fn frame(events: Vec<Value>) -> Value {
    json!({"type": "events", "context": {"lang": "en-US", "tz_offset": 60}, "events": events})
}

/// A page view of `page_type` at `path`.
pub fn page(id: &str, page_type: &str, path: &str) -> Value {
    json!({"id": id, "type": "page", "t": 1_763_700_000_000_i64, "url": format!("{ORIGIN}{path}"),
           "path": path, "title": "Trail Shoe X", "page_type": page_type, "referrer": ""})
}

/// The cart's new state.
pub fn cart(id: &str, items: u32, value: f64) -> Value {
    json!({"id": id, "type": "cart", "t": 1_763_700_001_000_i64, "value": value, "currency": "EUR", "items": items})
}

/// An event with no fields (`exit_intent`, `activity`, …).
pub fn bare(id: &str, kind: &str) -> Value {
    json!({"id": id, "type": kind, "t": 1_763_700_002_000_i64})
}

/// A `dismissed` (or `shown`, `engaged`) event for an intervention.
pub fn about(id: &str, kind: &str, intervention: &Value) -> Value {
    json!({"id": id, "type": kind, "rule": intervention["rule"], "intervention": intervention["id"]})
}

/// Waits until `check` holds, looking again every few milliseconds, at most [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Submits a browser batch for `visitor` (with its right token) under `session`.
pub async fn submit_as(
    server: &beckon_server::Server,
    site: &str,
    visitor: &str,
    session: &str,
    events: Vec<Value>,
) -> Result<beckon_server::intake::Submitted, beckon_server::intake::IntakeError> {
    let state = &server.state;
    let site = state.sites.get(site).expect("the site");
    let token = state
        .tokens
        .issue(&site.record.id, &VisitorId::parse(visitor).unwrap());
    let context = beckon_server::wire::ClientContext::default();
    let from = beckon_server::intake::Sender {
        site,
        claim: beckon_server::intake::Claim::Browser {
            visitor: Some(visitor),
            token: Some(&token),
        },
        session: Some(session),
        user_agent: CHROME,
        hints: &beckon_server::edge::ClientHints::default(),
        context: &context,
    };
    beckon_server::intake::submit(state, from, events).await
}

/// A rule `checkout-hesitation` that fires once a visitor has been on checkout for `delay`
/// (a humantime duration: "45s").
pub fn checkout_hesitation(delay: &str) -> String {
    rule(
        "checkout-hesitation",
        r#"{ all = [ { var = "page.type", op = "equals", value = "checkout" } ] }"#,
        &format!("delay = \"{delay}\""),
    )
}

/// A fresh in-memory database holding `site`.
pub async fn store_with(site: &Site) -> Arc<dyn Store> {
    let store = memory_store().await;
    install(store.as_ref(), site).await;
    store
}

/// A server's options for tests that reach into its shard: one shard, no rate limits.
pub fn one_shard() -> Options {
    Options {
        shards: 1,
        limits: Limits::unthrottled(),
        ..Options::default()
    }
}
