//! `GET /v1/ws`: events up, acknowledgements and interventions down.
//!
//! Most sockets are idle most of the time (a visitor reading a page), and a node is meant to
//! hold a hundred thousand of them, so what one socket costs is chosen here: one task per
//! socket (reading, writing, pinging and the idle deadline in one `select!` over one timer,
//! no writer task), a small read buffer that grows only for a large frame, no write
//! buffering, the shard's push channel made only once there is a session, and everything
//! that runs for a frame (a batch on its way, a reply, the close) boxed so it costs memory
//! only while it runs. `tests/memory.rs` measures the result.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::Response;
use beckon_engine::VisitorId;
use futures::StreamExt;
use serde::Deserialize;
use tokio::time::Instant;

use super::events::header_str;
use crate::AppState;
use crate::error::ApiError;
use crate::intake::{self, Claim, Sender};
use crate::metrics;
use crate::shard::{PushReceiver, ShardMsg, VisitorKey};
use crate::sites::SiteRuntime;
use crate::wire::{ClientContext, DownFrame, Identity, MAX_BODY_BYTES, UpFrame};
use crate::wire_chat::{self, ChatDown, ChatUp};
use beckon_agent::desk::{Update, VisitorRef, VisitorWatch};

/// The largest frame (and message) a client may send: the same bound as a `POST` body. A
/// larger one closes the socket with 1009.
pub const MAX_FRAME_BYTES: usize = MAX_BODY_BYTES;
/// What the socket's read buffer starts at. tungstenite allocates it up front for every
/// socket (128 KiB by default, the largest part of an idle socket's cost); a frame of a page
/// view or two fits in it, and a larger frame grows it (up to [`MAX_FRAME_BYTES`]).
pub const READ_BUFFER_BYTES: usize = 1024;
/// The most that may wait to be written to a client that does not read; past it the socket
/// is closed. One largest frame fits, with room for the control frames around it.
pub const MAX_WRITE_BUFFER_BYTES: usize = MAX_FRAME_BYTES + 4 * 1024;
/// Frames the shard may push (timer-driven interventions) before the socket writes them.
const OUTBOUND: usize = 16;
/// How long a closing socket waits for the client's close frame (the closing handshake), so
/// that the client reads the close code instead of a reset connection.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Who the socket speaks for, as the query string says.
#[derive(Debug, Deserialize)]
pub struct Params {
    site: String,
    #[serde(default)]
    visitor: Option<String>,
    #[serde(default)]
    token: Option<String>,
    session: String,
}

