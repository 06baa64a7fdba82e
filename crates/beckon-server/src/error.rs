//! The one error type of the HTTP layer: a status and a message safe to show a client.
//! Internal details are logged once, here, and never sent.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc::error::TrySendError;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message says what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong credentials.
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// Not allowed from here (origin, key).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The client took too long to send its request; the message says which part.
    #[error("{0}")]
    Timeout(String),
    /// Too large.
    #[error("{0}")]
    TooLarge(String),
    /// Over a rate limit (`limit` says whose: "from this address", "for this site"); the
    /// client may come back after `retry_after`.
    #[error("too many requests {limit}; retry in {}s", seconds(*.retry_after))]
    Throttled {
        /// Whose limit was reached.
        limit: &'static str,
        /// When to come back.
        retry_after: Duration,
    },
    /// The server sheds work it cannot queue (a shard's queue is full); nothing was stored,
    /// and a resend after `retry_after` is welcome.
    #[error("overloaded; nothing was stored, resend in {}s", seconds(*.retry_after))]
    Overloaded {
        /// When to come back.
        retry_after: Duration,
    },
    /// Storage or a shard is unavailable; the client should retry.
    #[error("temporarily unavailable, retry later")]
    Unavailable(String),
}

impl ApiError {
    /// The refusal for a message a shard could not take at once: a full queue sheds the
    /// request (503, come back after `retry_after`), a stopped shard is unavailable.
    pub fn shed<T>(e: TrySendError<T>, retry_after: Duration) -> ApiError {
        match e {
            TrySendError::Full(_) => ApiError::Overloaded { retry_after },
            TrySendError::Closed(_) => {
                ApiError::Unavailable("the engine shard has stopped".to_owned())
            }
        }
    }
}

impl ApiError {
    /// The refusal for an intake error; a shed batch is told to come back after
    /// `retry_after`.
    pub fn from_intake(e: crate::intake::IntakeError, retry_after: Duration) -> ApiError {
        use crate::intake::IntakeError;
        use crate::shard::BatchError;
        match e {
            IntakeError::BadRequest(m) => ApiError::BadRequest(m),
            IntakeError::TooLarge(m) => ApiError::TooLarge(m),
            IntakeError::Batch(BatchError::UnknownSite) => {
                ApiError::Forbidden("unknown site key".to_owned())
            }
            IntakeError::Batch(BatchError::Overloaded) => ApiError::Overloaded { retry_after },
            IntakeError::Batch(other) => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, retry_after) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, None),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
            ApiError::Throttled { retry_after, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, Some(*retry_after))
            }
            ApiError::Overloaded { retry_after } => {
                tracing::warn!("a request was shed: a shard's queue is full");
                (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after))
            }
            ApiError::Unavailable(detail) => {
                tracing::error!(%detail, "request failed: unavailable");
                // The refusal layer adds the configured Retry-After to a 503 without one.
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if let Some(after) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_value(after));
        }
        response
    }
}

/// A `Retry-After` value: whole seconds, rounded up, at least one (0 would invite an
/// immediate resend).
pub fn retry_after_value(after: Duration) -> HeaderValue {
    HeaderValue::from(seconds(after))
}

/// Whole seconds, rounded up, at least one.
fn seconds(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}
