//! Every refusal is JSON, `{"error": "…"}` (`docs/wire-protocol.md`, "Refusals and limits").
//! Handlers answer with [`ApiError`], which is JSON already; what refuses a request before a
//! handler runs (axum's rejections, an unknown path or method, a timeout layer) answers in
//! plain text or with no body at all, and [`as_json`] rewrites those, keeping the status and
//! the headers. A 429 or 503 without `Retry-After` gets the configured one.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{ApiError, retry_after_value};

/// The longest plain-text refusal kept as the message; a longer body is replaced by the
/// status's own words.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Rewrites an error response that is not JSON into `{"error": "…"}` with the same status;
/// `retry_after` is what a 429 or 503 without `Retry-After` is given.
pub async fn as_json(State(retry_after): State<Duration>, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let mut response = if is_json(&response) {
        response
    } else {
        let (mut parts, body) = response.into_parts();
        // A client error's text (axum's rejections: "Failed to deserialize the query string…")
        // tells the client what to fix; a server error's could tell internals, so it is
        // replaced by the status's own words.
        let text = if status.is_client_error() {
            axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
                .await
                .ok()
                .and_then(|b| String::from_utf8(b.to_vec()).ok())
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        } else {
            None
        };
        let message = text.unwrap_or_else(|| words(status).to_owned());
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Response::from_parts(parts, Body::from(json!({ "error": message }).to_string()))
    };
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) && !response.headers().contains_key(header::RETRY_AFTER)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after_value(retry_after));
    }
    response
}

/// The router's fallback: a JSON 404 naming the path.
pub async fn not_found(uri: Uri) -> Response {
    ApiError::NotFound(format!("no such path: {}", uri.path())).into_response()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// What a refusal with no words of its own says.
fn words(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "malformed request",
        StatusCode::NOT_FOUND => "not found",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed here",
        StatusCode::REQUEST_TIMEOUT => "the request took too long; resend it",
        StatusCode::PAYLOAD_TOO_LARGE => "the body is too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported content type",
        StatusCode::TOO_MANY_REQUESTS => "too many requests",
        StatusCode::SERVICE_UNAVAILABLE => "temporarily unavailable, retry later",
        s if s.is_server_error() => "internal error",
        _ => "refused",
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::to_bytes;
    use axum::http::Request;
    use axum::routing::post;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    /// Sends `request` through a router whose one route takes JSON (so that axum refuses on
    /// its own), under the refusal layer; the status, `Retry-After` and the JSON body.
    async fn check(request: Request<Body>) -> (StatusCode, Option<String>, Value) {
        let router = Router::new()
            .route(
                "/json",
                post(|_: axum::Json<Value>| async { "ok" })
                    .get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            )
            .fallback(not_found)
            .layer(axum::middleware::map_response_with_state(
                Duration::from_secs(7),
                as_json,
            ));
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = to_bytes(response.into_body(), 4096).await.unwrap();
        (status, retry, serde_json::from_slice(&body).expect("JSON"))
    }

    fn request(method: &str, path: &str, content_type: Option<&str>, body: &str) -> Request<Body> {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(t) = content_type {
            r = r.header(header::CONTENT_TYPE, t);
        }
        r.body(Body::from(body.to_owned())).unwrap()
    }

    #[tokio::test]
    async fn axum_rejections_and_bare_statuses_become_json_with_their_status() {
        let (status, _, body) = check(request("POST", "/json", None, "{}")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            body["error"].as_str().unwrap().contains("Content-Type"),
            "{body}"
        );
        let (status, _, body) =
            check(request("POST", "/json", Some("application/json"), "{")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("parse"), "{body}");
        let (status, _, body) = check(request("DELETE", "/json", None, "")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"], "method not allowed here");
        let (status, _, body) = check(request("GET", "/elsewhere", None, "")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no such path: /elsewhere");
        // A bare 503 gets words and the configured Retry-After.
        let (status, retry, body) = check(request("GET", "/json", None, "")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("7"));
        assert_eq!(body["error"], "temporarily unavailable, retry later");
    }
}
