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
        Ok(Body(read(req, state, MAX_BODY_BYTES).await?))
    }
}

/// A file sent in a chat, at most [`beckon_agent::files::MAX_FILE_BYTES`] (its route lifts the
/// router's body limit to that).
#[derive(Debug)]
pub struct FileBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for FileBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(FileBody(
            read(req, state, beckon_agent::files::MAX_FILE_BYTES).await?,
        ))
    }
}

async fn read<S: Send + Sync>(req: Request, state: &S, limit: usize) -> Result<Bytes, ApiError> {
    // The router's body limit refuses an oversized body while it is read; the length is
    // checked again so the bound holds even where that limit is lifted.
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|e| refusal(e, limit))?;
    if bytes.len() > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn refusal(e: BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(limit);
    }
    if timed_out(&e) {
        return ApiError::Timeout("the body was not sent in time; resend it".to_owned());
    }
    ApiError::BadRequest(format!("unreadable body: {}", e.body_text()))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::TooLarge(format!("the body is larger than {limit} bytes"))
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
