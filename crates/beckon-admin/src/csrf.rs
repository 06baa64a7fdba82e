//! Cross-site request forgery, refused twice over for every state-changing request that rides
//! on the login cookie (a request with an API token carries no ambient credential):
//!
//! 1. the browser's own word: `Sec-Fetch-Site` must be `same-origin`, and `Origin` must be this
//!    server's host; a request with neither is refused (every browser sends `Origin` on a
//!    POST, and scripts use tokens);
//! 2. a per-session token, sent as the `X-CSRF-Token` header (htmx, fetch) or the `csrf` field
//!    of a form, compared in constant time with the one the session holds.
//!
//! The login cookie is also `SameSite=Lax`, so a cross-site subrequest (a form posted from
//! another site, a fetch) does not carry it at all.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::error::AdminError;

/// The session key of the token.
pub const KEY: &str = "csrf";
/// The header scripts send it in.
pub const HEADER: &str = "x-csrf-token";
/// The form field forms send it in.
pub const FIELD: &str = "csrf";
/// The largest form body read to find the field.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The session's token, made on first use.
pub async fn token(session: &Session) -> String {
    if let Ok(Some(t)) = session.get::<String>(KEY).await {
        return t;
    }
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    // A session that cannot store the token only makes the next form fail the check.
    let _ = session.insert(KEY, &t).await;
    t
}

/// Whether the request came from a page of this server, as the browser tells it.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = fetch_site
        && site != "same-origin"
    {
        return Err(format!(
            "refused a {site} request: changes are made from this server's own pages"
        ));
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
            if authority.eq_ignore_ascii_case(host) {
                Ok(())
            } else {
                Err(format!("refused a request from {origin}: not this server"))
            }
        }
        (None, _) if fetch_site.is_some() => Ok(()),
        _ => Err(
            "refused a change without an Origin header; scripts should use an API token".to_owned(),
        ),
    }
}

fn matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The middleware. `exempt` paths (the sign-in form) pass the origin check only: before
/// signing in there is no session to hold a token.
pub async fn guard(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || crate::auth::bearer_of(request.headers()).is_some()
    {
        return next.run(request).await;
    }
    if let Err(why) = same_origin(request.headers()) {
        return AdminError::CrossSite(why).into_response();
    }
    let path = request.uri().path();
    if path == crate::pages::LOGIN_PATH || path == crate::api::LOGIN_PATH {
        return next.run(request).await;
    }
    let Some(session) = request.extensions().get::<Session>().cloned() else {
        return AdminError::Unauthenticated.into_response();
    };
    let Ok(Some(expected)) = session.get::<String>(KEY).await else {
        return AdminError::Unauthenticated.into_response();
    };
    if let Some(given) = request.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        return if matches(&expected, given) {
            next.run(request).await
        } else {
            AdminError::CrossSite("the form's security token is stale; reload the page".into())
                .into_response()
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return AdminError::CrossSite(format!("send the security token as {HEADER}"))
            .into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
        return AdminError::invalid(format!("a form may be at most {MAX_FORM_BYTES} bytes"))
            .into_response();
    };
    let given = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == FIELD)
        .map(|(_, v)| v.into_owned());
    match given {
        Some(given) if matches(&expected, &given) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => AdminError::CrossSite("the form's security token is stale; reload the page".into())
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_this_servers_pages_pass_the_origin_check() {
        let ok = headers(&[
            ("host", "beckon.test:8080"),
            ("origin", "http://beckon.test:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(same_origin(&ok).is_ok());
        let other = headers(&[("host", "beckon.test"), ("origin", "https://evil.test")]);
        assert!(same_origin(&other).unwrap_err().contains("evil.test"));
        let sibling = headers(&[
            ("host", "beckon.test"),
            ("origin", "https://beckon.test"),
            ("sec-fetch-site", "same-site"),
        ]);
        assert!(same_origin(&sibling).unwrap_err().contains("same-site"));
        let bare = headers(&[("host", "beckon.test")]);
        assert!(same_origin(&bare).unwrap_err().contains("API token"));
    }
}
