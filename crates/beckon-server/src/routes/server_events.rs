//! The merchant's backend: `POST /v1/conversions` and `POST /v1/track`, authenticated with the
//! site's secret key. A payment that failed or a trial that started becomes a signal rules can
//! use, for a visitor the widget already knows.
//!
//! In a cluster, a report for a visitor another node owns is forwarded to that node (as the
//! widget's batches are), once authenticated here: everything about a visitor is decided
//! where it lives. `POST /v1/internal/conversation` is the nodes' own: a conversation's start
//! or end, told to the visitor's owner by the node whose desk saw it (see
//! [`crate::chat::tell_the_engine`]); it is accepted only with the cluster's secret.

use axum::Json;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use beckon_engine::VisitorId;
use beckon_store::cluster::NodeLease;
use serde::Deserialize;
use serde_json::{Value, json};

use super::events::header_str;
use crate::AppState;
use crate::body::Body;
use crate::error::ApiError;
use crate::forward;
use crate::intake::{self, Claim, Sender};
use crate::placement::Route;
use crate::sites::SiteRuntime;
use crate::wire::ClientContext;

/// A conversion reported by the backend.
#[derive(Debug, Deserialize)]
pub struct Conversion {
    site: String,
    visitor: String,
    session: Option<String>,
    order_id: String,
    #[serde(default)]
    value: f64,
}

/// A custom event reported by the backend.
#[derive(Debug, Deserialize)]
pub struct Track {
    site: String,
    visitor: String,
    session: Option<String>,
    /// The backend's id for the event, for idempotent retries.
    id: String,
    name: String,
    #[serde(default)]
    props: Value,
}

/// `POST /v1/conversions`.
pub async fn conversion(
    State(state): State<AppState>,
    uri: Uri,
    extensions: Extensions,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response, ApiError> {
    let body: Conversion = raw.json("body")?;
    let site = authorize(&state, &headers, &body.site)?;
    if let Some(owner) = owner_elsewhere(&state, &headers, &site, &body.visitor) {
        return forward_to(&state, &owner, &uri, &headers, &extensions, raw).await;
    }
    // The event's id only has to be valid and stable across retries; the order id itself is the
    // idempotency key (once per site, whoever reports it).
    let id = format!(
        "order:{:016x}",
        beckon_engine::hash::fnv1a64(&body.order_id)
    );
    let event =
        json!({"id": id, "type": "convert", "order_id": body.order_id, "value": body.value});
    forward(&state, site, &body.visitor, body.session.as_deref(), event).await
}

/// `POST /v1/track`.
pub async fn track(
    State(state): State<AppState>,
    uri: Uri,
    extensions: Extensions,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response, ApiError> {
    let body: Track = raw.json("body")?;
    let site = authorize(&state, &headers, &body.site)?;
    if let Some(owner) = owner_elsewhere(&state, &headers, &site, &body.visitor) {
        return forward_to(&state, &owner, &uri, &headers, &extensions, raw).await;
    }
    let event = json!({"id": format!("server:{}", body.id), "type": "track", "name": body.name, "props": body.props});
    forward(&state, site, &body.visitor, body.session.as_deref(), event).await
}

/// The node that owns the visitor a report names, when it is not this one and the request was
/// not forwarded already (a forwarded request is served where it arrives). A malformed id is
/// served here, which refuses it.
fn owner_elsewhere(
    state: &AppState,
    headers: &HeaderMap,
    site: &SiteRuntime,
    visitor: &str,
) -> Option<NodeLease> {
    if !state.placement.clustered() || state.placement.forwarded(headers) {
        return None;
    }
    let visitor = VisitorId::parse(visitor).ok()?;
    match state.placement.route(&site.record.id, &visitor) {
        Route::Owner(node) => Some(node),
        Route::Here => None,
    }
}

/// Re-sends the report to `owner`, whose answer is the client's.
async fn forward_to(
    state: &AppState,
    owner: &NodeLease,
    uri: &Uri,
    headers: &HeaderMap,
    extensions: &Extensions,
    raw: Body,
) -> Result<Response, ApiError> {
    let incoming = forward::Incoming {
        method: Method::POST,
        uri,
        headers,
        extensions,
        body: raw.0,
    };
    forward::request(state, owner, incoming).await
}

fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    site: &str,
) -> Result<std::sync::Arc<SiteRuntime>, ApiError> {
    let site = state
        .sites
        .get(site)
        .ok_or_else(|| ApiError::Forbidden(format!("unknown site key {site:?}")))?;
    let token = header_str(headers, header::AUTHORIZATION)
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if !site.record.secret.matches(token) {
        return Err(ApiError::Unauthorized);
    }
    Ok(site)
}

async fn forward(
    state: &AppState,
    site: std::sync::Arc<SiteRuntime>,
    visitor: &str,
    session: Option<&str>,
    event: Value,
) -> Result<Response, ApiError> {
    // Without a session id the event joins the visitor's current visit, if any; with none, it
    // reaches their profile alone.
    let from = Sender {
        site,
        claim: Claim::Backend { visitor },
        session,
        user_agent: "",
        hints: &crate::edge::ClientHints::default(),
        context: &ClientContext::default(),
    };
    let submitted = intake::submit(state, from, vec![event])
        .await
        .map_err(|e| ApiError::from_intake(e, state.limits.retry_after))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({"accepted": submitted.reply.accepted, "duplicates": submitted.reply.duplicates}),
        ),
    )
        .into_response())
}

/// A conversation's start or end, as one node tells the visitor's owner
/// (`POST /v1/internal/conversation`).
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct ConversationNews {
    /// The site's id (not its public key).
    pub site: String,
    /// The visitor.
    pub visitor: String,
    /// The conversation.
    pub conversation: String,
    /// Whether it began (or ended).
    pub running: bool,
}

/// The path of [`conversation_news`].
pub const CONVERSATION_NEWS: &str = "/v1/internal/conversation";

/// A site by its id (not its public key), as the nodes name it to each other.
pub fn site_by_id(state: &AppState, id: &str) -> Result<std::sync::Arc<SiteRuntime>, ApiError> {
    beckon_engine::SiteId::parse(id)
        .ok()
        .and_then(|id| state.sites.get_id(&id))
        .ok_or_else(|| ApiError::NotFound(format!("unknown site {id:?}")))
}

/// `POST /v1/internal/conversation`: one of the nodes' own routes (answered only to the
/// cluster's secret, `placement::nodes_only`), always served here.
pub async fn conversation_news(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let news: ConversationNews = body.json("body")?;
    let site = site_by_id(&state, &news.site)?;
    crate::chat::tell_here(
        &state,
        site,
        &news.visitor,
        &news.conversation,
        news.running,
    )
    .await
    .map_err(|e| ApiError::from_intake(e, state.limits.retry_after))?;
    Ok(StatusCode::ACCEPTED.into_response())
}
