//! The chat without a socket, and the chat's settings for the widget:
//! - `POST /v1/chat?site=KEY` carries one chat frame and answers the frames the socket would;
//! - `GET /v1/chat?site=KEY&visitor=…&token=…&after=N` answers the conversation and its
//!   messages after `after`, waiting a little for something new when there is nothing yet
//!   (unless `wait=false`);
//! - `GET /v1/chat/config?site=KEY` answers what the widget shows (launcher, title, pre-chat
//!   form);
//! - `POST /v1/chat/files?site=KEY&visitor=…&token=…&id=…&name=…` sends a file (the body, at
//!   most 5 MiB, its type read from its content), and `GET /v1/chat/files/{id}?site=…&visitor=…
//!   &token=…` fetches one of the visitor's own conversations' files, served so that no
//!   browser runs it.
//!
//! The visitor must present a token that matches: a chat is never opened for a new identity
//! over HTTP (the socket and the event batches issue those).

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use beckon_agent::desk::{Desk, VisitorRef};
use beckon_engine::VisitorId;
use serde::{Deserialize, Serialize};

use super::events::{checked_site, checked_site_for_get};
use crate::AppState;
use crate::body::Body;
use crate::chat::{CarriedFrame, Frames, as_json};
use crate::error::ApiError;
use crate::sites::SiteRuntime;
use crate::wire_chat::{ChatDown, ChatUp};

/// The longest a `GET /v1/chat` waits for something new.
pub const LONG_POLL: Duration = Duration::from_secs(10);

/// The site, from the URL.
#[derive(Debug, Deserialize)]
pub struct SiteKey {
    site: String,
}

/// A chat frame posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posted {
    visitor: String,
    token: String,
    frame: ChatUp,
}