/// Checks the site, origin and ids before upgrading, so a refused socket gets an HTTP error
/// that says why.
pub async fn upgrade(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let site = state
        .sites
        .get(&params.site)
        .ok_or_else(|| ApiError::Forbidden(format!("unknown site key {:?}", params.site)))?;
    let origin = header_str(&headers, header::ORIGIN);
    let now = state.clock.now();
    if !site.allows_origin(origin) {
        let why = format!(
            "origin {:?} is not allowed for this site",
            origin.unwrap_or("(none)")
        );
        state
            .origins
            .record(&site.record.id, origin, Some(&why), now);
        return Err(ApiError::Forbidden(why));
    }
    state.origins.record(&site.record.id, origin, None, now);
    // A node that holds its most sockets says so before upgrading: come back later.
    if state.sockets.total() >= state.limits.max_sockets {
        metrics::shed("sockets");
        return Err(ApiError::Overloaded {
            retry_after: state.limits.retry_after,
        });
    }
    if let Some(v) = &params.visitor {
        VisitorId::parse(v).map_err(|e| ApiError::BadRequest(format!("visitor {e}")))?;
    }
    if beckon_engine::SessionId::parse(&params.session).is_err() {
        return Err(ApiError::BadRequest(
            "session must be 1 to 128 characters of [A-Za-z0-9._:-]".to_owned(),
        ));
    }
    // Another node's visitor: the socket is relayed to it, whole.
    if !state.placement.forwarded(&headers)
        && let Some(owner) = intake::owner_elsewhere(
            &state,
            &site,
            params.visitor.as_deref(),
            params.token.as_deref(),
        )
    {
        // The owner limits the client, not this node: it is told who the client is.
        let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
        let client_ip = crate::throttle::client_ip_rule(&state.limits)(&headers, peer);
        let relayed = crate::forward::Relayed {
            uri,
            headers,
            client_ip,
        };
        return Ok(ws
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
            .max_frame_size(MAX_FRAME_BYTES)
            .max_message_size(MAX_FRAME_BYTES)
            .on_upgrade(move |socket| relay(socket, state, owner, relayed)));
    }
    // A missing or wrong token makes this socket a new visitor's: it is told so first.
    let (visitor, identity) = intake::identify(
        &state,
        &site,
        params.visitor.as_deref(),
        params.token.as_deref(),
    );
    let token = match &identity {
        Some(i) => i.token.clone(),
        None => params.token.unwrap_or_default(),
    };
    let user_agent = header_str(&headers, header::USER_AGENT)
        .unwrap_or("")
        .to_owned();
    // Boxed, so the upgrade's closure and the socket's task each hold a pointer to it rather
    // than a copy (an async fn keeps its arguments apart from what they are moved into).
    let conn = Box::new(Conn {
        key: (site.record.id.clone(), visitor.clone()),
        site: site.clone(),
        state,
        session: params.session,
        visitor,
        token,
        identity,
        user_agent,
        hints: crate::edge::ClientHints::from_headers(&headers),
        context: ClientContext::default(),
        id: rand::random(),
        pushes: None,
        chat: None,
    });
    Ok(ws
        .read_buffer_size(READ_BUFFER_BYTES)
        // Each frame is written as it is sent: frames down are few and small, and a buffer
        // kept for batching them would be kept for every idle socket.
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| serve(socket, conn)))
}

/// Relays a socket to the visitor's owner, holding one of this node's `max_sockets` slots for
/// as long as the relay lasts (the visitor's own count is kept by the owner).
async fn relay(
    socket: WebSocket,
    state: AppState,
    owner: beckon_store::cluster::NodeLease,
    relayed: crate::forward::Relayed,
) {
    let Ok(slot) = state.sockets.relay(state.limits.max_sockets) else {
        // Upgrades that raced past the check before upgrading.
        Box::pin(close(socket, CloseReason::Overloaded)).await;
        return;
    };
    crate::forward::socket(socket, &state, owner, relayed).await;
    drop(slot);
}

/// Why a socket closed, with the close code the server sends (if it sends one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it, or the connection dropped.
    Client,
    /// The client did not take a frame in time, or writing failed.
    Unwritable,
    /// Nothing came from the client, not even a pong, for `ws_idle_timeout`.
    Idle,
    /// The server is shutting down: 1001.
    Shutdown,
    /// A binary frame: 1003.
    Binary,
    /// A text frame that is not UTF-8: 1007.
    NotUtf8,
    /// The visitor has `max_sockets_per_visitor` sockets open already: 1008.
    TooManySockets,
    /// A frame over [`MAX_FRAME_BYTES`]: 1009.
    TooLarge,
    /// The server is overloaded; try again later: 1013.
    Overloaded,
    /// Another node owns the visitor now (the cluster's view changed); reconnect: 1012.
    Moved,
    /// The client broke the protocol (an unmasked frame, a bad opcode): 1002.
    Protocol,
}

