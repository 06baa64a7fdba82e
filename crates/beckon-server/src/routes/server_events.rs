//! The merchant's backend: `POST /v1/conversions` and `POST /v1/track`, authenticated with the
//! site's secret key. A payment that failed or a trial that started becomes a signal rules can
//! use, for a visitor the widget already knows.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::events::header_str;
use crate::AppState;
use crate::body::Body;
use crate::error::ApiError;
use crate::intake::{self, Claim, Sender};
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
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: Conversion = body.json("body")?;
    let site = authorize(&state, &headers, &body.site)?;
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
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: Track = body.json("body")?;
    let site = authorize(&state, &headers, &body.site)?;
    let event = json!({"id": format!("server:{}", body.id), "type": "track", "name": body.name, "props": body.props});
    forward(&state, site, &body.visitor, body.session.as_deref(), event).await
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
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
    ))
}