/// What to read.
#[derive(Debug, Deserialize)]
pub struct Poll {
    site: String,
    visitor: String,
    token: String,
    #[serde(default)]
    after: u64,
    /// Wait for news when there is none yet (the default); `wait=false` answers at once.
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

fn desk(state: &AppState) -> Result<Desk, ApiError> {
    state
        .desk
        .clone()
        .ok_or_else(|| ApiError::NotFound("chat is not available on this server".to_owned()))
}

fn visitor(
    state: &AppState,
    site: &SiteRuntime,
    visitor: &str,
    token: &str,
) -> Result<VisitorRef, ApiError> {
    let v = VisitorId::parse(visitor).map_err(|e| ApiError::BadRequest(format!("visitor {e}")))?;
    if !state.tokens.verify(&site.record.id, &v, token) {
        return Err(ApiError::Unauthorized);
    }
    Ok(VisitorRef {
        site: site.record.id.clone(),
        visitor: v,
    })
}

/// `POST /v1/chat?site=KEY`.
pub async fn post(
    State(state): State<AppState>,
    Query(key): Query<SiteKey>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let posted: Posted = body.json("chat frame")?;
    let site = checked_site(&state, &key.site, &headers)?;
    let who = visitor(&state, &site, &posted.visitor, &posted.token)?;
    let desk = desk(&state)?;
    let frames = crate::chat::answer(&state, &desk, &site, &who, posted.frame).await;
    Ok(Json(Frames { frames }).into_response())
}

/// `POST /v1/internal/chat`: a chat frame another node carried to this one, where the site's
/// desk runs. One of the nodes' own routes (answered only to the cluster's secret,
/// `placement::nodes_only`; the carrying node checked the visitor's token).
pub async fn carried(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let carried: CarriedFrame = body.json("chat frame")?;
    let site = super::server_events::site_by_id(&state, &carried.site)?;
    // The view changed while the frame travelled: it is refused, and the tab sends it again
    // (a frame is never served by a node that is not the site's desk).
    if !state.placement.desk_is_here(&site.record.id) {
        return Err(crate::to_desk::moved());
    }
    let visitor = VisitorId::parse(&carried.visitor)
        .map_err(|e| ApiError::BadRequest(format!("visitor {e}")))?;
    let who = VisitorRef {
        site: site.record.id.clone(),
        visitor,
    };
    let desk = desk(&state)?;
    let frames = as_json(crate::chat::handle(&desk, &site, &who, carried.frame).await);
    Ok(Json(Frames { frames }).into_response())
}

/// `GET /v1/chat?site=KEY&visitor=…&token=…&after=N`.
pub async fn poll(
    State(state): State<AppState>,
    Query(poll): Query<Poll>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let site = checked_site_for_get(&state, &poll.site, &headers)?;
    let who = visitor(&state, &site, &poll.visitor, &poll.token)?;
    let desk = desk(&state)?;
    // Subscribed before reading, so nothing said in between is missed.
    let mut watch = desk.watch_visitor(&who.site, &who.visitor);
    let sync = ChatUp::ChatSync { after: poll.after };
    // A sync reads only the store: it is answered here, wherever the site's desk runs (its
    // news reaches this node's watchers over the bus).
    let mut frames = crate::chat::handle(&desk, &site, &who, sync).await;
    let fresh = frames.iter().any(|f| {
        matches!(f, ChatDown::ChatState { messages: Some(m), .. } if !m.is_empty())
            || matches!(f, ChatDown::ChatError { .. })
    });
    if !fresh && poll.wait {
        let wait = LONG_POLL.min(
            state
                .limits
                .request_timeout
                .saturating_sub(Duration::from_secs(2)),
        );
        if let Ok(Some(_)) = tokio::time::timeout(wait, watch.recv()).await {
            let sync = ChatUp::ChatSync { after: poll.after };
            frames = crate::chat::handle(&desk, &site, &who, sync).await;
        }
    }
    Ok(Json(Frames {
        frames: as_json(frames),
    })
    .into_response())
}

/// What the widget shows before any conversation.
#[derive(Debug, Serialize)]
pub struct WidgetConfig {
    launcher: bool,
    title: String,
    prechat: PrechatConfig,
}

/// The pre-chat form's fields.
#[derive(Debug, Serialize)]
pub struct PrechatConfig {
    name: bool,
    email: bool,
    topics: Vec<String>,
}

/// `GET /v1/chat/config?site=KEY`.
pub async fn config(
    State(state): State<AppState>,
    Query(key): Query<SiteKey>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let site = checked_site_for_get(&state, &key.site, &headers)?;
    let Some(desk) = state.desk.clone() else {
        return Ok(Json(WidgetConfig {
            launcher: false,
            title: String::new(),
            prechat: PrechatConfig {
                name: false,
                email: false,
                topics: Vec::new(),
            },
        })
        .into_response());
    };
    let s = desk.settings(&site.record.id);
    let body = WidgetConfig {
        launcher: s.launcher,
        title: s.title,
        prechat: PrechatConfig {
            name: s.prechat.name,
            email: s.prechat.email,
            topics: s.prechat.topics,
        },
    };
    Ok((
        [(axum::http::header::CACHE_CONTROL, "max-age=60")],
        Json(body),
    )
        .into_response())
}

/// Who sends a file, and as what.
#[derive(Debug, Deserialize)]
pub struct Upload {
    site: String,
    visitor: String,
    token: String,
    /// The tab's id for the message that carries it.
    id: String,
    /// The file's name.
    #[serde(default)]
    name: String,
}

/// `POST /v1/chat/files?site=KEY&visitor=…&token=…&id=m_…&name=…`; sent on whole to the
/// node of the site's desk when that is another.
pub async fn upload(
    State(state): State<AppState>,
    Query(up): Query<Upload>,
    uri: axum::http::Uri,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: crate::body::FileBody,
) -> Result<Response, ApiError> {
    let site = checked_site(&state, &up.site, &headers)?;
    let who = visitor(&state, &site, &up.visitor, &up.token)?;
    let desk = desk(&state)?;
    if let crate::placement::Route::Owner(node) = state.placement.desk(&who.site) {
        if state.placement.forwarded(&headers) {
            return Err(crate::to_desk::moved());
        }
        let incoming = crate::forward::Incoming {
            method: axum::http::Method::POST,
            uri: &uri,
            headers: &headers,
            extensions: &extensions,
            body: body.0,
        };
        return crate::forward::request(&state, &node, incoming).await;
    }
    let frames = match beckon_agent::desk::check_client_id(&up.id) {
        Err(e) => vec![ChatDown::ChatError {
            id: None,
            error: e.to_string(),
            retry: false,
        }],
        Ok(id) => match desk.visitor_file(&who, id.clone(), &up.name, &body.0).await {
            Ok(said) => vec![ChatDown::Said {
                id,
                seq: said.message.seq,
            }],
            Err(e) => vec![ChatDown::ChatError {
                id: Some(id),
                error: e.to_string(),
                retry: false,
            }],
        },
    };
    Ok(Json(Frames {
        frames: as_json(frames),
    })
    .into_response())
}

/// Who asks for a file.
#[derive(Debug, Deserialize)]
pub struct Fetch {
    site: String,
    visitor: String,
    token: String,
}

/// `GET /v1/chat/files/{id}?site=KEY&visitor=…&token=…`.
pub async fn file(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(fetch): Query<Fetch>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // An <img> is fetched without an `Origin`: the visitor's token is the credential.
    let site = checked_site_for_get(&state, &fetch.site, &headers)?;
    let who = visitor(&state, &site, &fetch.visitor, &fetch.token)?;
    let desk = desk(&state)?;
    let (record, bytes) = desk
        .visitor_file_of(&who, &id)
        .await
        .map_err(|_| ApiError::NotFound("no such file".to_owned()))?;
    Ok(serve_file(&record.name, &record.mime, bytes))
}

/// A stored file, with the headers [`beckon_agent::files::served_headers`] gives it.
fn serve_file(name: &str, mime: &str, bytes: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = bytes.into_response();
    for (k, v) in beckon_agent::files::served_headers(name, mime) {
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}
