//! The routes of a site's people — the console, its event stream, the desk and conversations
//! API — are served on the node of the site's desk (`Placement::desk`): a request that reaches
//! another node is sent on whole, and its answer streamed back as it comes (the console's
//! event stream included). The owner checks the login and the CSRF token, with the client's
//! own `Host`, as if the request had reached it first.

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use beckon_engine::SiteId;
use beckon_store::cluster::NodeLease;
use std::net::SocketAddr;
use std::time::Duration;

use crate::AppState;
use crate::error::ApiError;
use crate::placement::{FORWARDED, Route};

/// The largest body sent on (a person's file, and a little more).
const MAX_BODY: usize = beckon_agent::files::MAX_FILE_BYTES + 64 * 1024;
/// How long a forwarded desk request may last, its answer's stream included: a console's
/// event stream that outlives it ends, and the console reconnects.
const STREAM_FOR: Duration = Duration::from_secs(3600);

/// The site a path of the site's people's desk names, if it is one.
pub fn desk_site(path: &str) -> Option<SiteId> {
    let (site, rest) = path
        .strip_prefix("/api/v1/sites/")
        .or_else(|| path.strip_prefix("/dash/sites/"))?
        .split_once('/')?;
    let area = rest.split('/').next()?;
    let api = path.starts_with("/api/");
    let desk = area == "conversations" || (api && area == "desk");
    desk.then(|| SiteId::parse(site).ok()).flatten()
}

/// A layer's function: a desk route of a site whose desk is on another node goes there.
pub async fn forward(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let node = match desk_site(req.uri().path()).map(|site| state.placement.desk(&site)) {
        Some(Route::Owner(node)) if !state.placement.forwarded(req.headers()) => node,
        _ => return next.run(req).await,
    };
    match send(&state, &node, req).await {
        Ok(answer) => answer,
        Err(e) => e.into_response(),
    }
}

/// Headers that are the connection's own, or that only a node may set.
fn kept_back(name: &HeaderName) -> bool {
    matches!(
        *name,
        header::CONNECTION
            | header::TRANSFER_ENCODING
            | header::CONTENT_LENGTH
            | header::TE
            | header::TRAILER
            | header::UPGRADE
            | header::PROXY_AUTHORIZATION
    ) || name.as_str() == "keep-alive"
        || name.as_str() == FORWARDED
        || name.as_str() == crate::throttle::FORWARDED_CLIENT
}

async fn send(state: &AppState, node: &NodeLease, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::TooLarge(format!(
            "a request to the desk holds at most {MAX_BODY} bytes"
        ))
    })?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = state
        .forwarder
        .request(parts.method, format!("http://{}{path}", node.address))
        .timeout(STREAM_FOR)
        .header(FORWARDED, state.placement.secret())
        .body(body);
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Some(ip) = crate::throttle::client_ip_rule(&state.limits)(&parts.headers, peer) {
        out = out.header(crate::throttle::FORWARDED_CLIENT, ip.to_string());
    }
    for (name, value) in parts.headers.iter().filter(|(n, _)| !kept_back(n)) {
        out = out.header(name, value);
    }
    let answer = out.send().await.map_err(|e| {
        tracing::warn!(node = %node.name, error = %e, "the desk's node did not answer");
        crate::metrics::forwarded("unreachable");
        ApiError::Unavailable(format!(
            "the node that runs this site's desk did not answer ({e}); try again shortly"
        ))
    })?;
    crate::metrics::forwarded("desk");
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !kept_back(name) {
            response = response.header(name, value);
        }
    }
    Ok(response
        .body(Body::from_stream(answer.bytes_stream()))
        .expect("a status and headers from a valid answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_desk_routes_are_the_people_s_conversations_and_desk() {
        let site = |p: &str| desk_site(p).map(|s| s.as_str().to_owned());
        assert_eq!(
            site("/api/v1/sites/shop/conversations").as_deref(),
            Some("shop")
        );
        assert_eq!(
            site("/api/v1/sites/shop/conversations/c_1/messages").as_deref(),
            Some("shop")
        );
        assert_eq!(
            site("/api/v1/sites/shop/desk/availability").as_deref(),
            Some("shop")
        );
        assert_eq!(
            site("/dash/sites/shop/conversations/events").as_deref(),
            Some("shop")
        );
        assert_eq!(site("/dash/sites/shop/rules"), None);
        assert_eq!(site("/dash/sites/shop/desk"), None, "no such page");
        assert_eq!(site("/api/v1/sites/shop/rules"), None);
        assert_eq!(site("/api/v1/sites/shop"), None);
        assert_eq!(site("/api/v1/sites/sh%20op/conversations"), None);
        assert_eq!(site("/v1/chat"), None);
    }
}
