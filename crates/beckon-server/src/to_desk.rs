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

/// The largest body sent on for a person's file (the file, and a little more).
const MAX_FILE_BODY: usize = beckon_agent::files::MAX_FILE_BYTES + 64 * 1024;
/// The largest body sent on for anything else (the admin side's own bound).
const MAX_BODY: usize = 512 * 1024;
/// How long a forwarded answer may last (a console's event stream): one that outlives it
/// ends, and the console reconnects.
const STREAM_FOR: Duration = Duration::from_secs(3600);
/// The longest a forwarded answer's body may go without a byte (the console's stream keeps
/// alive every 15 s): a desk node that went mute ends it, and the console reconnects.
const STREAM_SILENCE: Duration = Duration::from_secs(45);

/// The site a path of the site's people's desk names, if it is one.
pub fn desk_site(path: &str) -> Option<SiteId> {
    let (site, rest) = path
        .strip_prefix("/api/v1/sites/")
        .or_else(|| path.strip_prefix("/dash/sites/"))?
        .split_once('/')?;
    let area = rest.split('/').next()?;
    let desk = if path.starts_with("/api/") {
        area == "conversations" || area == "desk"
    } else {
        // The console, its stream, and the person's own desk profile.
        area == "conversations" || rest == "chat/profile"
    };
    desk.then(|| SiteId::parse(site).ok()).flatten()
}

/// A layer's function: a desk route of a site whose desk is on another node goes there. One
/// that another node sent here for a desk that is no longer here (the view changed while it
/// travelled) is refused, to be sent again: it never starts a second desk.
pub async fn forward(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(site) = desk_site(req.uri().path()) else {
        return next.run(req).await;
    };
    let node = match state.placement.desk(&site) {
        Route::Here => return next.run(req).await,
        Route::Owner(_) if state.placement.forwarded(req.headers()) => {
            return moved().into_response();
        }
        Route::Owner(node) => node,
    };
    // Nothing of a request without a credential is read or sent on: the desk would refuse it.
    let credentials = req.headers().contains_key(header::COOKIE)
        || req.headers().contains_key(header::AUTHORIZATION);
    if !credentials {
        return next.run(req).await;
    }
    match send(&state, &node, req).await {
        Ok(answer) => answer,
        Err(e) => e.into_response(),
    }
}

/// The answer to a request for a desk that moved away from this node.
pub fn moved() -> ApiError {
    ApiError::Unavailable("this site's desk has moved to another node; try again".to_owned())
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
    let limit = if parts.uri.path().contains("/files") {
        MAX_FILE_BODY
    } else {
        MAX_BODY
    };
    let body = tokio::time::timeout(state.limits.body_read_timeout, to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::Timeout("the request's body came too slowly".to_owned()))?
        .map_err(|_| {
            ApiError::TooLarge(format!("a request to the desk holds at most {limit} bytes"))
        })?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    // The answer's headers must come within the forwarder's bound; its body (a console's
    // stream, a file) may take longer, as long as it keeps coming.
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
    let answer = match tokio::time::timeout(crate::forward::FORWARD_TIMEOUT, out.send()).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(unanswered(node, &e.to_string())),
        Err(_) => return Err(unanswered(node, "no answer in time")),
    };
    crate::metrics::forwarded("desk");
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !kept_back(name) {
            response = response.header(name, value);
        }
    }
    let body = Body::from_stream(until_silent(answer.bytes_stream(), STREAM_SILENCE));
    Ok(response
        .body(body)
        .expect("a status and headers from a valid answer"))
}

fn unanswered(node: &NodeLease, e: &str) -> ApiError {
    tracing::warn!(node = %node.name, error = %e, "the desk's node did not answer");
    crate::metrics::forwarded("unreachable");
    ApiError::Unavailable(format!(
        "the node that runs this site's desk did not answer ({e}); try again shortly"
    ))
}

/// `stream`, ended once nothing has come from it for `silence`.
fn until_silent<S, T, E>(
    stream: S,
    silence: Duration,
) -> impl futures::Stream<Item = Result<T, E>> + Send
where
    S: futures::Stream<Item = Result<T, E>> + Unpin + Send,
    T: Send,
    E: Send,
{
    futures::stream::unfold(stream, move |mut s| async move {
        use futures::StreamExt;
        match tokio::time::timeout(silence, s.next()).await {
            Ok(Some(item)) => Some((item, s)),
            Ok(None) | Err(_) => None,
        }
    })
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
        assert_eq!(
            site("/dash/sites/shop/chat/profile").as_deref(),
            Some("shop")
        );
        assert_eq!(
            site("/dash/sites/shop/chat"),
            None,
            "the site's chat settings"
        );
        assert_eq!(site("/dash/sites/shop/rules"), None);
        assert_eq!(site("/dash/sites/shop/desk"), None, "no such page");
        assert_eq!(site("/api/v1/sites/shop/rules"), None);
        assert_eq!(site("/api/v1/sites/shop"), None);
        assert_eq!(site("/api/v1/sites/sh%20op/conversations"), None);
        assert_eq!(site("/v1/chat"), None);
    }
}
