//! Forwarding to the node that owns a visitor: an HTTP request re-sent whole, a WebSocket
//! relayed frame by frame. The load balancer in front knows nothing of visitors; whichever node
//! a request reaches keeps the edge's work (limits, bounds) and passes the rest on, so that
//! everything about one visitor happens on one node.
//!
//! The owner is reached at the internal address its lease names, with the cluster's secret in
//! [`FORWARDED`]. When the owner cannot be reached (it died a moment ago), the client is told
//! to come back shortly (503 with Retry-After, or close code 1013): by then the lease has
//! lapsed and the visitor has a new owner.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::{Extensions, HeaderMap, HeaderName, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use beckon_store::cluster::NodeLease;
use futures::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;

use crate::AppState;
use crate::error::ApiError;
use crate::placement::FORWARDED;
use crate::routes::ws::{CloseReason, close, close_with, read_error, send_raw};

/// How long a forwarded request may take, connection included.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// The headers that describe the client and its request, passed to the owner as they came.
/// Hop-by-hop headers, the host and the length are the connection's own and are not.
const PASSED: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::ORIGIN,
    header::USER_AGENT,
    header::ACCEPT_LANGUAGE,
    header::AUTHORIZATION,
    header::COOKIE,
    header::REFERER,
];

/// Client hints the edge reads for the device, passed too.
const HINT_PREFIX: &str = "sec-ch-ua";

/// The HTTP client that forwards: one per node, its connections kept for reuse.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        // Straight to the node: a proxy from the environment would see the cluster's secret.
        .no_proxy()
        .build()
        .expect("a client without TLS or proxies builds")
}

fn passed(name: &HeaderName) -> bool {
    PASSED.contains(name) || name.as_str().starts_with(HINT_PREFIX)
}

/// What a forwarded request carries of the one that reached this node.
pub struct Incoming<'a> {
    /// The method.
    pub method: Method,
    /// The path and query.
    pub uri: &'a Uri,
    /// The headers (those that describe the client are passed on).
    pub headers: &'a HeaderMap,
    /// The request's extensions (the connection's peer address).
    pub extensions: &'a Extensions,
    /// The body.
    pub body: Bytes,
}

/// Re-sends a request to `owner` and answers with what the owner answered.
pub async fn request(
    state: &AppState,
    owner: &NodeLease,
    incoming: Incoming<'_>,
) -> Result<Response, ApiError> {
    let Incoming {
        method,
        uri,
        headers,
        extensions,
        body,
    } = incoming;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forwarded = state
        .forwarder
        .request(method, format!("http://{}{path}", owner.address))
        .header(FORWARDED, state.placement.secret())
        .body(body);
    // The owner limits the client, not this node: it is told who the client is.
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    if let Some(ip) = crate::throttle::client_ip_rule(&state.limits)(headers, peer) {
        forwarded = forwarded.header(crate::throttle::FORWARDED_CLIENT, ip.to_string());
    }
    for (name, value) in headers.iter().filter(|(n, _)| passed(n)) {
        forwarded = forwarded.header(name, value);
    }
    let answer = forwarded.send().await.map_err(|e| unreachable(owner, e))?;
    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !matches!(
            *name,
            header::CONNECTION | header::TRANSFER_ENCODING | header::CONTENT_LENGTH
        ) {
            out.append(name.clone(), value.clone());
        }
    }
    let bytes = answer.bytes().await.map_err(|e| unreachable(owner, e))?;
    crate::metrics::forwarded("http");
    Ok((status, out, bytes).into_response())
}

fn unreachable(owner: &NodeLease, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(node = %owner.name, error = %e, "the visitor's node did not answer");
    crate::metrics::forwarded("unreachable");
    ApiError::Unavailable(format!(
        "the node that serves this visitor did not answer ({e}); try again shortly"
    ))
}

/// What a relayed socket's upgrade carried of the client.
pub struct Relayed {
    /// The path and query.
    pub uri: Uri,
    /// The headers (those that describe the client are passed on).
    pub headers: HeaderMap,
    /// The client's address, as this node's rate limit reads it: the owner counts it as the
    /// client's (in [`FORWARDED_CLIENT`](crate::throttle::FORWARDED_CLIENT)).
    pub client_ip: Option<IpAddr>,
}

/// How a relay ended.
enum End {
    /// The owner closed the socket: its close frame goes to the client as it came.
    Owner(Option<CloseFrame>),
    /// The relay ends here for `reason` (the client closed or went away, went silent, did not
    /// read or broke the protocol; the owner went away; the node is stopping). The owner is
    /// sent `up` (a close frame), or the reason's own close frame; the client is closed as a
    /// direct socket would be.
    Here(CloseReason, Option<tungstenite::Message>),
}

