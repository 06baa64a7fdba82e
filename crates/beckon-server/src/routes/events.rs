//! `POST /v1/events?site=KEY`: a batch of a visitor's events, answered only once stored.
//!
//! The site key is in the URL so that a CORS preflight, which carries no body, is answered for
//! that site's origins alone ([`cors`]); the body's `site` may be left out, and must match
//! when present.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Uri, header, request};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::AppState;
use crate::body::Body;
use crate::error::ApiError;
use crate::forward;
use crate::intake::{self, Claim, Sender};
use crate::sites::{SiteRuntime, Sites};
use crate::wire::{Accepted, Batch};

/// How long a browser may cache a granted preflight.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The site a request speaks for, from the URL.
#[derive(Debug, Default, Deserialize)]
pub struct Target {
    /// The public site key.
    pub site: Option<String>,
}

/// Accepts JSON sent as `application/json` or as `text/plain` (what `sendBeacon` sends without
/// a CORS preflight).
pub async fn post(
    State(state): State<AppState>,
    Query(target): Query<Target>,
    uri: Uri,
    extensions: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let batch: Batch = body.json("batch")?;
    let site = site(&state, &target, &batch, &headers)?;
    if !state.placement.forwarded(&headers)
        && let Some(owner) = intake::owner_elsewhere(
            &state,
            &site,
            batch.visitor.as_deref(),
            batch.token.as_deref(),
        )
    {
        let incoming = forward::Incoming {
            method: Method::POST,
            uri: &uri,
            headers: &headers,
            extensions: &extensions,
            body: body.0,
        };
        return forward::request(&state, &owner, incoming).await;
    }
    let submitted = intake::submit(
        &state,
        Sender {
            site,
            claim: Claim::Browser {
                visitor: batch.visitor.as_deref(),
                token: batch.token.as_deref(),
            },
            session: Some(&batch.session),
            user_agent: header_str(&headers, header::USER_AGENT).unwrap_or(""),
            hints: &crate::edge::ClientHints::from_headers(&headers),
            context: &batch.context,
        },
        batch.events,
    )
    .await
    .map_err(|e| ApiError::from_intake(e, state.limits.retry_after))?;
    let body = Accepted {
        accepted: submitted.reply.accepted,
        duplicates: submitted.reply.duplicates,
        interventions: submitted.reply.interventions,
        identity: submitted.identity,
    };
    Ok((axum::http::StatusCode::ACCEPTED, Json(body)).into_response())
}

/// The CORS layer: grants an origin only the site named in `/v1/events?site=KEY` (or
/// `/v1/chat?site=KEY`) allows, for
/// the preflight and the request itself (whose refusals are then readable by the page too).
/// Nothing else is granted to a page of another origin: the widget's script is loaded by a
/// `<script>` tag, and the WebSocket checks its origin itself.
pub fn cors(sites: Sites) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(
            move |origin: &HeaderValue, parts: &request::Parts| {
                let path = parts.uri.path();
                (matches!(
                    path,
                    "/v1/events" | "/v1/chat" | "/v1/chat/config" | "/v1/chat/files"
                ) || path.starts_with("/v1/chat/files/"))
                    && origin.to_str().is_ok_and(|origin| {
                        site_in_url(&sites, &parts.uri)
                            .is_some_and(|site| site.allows_origin(Some(origin)))
                    })
            },
        ))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        // A page may read when to come back after a 429 or a 503.
        .expose_headers([HeaderName::from_static("retry-after")])
        .max_age(PREFLIGHT_MAX_AGE)
}

/// The site the batch is for, checked: named in the URL (or, from a widget that predates the
/// URL's key, in the body alone), the same in both when both name it, known, allowing the
/// request's origin, and within its rate.
fn site(
    state: &AppState,
    target: &Target,
    batch: &Batch,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<SiteRuntime>, ApiError> {
    let key = match (target.site.as_deref(), batch.site.as_deref()) {
        (Some(url), Some(body)) if url != body => {
            return Err(ApiError::BadRequest(format!(
                "the URL names site {url:?} but the body names site {body:?}"
            )));
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => {
            return Err(ApiError::BadRequest(
                "no site key: send the batch to /v1/events?site=KEY".to_owned(),
            ));
        }
    };
    checked_site(state, key, headers)
}

/// For a `GET`: a site by its key, known and within its rate, and allowing the request's
/// origin when the request names one. A browser names none for a same-origin `GET` or an
/// `<img>`, and names it for every cross-origin `fetch`; a script outside a browser can claim
/// any origin anyway, so a `GET` is authenticated by what it presents (a visitor's token), not
/// by its origin.
pub fn checked_site_for_get(
    state: &AppState,
    key: &str,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<SiteRuntime>, ApiError> {
    if headers.contains_key(header::ORIGIN) {
        return checked_site(state, key, headers);
    }
    let site = state
        .sites
        .get(key)
        .ok_or_else(|| ApiError::Forbidden(format!("unknown site key {key:?}")))?;
    check_rate(state, &site, headers)?;
    Ok(site)
}

/// A site by its key, checked: known, allowing the request's origin (which is recorded for the
/// install check), and within its rate.
pub fn checked_site(
    state: &AppState,
    key: &str,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<SiteRuntime>, ApiError> {
    let site = state
        .sites
        .get(key)
        .ok_or_else(|| ApiError::Forbidden(format!("unknown site key {key:?}")))?;
    let origin = header_str(headers, header::ORIGIN);
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
    check_rate(state, &site, headers)?;
    Ok(site)
}

/// Takes a request from the site's allowance, unless another node forwarded it: the node it
/// reached first took it already.
fn check_rate(state: &AppState, site: &SiteRuntime, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.placement.forwarded(headers) {
        return Ok(());
    }
    state.throttle.check_site(&site.record.id)
}

fn site_in_url(sites: &Sites, uri: &axum::http::Uri) -> Option<std::sync::Arc<SiteRuntime>> {
    let Query(target) = Query::<Target>::try_from_uri(uri).ok()?;
    sites.get(&target.site?)
}

/// A header as text, if present and valid.
pub fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
