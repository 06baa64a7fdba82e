//! Guards every admin route shares, before any handler reads its body:
//!
//! - a path naming a site (`/api/v1/sites/{site}/…`, `/dash/sites/{site}/…`) is refused with
//!   "not found" unless the actor may see that site — so a malformed body sent to another
//!   site's route learns nothing, not even that the body was malformed;
//! - an API answer without a body (axum's own 405, for one) becomes the API's JSON error.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AdminState;
use crate::auth::Actor;

/// The site key a path names, if it names one.
fn site_in(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/api/v1/sites/")
        .or_else(|| path.strip_prefix("/dash/sites/"))?;
    let key = rest.split('/').next()?;
    (!key.is_empty()).then_some(key)
}

/// Refuses a path naming a site the actor may not see. Requests by nobody pass on, to be
/// answered by the handler (401, or the sign-in page).
pub async fn sites(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let Some(key) = site_in(request.uri().path()).map(str::to_owned) else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    match Actor::from_request_parts(&mut parts, &state).await {
        Ok(actor) => {
            if let Err(e) = actor.site(&key) {
                return if parts.uri.path().starts_with("/dash/") {
                    crate::pages::PageError(e).into_response()
                } else {
                    e.into_response()
                };
            }
            // The handler's `Actor` is this one: the session and the memberships are read once.
            parts.extensions.insert(actor);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(_) => next.run(Request::from_parts(parts, body)).await,
    }
}

/// Gives a bodiless API error the API's JSON shape.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    if !api || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this address does not take that method".to_owned(),
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such address in the admin API".to_owned()),
        other => (
            "error",
            other
                .canonical_reason()
                .unwrap_or("the request failed")
                .to_lowercase(),
        ),
    };
    let mut answer = (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::site_in;

    #[test]
    fn the_site_of_a_path() {
        assert_eq!(site_in("/api/v1/sites/shop/rules/x"), Some("shop"));
        assert_eq!(site_in("/dash/sites/shop"), Some("shop"));
        assert_eq!(site_in("/api/v1/sites"), None);
        assert_eq!(site_in("/api/v1/sites/"), None);
        assert_eq!(site_in("/dash/tokens"), None);
    }
}