/// Relays `client`'s socket to the same socket on `owner`, until either end closes; the other
/// is then closed with the same code.
///
/// Each hop keeps its own connection alive: the owner pings this node (tungstenite answers),
/// and this node pings the client every `ws_ping` and, as for a direct socket, closes both
/// ends when nothing (a pong included) has come from the client for `ws_idle_timeout`, or when
/// a frame waits longer than that to be taken.
pub async fn socket(mut client: WebSocket, state: &AppState, owner: NodeLease, relayed: Relayed) {
    let Relayed {
        uri,
        headers,
        client_ip,
    } = relayed;
    let path = uri.path_and_query().map_or("/v1/ws", |p| p.as_str());
    let mut request = match tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}{path}",
        owner.address
    )) {
        Ok(r) => r,
        Err(e) => return refuse(client, &owner, e).await,
    };
    for (name, value) in headers.iter().filter(|(n, _)| passed(n)) {
        request.headers_mut().append(name.clone(), value.clone());
    }
    if let Ok(value) = state.placement.secret().parse() {
        request.headers_mut().insert(FORWARDED, value);
    }
    // The owner limits the client, not this node: it is told who the client is.
    if let Some(ip) = client_ip
        && let Ok(value) = ip.to_string().parse()
    {
        request
            .headers_mut()
            .insert(crate::throttle::FORWARDED_CLIENT, value);
    }
    let upstream =
        tokio::time::timeout(FORWARD_TIMEOUT, tokio_tungstenite::connect_async(request)).await;
    let upstream = match upstream {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(e)) => return refuse(client, &owner, e).await,
        Err(_) => return refuse(client, &owner, "timed out").await,
    };
    crate::metrics::forwarded("socket");
    let (mut up_tx, mut up_rx) = upstream.split();
    let (ping_every, idle_after) = (state.limits.ws_ping, state.limits.ws_idle_timeout);
    let shutdown = state.shutdown.clone();
    // One timer for both the next ping and the idle deadline, whichever comes first.
    let mut next_ping = Instant::now() + ping_every;
    let mut deadline = Instant::now() + idle_after;
    let timer = tokio::time::sleep_until(next_ping.min(deadline));
    tokio::pin!(timer);
    let end = loop {
        timer.as_mut().reset(next_ping.min(deadline));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Here(CloseReason::Shutdown, None),
            from_client = client.recv() => {
                // Anything from the client, a pong included, shows it is there.
                deadline = Instant::now() + idle_after;
                let msg = match from_client {
                    Some(Ok(msg)) => match to_upstream(msg) {
                        Some(msg) => msg,
                        None => continue,
                    },
                    None => break End::Here(CloseReason::Client, None),
                    Some(Err(e)) => break End::Here(read_error(e), None),
                };
                if matches!(msg, tungstenite::Message::Close(_)) {
                    break End::Here(CloseReason::Client, Some(msg));
                }
                match tokio::time::timeout(idle_after, up_tx.send(msg)).await {
                    Ok(Ok(())) => {}
                    // The owner does not take frames: the visitor reconnects, to its owner.
                    Ok(Err(_)) | Err(_) => break End::Here(CloseReason::Moved, None),
                }
            }
            from_owner = up_rx.next() => {
                let msg = match from_owner {
                    Some(Ok(msg)) => match to_client(msg) {
                        Some(msg) => msg,
                        None => continue,
                    },
                    // The owner went away without a word: the visitor reconnects, to its new
                    // owner.
                    Some(Err(_)) | None => break End::Here(CloseReason::Moved, None),
                };
                if let Message::Close(frame) = msg {
                    break End::Owner(frame);
                }
                if send_raw(&mut client, msg, idle_after).await.is_err() {
                    break End::Here(CloseReason::Unwritable, None);
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if now >= deadline {
                    break End::Here(CloseReason::Idle, None);
                }
                next_ping = now + ping_every;
                let ping = Message::Ping(Default::default());
                if send_raw(&mut client, ping, idle_after).await.is_err() {
                    break End::Here(CloseReason::Unwritable, None);
                }
            }
        }
    };
    match end {
        End::Owner(frame) => {
            // The owner's close is answered (tungstenite queued the reply), and passed on.
            let _ = tokio::time::timeout(idle_after, up_tx.close()).await;
            close_with(client, frame).await;
        }
        End::Here(reason, up) => {
            // The owner first: it frees the visitor's slot at once.
            let up = up.unwrap_or_else(|| {
                tungstenite::Message::Close(reason.frame().map(|(code, text)| {
                    tungstenite::protocol::CloseFrame {
                        code: code.into(),
                        reason: text.into(),
                    }
                }))
            });
            let _ = tokio::time::timeout(idle_after, up_tx.send(up)).await;
            close(client, reason).await;
        }
    }
}

async fn refuse(mut client: WebSocket, owner: &NodeLease, e: impl std::fmt::Display) {
    tracing::warn!(node = %owner.name, error = %e, "cannot relay a socket to the visitor's node");
    crate::metrics::forwarded("unreachable");
    let _ = client
        .send(Message::Close(Some(CloseFrame {
            code: axum::extract::ws::close_code::AGAIN,
            reason: "the node that serves this visitor did not answer; try again".into(),
        })))
        .await;
}

fn to_upstream(msg: Message) -> Option<tungstenite::Message> {
    Some(match msg {
        Message::Text(t) => tungstenite::Message::text(t.as_str()),
        Message::Binary(b) => tungstenite::Message::binary(b),
        // Each hop keeps its own connection alive.
        Message::Ping(_) | Message::Pong(_) => return None,
        Message::Close(frame) => {
            tungstenite::Message::Close(frame.map(|f| tungstenite::protocol::CloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            }))
        }
    })
}

fn to_client(msg: tungstenite::Message) -> Option<Message> {
    Some(match msg {
        tungstenite::Message::Text(t) => Message::text(t.as_str()),
        tungstenite::Message::Binary(b) => Message::Binary(b),
        // Each hop keeps its own connection alive.
        tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => return None,
        tungstenite::Message::Close(frame) => Message::Close(frame.map(|f| CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        tungstenite::Message::Frame(_) => return None,
    })
}
