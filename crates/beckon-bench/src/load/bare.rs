//! The bare endpoint: the same routes, the same batches parsed from the same JSON, answered
//! at once, with nothing decided and nothing stored.
//!
//! It is what the server would cost if Beckon did no work of its own: axum, hyper, the
//! WebSocket library (with the buffer sizes Beckon's server gives it) and serde_json, on the
//! same runtime (tokio's multi-threaded default, one worker per core, as `beckon serve` runs). The full server's throughput over this one's is
//! the share left after durability and deciding.
//!
//! With [`BareOptions::issue_identities`] it also plays the token protocol: a batch or socket
//! without a valid token is given a new visitor id and token, and [`BareStats`] counts how
//! many batches then came back with it, so a test can check the generator adopts what it is
//! given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// The largest body and frame accepted, as Beckon's.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// A socket's read buffer, as Beckon's server sizes it (tungstenite's default, 128 KiB
/// allocated up front, would make the bare endpoint's idle sockets cost several times what
/// Beckon's do, and the comparison would measure a setting).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// What the bare endpoint accepts.
#[derive(Clone, Debug)]
pub struct BareOptions {
    /// The one site key it knows.
    pub site: String,
    /// The one origin it allows.
    pub origin: String,
    /// Answer a missing or wrong token with a new identity, as a server with visitor tokens
    /// does.
    pub issue_identities: bool,
}

/// What the bare endpoint saw.
#[derive(Debug, Default)]
pub struct BareStats {
    /// Batches accepted (HTTP and WebSocket).
    pub batches: AtomicU64,
    /// Events in them.
    pub events: AtomicU64,
    /// Identities issued.
    pub identities: AtomicU64,
    /// Batches or sockets that came with a token this endpoint issued.
    pub with_token: AtomicU64,
    /// Requests refused.
    pub refused: AtomicU64,
}

#[derive(Clone)]
struct Bare {
    options: Arc<BareOptions>,
    stats: Arc<BareStats>,
}

/// The router: `POST /v1/events`, `GET /v1/ws`, `GET /healthz`, `GET /readyz`.
pub fn app(options: BareOptions, stats: Arc<BareStats>) -> Router {
    Router::new()
        .route("/v1/events", post(events))
        .route("/v1/ws", get(upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Bare {
            options: Arc::new(options),
            stats,
        })
}

/// Serves [`app`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: BareOptions,
    stats: Arc<BareStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(options, stats).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// A batch, as `docs/wire-protocol.md` has it; events stay JSON values, as in Beckon's own
/// `wire::Batch`.
#[derive(Deserialize)]
struct Batch {
    #[serde(default)]
    site: Option<String>,
    visitor: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "session")]
    _session: String,
    #[serde(default, rename = "context")]
    _context: Option<Value>,
    events: Vec<Value>,
}

#[derive(Deserialize)]
struct SiteQuery {
    #[serde(default)]
    site: Option<String>,
}

#[derive(Deserialize)]
struct SocketQuery {
    site: String,
    visitor: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "session")]
    _session: String,
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<Value>,
}

async fn events(
    State(bare): State<Bare>,
    Query(query): Query<SiteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match accept(&bare, query, &headers, &body) {
        Ok(answer) => (StatusCode::ACCEPTED, axum::Json(answer)).into_response(),
        Err((status, why)) => {
            bare.stats.refused.fetch_add(1, Ordering::Relaxed);
            (status, axum::Json(json!({ "error": why }))).into_response()
        }
    }
}

fn accept(
    bare: &Bare,
    query: SiteQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, (StatusCode, String)> {
    let batch: Batch = serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("malformed batch: {e}")))?;
    let site = query.site.or(batch.site).unwrap_or_default();
    check_site(bare, &site, headers)?;
    let ids = ids(&batch.events).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    bare.stats.batches.fetch_add(1, Ordering::Relaxed);
    bare.stats
        .events
        .fetch_add(ids.len() as u64, Ordering::Relaxed);
    let mut answer = json!({ "accepted": ids.len(), "duplicates": 0, "interventions": [] });
    if let Some(identity) = identity(bare, &batch.visitor, batch.token.as_deref()) {
        answer["identity"] = identity;
    }
    Ok(answer)
}

async fn upgrade(
    State(bare): State<Bare>,
    Query(query): Query<SocketQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err((status, why)) = check_site(&bare, &query.site, &headers) {
        bare.stats.refused.fetch_add(1, Ordering::Relaxed);
        return (status, axum::Json(json!({ "error": why }))).into_response();
    }
    let identity = identity(&bare, &query.visitor, query.token.as_deref());
    ws.max_message_size(MAX_BODY_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_BODY_BYTES + 4 * 1024)
        .on_upgrade(move |socket| socket_loop(socket, bare, identity))
}

async fn socket_loop(mut socket: WebSocket, bare: Bare, identity: Option<Value>) {
    if let Some(mut identity) = identity {
        identity["type"] = Value::from("identity");
        if socket
            .send(Message::Text(identity.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    while let Some(Ok(msg)) = socket.recv().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            _ => continue,
        };
        let reply = match serde_json::from_str::<Frame>(&text) {
            Ok(f) if f.kind == "events" => match ids(&f.events) {
                Ok(ids) => {
                    bare.stats.batches.fetch_add(1, Ordering::Relaxed);
                    bare.stats
                        .events
                        .fetch_add(ids.len() as u64, Ordering::Relaxed);
                    json!({ "type": "ack", "ids": ids })
                }
                Err(e) => json!({ "type": "error", "error": e }),
            },
            Ok(f) => json!({ "type": "error", "error": format!("unknown frame {:?}", f.kind) }),
            Err(e) => json!({ "type": "error", "error": format!("malformed frame: {e}") }),
        };
        if socket
            .send(Message::Text(reply.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
}

fn check_site(bare: &Bare, site: &str, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    if site != bare.options.site {
        return Err((StatusCode::FORBIDDEN, format!("unknown site key {site:?}")));
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(bare.options.origin.as_str()) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("origin {origin:?} is not allowed for this site"),
        ));
    }
    Ok(())
}

/// Every event's id, in order; an event without one refuses the batch, naming it.
fn ids(events: &[Value]) -> Result<Vec<&str>, String> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.get("type")
                .and_then(Value::as_str)
                .ok_or(format!("events[{i}].type is required"))?;
            e.get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty() && id.len() <= 128)
                .ok_or(format!("events[{i}].id is required"))
        })
        .collect()
}

/// A new identity when tokens are played and this one is missing or not ours.
fn identity(bare: &Bare, visitor: &str, token: Option<&str>) -> Option<Value> {
    if !bare.options.issue_identities {
        return None;
    }
    if token.is_some_and(|t| t == token_of(visitor)) {
        bare.stats.with_token.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    bare.stats.identities.fetch_add(1, Ordering::Relaxed);
    let visitor = format!("v_{}", super::visit::base36(&mut fastrand::Rng::new(), 20));
    let token = token_of(&visitor);
    Some(json!({ "visitor": visitor, "token": token }))
}

/// Not a secret: the bare endpoint only checks that the generator sends back what it got.
fn token_of(visitor: &str) -> String {
    format!("tk.{visitor}")
}
