//! A request's body, read whole under the server's bounds, with every way of failing answered
//! as JSON: over the size limit (413, naming it), not sent in time (408), unreadable (400).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::wire::MAX_BODY_BYTES;

/// The body of a request, at most [`MAX_BODY_BYTES`].
#[derive(Debug)]
pub struct Body(pub Bytes);

impl Body {
    /// The body as JSON; a malformed one is refused with serde's words, after `what`
    /// ("batch", "body").
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, ApiError> {
        serde_json::from_slice(&self.0)
            .map_err(|e| ApiError::BadRequest(format!("malformed {what}: {e}")))
    }
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // The router's body limit refuses an oversized body while it is read; the length is
        // checked again so the bound holds even where that limit is lifted.
        let bytes = Bytes::from_request(req, state).await.map_err(refusal)?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        Ok(Body(bytes))
    }
}

fn refusal(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    if timed_out(&e) {
        return ApiError::Timeout("the body was not sent in time; resend it".to_owned());
    }
    ApiError::BadRequest(format!("unreadable body: {}", e.body_text()))
}

fn too_large() -> ApiError {
    ApiError::TooLarge(format!("the body is larger than {MAX_BODY_BYTES} bytes"))
}

/// Whether reading failed because the body timeout (tower-http's `RequestBodyTimeoutLayer`)
/// ran out, somewhere down the chain of causes.
fn timed_out(e: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = err.source();
    }
    false
}