impl CloseReason {
    /// The close code and the reason text sent, if the server sends a close frame.
    pub fn frame(self) -> Option<(u16, &'static str)> {
        match self {
            CloseReason::Client | CloseReason::Unwritable => None,
            CloseReason::Idle => Some((close_code::NORMAL, "idle")),
            CloseReason::Shutdown => Some((close_code::AWAY, "the server is shutting down")),
            CloseReason::Binary => Some((close_code::UNSUPPORTED, "frames are JSON text")),
            CloseReason::NotUtf8 => Some((close_code::INVALID, "the frame is not UTF-8")),
            CloseReason::TooManySockets => {
                Some((close_code::POLICY, "too many sockets open for this visitor"))
            }
            CloseReason::TooLarge => Some((close_code::SIZE, "the frame is over 64 KiB")),
            CloseReason::Overloaded => Some((close_code::AGAIN, "overloaded; try again later")),
            CloseReason::Moved => Some((
                close_code::RESTART,
                "the visitor moved to another node; reconnect",
            )),
            CloseReason::Protocol => Some((close_code::PROTOCOL, "protocol error")),
        }
    }

    /// The label this reason is counted under in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Unwritable => "unwritable",
            CloseReason::Idle => "idle",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Binary => "binary",
            CloseReason::NotUtf8 => "not_utf8",
            CloseReason::TooManySockets => "too_many_sockets",
            CloseReason::TooLarge => "too_large",
            CloseReason::Overloaded => "overloaded",
            CloseReason::Moved => "moved",
            CloseReason::Protocol => "protocol",
        }
    }
}

/// The open sockets, counted per visitor and in all, so that one visitor (or a script posing
/// as one) cannot hold more than `max_sockets_per_visitor`, nor everyone together more than
/// `max_sockets`.
#[derive(Clone, Default)]
pub struct Sockets {
    // A std mutex rather than tokio's: it is held for one map update and never across an
    // await, so it cannot block the runtime.
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    by_visitor: HashMap<VisitorKey, usize>,
    total: usize,
}

/// Why a socket could not take a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// The visitor has `max_sockets_per_visitor` open.
    Visitor,
    /// The node has `max_sockets` open.
    Node,
}

impl Sockets {
    /// Takes one of the visitor's `per_visitor` slots and one of the node's `total` slots,
    /// both or neither. The slots are given back when the returned guard is dropped.
    pub fn open(&self, key: VisitorKey, per_visitor: usize, total: usize) -> Result<Slot, Full> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= total {
            return Err(Full::Node);
        }
        let n = open.by_visitor.entry(key.clone()).or_insert(0);
        if *n >= per_visitor {
            if *n == 0 {
                open.by_visitor.remove(&key);
            }
            return Err(Full::Visitor);
        }
        *n += 1;
        open.total += 1;
        metrics::socket_opened();
        Ok(Slot {
            sockets: self.clone(),
            key: Some(key),
        })
    }

    /// Takes one of the node's `total` slots for a socket relayed to another node, which
    /// counts the visitor's sockets itself. Given back when the returned guard is dropped.
    pub fn relay(&self, total: usize) -> Result<Slot, Full> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= total {
            return Err(Full::Node);
        }
        open.total += 1;
        metrics::socket_opened();
        Ok(Slot {
            sockets: self.clone(),
            key: None,
        })
    }

    /// How many sockets are open in all.
    pub fn total(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// How many sockets `key` has open.
    pub fn of(&self, key: &VisitorKey) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.by_visitor.get(key).copied().unwrap_or(0)
    }
}

/// One open socket of a visitor (or, without a visitor, one this node relays); dropping it
/// frees the slot.
pub struct Slot {
    sockets: Sockets,
    key: Option<VisitorKey>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.sockets.open.lock().unwrap_or_else(|e| e.into_inner());
        match &self.key {
            Some(key) => {
                if let Some(n) = open.by_visitor.get_mut(key) {
                    *n -= 1;
                    if *n == 0 {
                        open.by_visitor.remove(key);
                    }
                    open.total -= 1;
                }
            }
            None => open.total -= 1,
        }
        metrics::socket_closed();
    }
}

