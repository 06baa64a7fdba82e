//! `POST /v1/events`: a batch of a visitor's events, answered only once stored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::intake::{self, Claim, Sender};
use crate::wire::{Accepted, Batch, MAX_BODY_BYTES};

/// Accepts JSON sent as `application/json` or as `text/plain` (what `sendBeacon` sends without
/// a CORS preflight). A refusal is readable by a page of an allowed origin too, so the widget
/// (and the site's developer in the console) sees what was wrong.
/// The query of `POST /v1/events`.
#[derive(Debug, serde::Deserialize)]
pub struct Params {
    /// The site key (the body may repeat it).
    site: Option<String>,
}

pub async fn post(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let origin = header_str(&headers, header::ORIGIN);
    let mut response = match accept(&state, params.site.as_deref(), &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    if state.sites.any_allows(origin) {
        allow_origin(&mut response, origin);
    }
    response
}

async fn accept(
    state: &AppState,
    site: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // The router's body limit refuses an oversized body while it is read, before this handler
    // runs, and axum answers that with plain text; taking the rejection here gives the client
    // the same JSON error, naming the limit, as every other refusal.
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(format!("the body is larger than {MAX_BODY_BYTES} bytes"))
        }
        _ => ApiError::BadRequest(format!("unreadable body: {}", e.body_text())),
    })?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let batch: Batch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed batch: {e}")))?;
    let origin = header_str(headers, header::ORIGIN);
    let key = match (site, batch.site.as_deref()) {
        (Some(url), Some(body)) if url != body => {
            return Err(ApiError::BadRequest(format!(
                "the site key in the URL ({url:?}) and in the body ({body:?}) differ"
            )));
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => {
            return Err(ApiError::BadRequest(
                "the site key is missing: POST /v1/events?site=SITE_KEY".to_owned(),
            ));
        }
    };
    let site = state
        .sites
        .get(key)
        .ok_or_else(|| ApiError::Forbidden(format!("unknown site key {key:?}")))?;
    if !site.allows_origin(origin) {
        return Err(ApiError::Forbidden(format!(
            "origin {:?} is not allowed for this site",
            origin.unwrap_or("(none)")
        )));
    }
    let submitted = intake::submit(
        state,
        Sender {
            site: site.clone(),
            claim: Claim::Browser {
                visitor: batch.visitor.as_deref(),
                token: batch.token.as_deref(),
            },
            session: Some(&batch.session),
            user_agent: header_str(headers, header::USER_AGENT).unwrap_or(""),
            context: &batch.context,
        },
        batch.events,
    )
    .await?;
    let body = Accepted {
        accepted: submitted.reply.accepted,
        duplicates: submitted.reply.duplicates,
        interventions: submitted.reply.interventions,
        identity: submitted.identity,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `OPTIONS /v1/events`: the CORS preflight for sites that post JSON from another origin.
pub async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let origin = header_str(&headers, header::ORIGIN);
    // The site is in the body, which a preflight does not carry; any known site's origin may
    // ask, and the real request is checked against its own site.
    let mut response = StatusCode::NO_CONTENT.into_response();
    if origin.is_some() && state.sites.any_allows(origin) {
        allow_origin(&mut response, origin);
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}

fn allow_origin(response: &mut Response, origin: Option<&str>) {
    if let Some(value) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
}

/// A header as text, if present and valid.
pub fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