/// What one socket keeps between frames. The loop that waits for the next frame holds only
/// this and the socket; all that runs for a frame (a batch on its way, a reply being written,
/// the close) is boxed, so it costs memory only while it runs.
struct Conn {
    state: AppState,
    site: Arc<SiteRuntime>,
    /// The session the socket was opened for.
    session: String,
    /// The visitor, and its token: what each batch presents.
    visitor: VisitorId,
    token: String,
    /// A new identity to announce before anything else (taken once sent).
    identity: Option<Identity>,
    user_agent: String,
    /// The client hints sent with the upgrade.
    hints: crate::edge::ClientHints,
    key: VisitorKey,
    /// The widget's context, as last sent.
    context: ClientContext,
    /// This connection's id in its shard's list of sockets to push to.
    id: u64,
    /// The shard's pushes (timer-driven interventions), from the first batch on: a channel
    /// is made only once there is a session to push from.
    pushes: Option<PushReceiver>,
    /// What happens in the visitor's conversation, from the first chat frame on.
    /// (Boxed: most sockets never chat, and an idle socket pays one pointer for it.)
    chat: Option<Box<VisitorWatch>>,
}

async fn serve(mut socket: WebSocket, mut conn: Box<Conn>) {
    let limits = &conn.state.limits;
    let slot = match conn.state.sockets.open(
        conn.key.clone(),
        limits.max_sockets_per_visitor,
        limits.max_sockets,
    ) {
        Ok(slot) => slot,
        Err(full) => {
            let reason = match full {
                Full::Visitor => CloseReason::TooManySockets,
                // Upgrades that raced past the check before upgrading.
                Full::Node => CloseReason::Overloaded,
            };
            Box::pin(close(socket, reason)).await;
            return;
        }
    };
    let (ping_every, idle_after) = (limits.ws_ping, limits.ws_idle_timeout);
    if let Some(identity) = conn.identity.take() {
        if let Err(reason) = Box::pin(send(
            &mut socket,
            &DownFrame::Identity(identity),
            idle_after,
        ))
        .await
        {
            drop(slot);
            Box::pin(close(socket, reason)).await;
            return;
        }
    }
    let shutdown = conn.state.shutdown.clone();
    // One timer for both the next ping and the idle deadline, whichever comes first.
    let mut next_ping = Instant::now() + ping_every;
    let mut deadline = Instant::now() + idle_after;
    let timer = tokio::time::sleep_until(next_ping.min(deadline));
    tokio::pin!(timer);
    let reason = loop {
        timer.as_mut().reset(next_ping.min(deadline));
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break CloseReason::Shutdown,
            msg = socket.recv() => msg,
            update = next_chat(&mut conn.chat) => {
                let frame = match update {
                    Some(update) => wire_chat::update(&update),
                    // This tab fell behind and lost its subscription: it syncs again.
                    None => {
                        conn.chat = None;
                        Some(ChatDown::ChatStale)
                    }
                };
                if let Some(frame) = frame
                    && let Err(reason) = Box::pin(send_chat(&mut socket, &frame, idle_after)).await
                {
                    break reason;
                }
                continue;
            }
            frame = next_push(&mut conn.pushes) => {
                // The shard let the visitor go: another node owns them now.
                let Some(frame) = frame else { break CloseReason::Moved };
                if let Err(reason) = Box::pin(send(&mut socket, &frame, idle_after)).await {
                    break reason;
                }
                continue;
            }
            () = &mut timer => {
                let now = Instant::now();
                if now >= deadline {
                    break CloseReason::Idle;
                }
                next_ping = now + ping_every;
                let ping = Message::Ping(Default::default());
                if let Err(reason) = Box::pin(send_raw(&mut socket, ping, idle_after)).await {
                    break reason;
                }
                continue;
            }
        };
        // Anything from the client, a pong included, shows it is there.
        deadline = Instant::now() + idle_after;
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => break CloseReason::Binary,
            Some(Ok(Message::Close(_))) | None => break CloseReason::Client,
            Some(Err(e)) => break read_error(e),
        };
        if let Err(reason) = Box::pin(conn.on_text(&mut socket, &text, idle_after)).await {
            break reason;
        }
    };
    Box::pin(conn.detach()).await;
    drop(slot);
    Box::pin(close(socket, reason)).await;
}

impl Conn {
    /// Answers one text frame: an error frame for a malformed one, else the batch's ack and
    /// interventions once it is stored.
    async fn on_text(
        &mut self,
        socket: &mut WebSocket,
        text: &str,
        within: Duration,
    ) -> Result<(), CloseReason> {
        let (ctx, events) = match serde_json::from_str::<UpFrame>(text) {
            Ok(UpFrame::Events { context, events }) => (context, events),
            Err(e) => {
                // Not a batch: a chat frame, or nothing known.
                if !is_events_frame(text) {
                    return self.on_chat(socket, text, within).await;
                }
                let error = DownFrame::Error {
                    error: format!("malformed frame: {e}"),
                };
                return send(socket, &error, within).await;
            }
        };
        if let Some(ctx) = ctx {
            self.context = ctx;
        }
        let from = Sender {
            site: self.site.clone(),
            claim: Claim::Browser {
                visitor: Some(self.visitor.as_str()),
                token: Some(&self.token),
            },
            session: Some(&self.session),
            user_agent: &self.user_agent,
            hints: &self.hints,
            context: &self.context,
        };
        // The site's rate applies to batches over a socket as to batches posted; a throttled
        // batch is refused with an error frame (nothing was stored; the widget resends).
        let retry_after = self.state.limits.retry_after;
        let submitted = match self.state.throttle.check_site(&self.site.record.id) {
            Ok(()) => intake::submit(&self.state, from, events)
                .await
                .map_err(|e| ApiError::from_intake(e, retry_after)),
            Err(e) => {
                metrics::throttled("site");
                Err(e)
            }
        };
        let reply = match submitted {
            Ok(submitted) => submitted.reply,
            Err(e) => {
                if let Some(reason) = overloaded(&e) {
                    return Err(reason);
                }
                let error = DownFrame::Error {
                    error: e.to_string(),
                };
                return send(socket, &error, within).await;
            }
        };
        if self.pushes.is_none() {
            // The first batch has loaded the session into its shard; from now on the shard
            // can push timer-driven interventions to this socket.
            // `futures`' channel holds its buffer plus one message per sender (one here).
            let (tx, rx) = futures::channel::mpsc::channel(OUTBOUND - 1);
            self.pushes = Some(rx);
            let attach = ShardMsg::Attach {
                key: self.key.clone(),
                conn: self.id,
                tx,
            };
            let _ = self.state.shards.send(&self.visitor, attach).await;
        }
        let ids = reply.acked.iter().map(|i| i.to_string()).collect();
        send(socket, &DownFrame::Ack { ids }, within).await?;
        for i in reply.interventions {
            send(socket, &DownFrame::Intervention(i), within).await?;
        }
        Ok(())
    }

    /// Answers a chat frame at the desk; the first one subscribes the socket to the
    /// visitor's conversation.
    async fn on_chat(
        &mut self,
        socket: &mut WebSocket,
        text: &str,
        within: Duration,
    ) -> Result<(), CloseReason> {
        let up = match serde_json::from_str::<ChatUp>(text) {
            Ok(up) => up,
            Err(e) => {
                let error = DownFrame::Error {
                    error: format!("malformed frame: {e}"),
                };
                return send(socket, &error, within).await;
            }
        };
        let Some(desk) = self.state.desk.clone() else {
            let error = ChatDown::ChatError {
                id: None,
                error: "chat is not available on this server".to_owned(),
                retry: false,
            };
            return send_chat(socket, &error, within).await;
        };
        let who = VisitorRef {
            site: self.site.record.id.clone(),
            visitor: self.visitor.clone(),
        };
        if self.chat.is_none() {
            self.chat = Some(Box::new(desk.watch_visitor(&who.site, &who.visitor)));
        }
        for frame in crate::chat::answer(&self.state, &desk, &self.site, &who, up).await {
            send_raw(socket, Message::Text(frame.to_string().into()), within).await?;
        }
        Ok(())
    }

    /// Stops the shard's pushes to this socket.
    async fn detach(self: Box<Self>) {
        if self.pushes.is_some() {
            let detach = ShardMsg::Detach {
                key: self.key,
                conn: self.id,
            };
            let _ = self.state.shards.send(&self.visitor, detach).await;
        }
    }
}

/// The next update of the visitor's conversation (`None`: the subscription was dropped);
/// never, before the first chat frame.
async fn next_chat(chat: &mut Option<Box<VisitorWatch>>) -> Option<Update> {
    match chat {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether a frame that did not parse as a batch says it is one (its error is then the
/// batch's), rather than a chat frame.
fn is_events_frame(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_str::<Kind>(text).map_or(true, |k| k.kind.as_deref() == Some("events"))
}

/// The next frame the shard pushed; never, before the first batch.
async fn next_push(pushes: &mut Option<PushReceiver>) -> Option<Box<DownFrame>> {
    match pushes {
        Some(rx) => rx.next().await,
        None => std::future::pending().await,
    }
}

/// The close reason for a batch refused because the server is overloaded (its shard's queue
/// is full): the client should come back later, and closing sheds its socket too. Other
/// refusals (a malformed event, a rate limit, a storage error) are answered with an error
/// frame and the socket stays.
fn overloaded(e: &ApiError) -> Option<CloseReason> {
    match e {
        ApiError::Overloaded { .. } => {
            metrics::shed("shard_queue_full");
            Some(CloseReason::Overloaded)
        }
        _ => None,
    }
}

/// Sends the close frame `reason` calls for (if any) and waits, a little, for the client's
/// own close frame, so the close code is read rather than lost to a reset connection.
pub(crate) async fn close(socket: WebSocket, reason: CloseReason) {
    metrics::ws_closed(reason.label());
    let Some((code, text)) = reason.frame() else {
        return;
    };
    close_with(
        socket,
        Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(text),
        }),
    )
    .await;
}

/// Sends `frame` (a close frame, with it as its code and reason if given) and waits, a
/// little, for the client's own close frame.
pub(crate) async fn close_with(mut socket: WebSocket, frame: Option<CloseFrame>) {
    let frame = Message::Close(frame);
    let linger = async {
        if socket.send(frame).await.is_err() {
            return;
        }
        // Read until the client's close frame, the end of the stream, or an error.
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, linger).await;
}

/// What a read error means for the socket.
pub(crate) fn read_error(e: axum::Error) -> CloseReason {
    use tungstenite::error::{CapacityError, Error, ProtocolError};
    let Ok(e) = e.into_inner().downcast::<Error>() else {
        return CloseReason::Client;
    };
    match *e {
        Error::Utf8(_) => CloseReason::NotUtf8,
        Error::Capacity(CapacityError::MessageTooLong { .. }) => CloseReason::TooLarge,
        // A client gone without a close frame is not a protocol error worth answering.
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => CloseReason::Client,
        Error::Protocol(_) => CloseReason::Protocol,
        _ => CloseReason::Client,
    }
}

async fn send_chat(
    socket: &mut WebSocket,
    frame: &ChatDown,
    within: Duration,
) -> Result<(), CloseReason> {
    let text = serde_json::to_string(frame).unwrap_or_default();
    send_raw(socket, Message::Text(text.into()), within).await
}

async fn send(
    socket: &mut WebSocket,
    frame: &DownFrame,
    within: Duration,
) -> Result<(), CloseReason> {
    let text = serde_json::to_string(frame).unwrap_or_default();
    send_raw(socket, Message::Text(text.into()), within).await
}

/// Sends one message, giving up on a client that has not taken it within `within` (it has
/// stopped reading; its socket is closed rather than kept waiting).
pub(crate) async fn send_raw(
    socket: &mut WebSocket,
    msg: Message,
    within: Duration,
) -> Result<(), CloseReason> {
    match tokio::time::timeout(within, socket.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(CloseReason::Unwritable),
    }
}
