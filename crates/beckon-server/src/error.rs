//! The one error type of the HTTP layer: a status and a message safe to show a client.
//! Internal details are logged once, here, and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
    /// Too large.
    #[error("{0}")]
    TooLarge(String),
    /// Storage or a shard is unavailable; the client should retry.
    #[error("temporarily unavailable, retry later")]
    Unavailable(String),
}

impl From<crate::intake::IntakeError> for ApiError {
    fn from(e: crate::intake::IntakeError) -> Self {
        use crate::intake::IntakeError;
        use crate::shard::BatchError;
        match e {
            IntakeError::BadRequest(m) => ApiError::BadRequest(m),
            IntakeError::TooLarge(m) => ApiError::TooLarge(m),
            IntakeError::Batch(BatchError::UnknownSite) => {
                ApiError::Forbidden("unknown site key".to_owned())
            }
            IntakeError::Batch(other) => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(detail) => {
                tracing::error!(%detail, "request failed: unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}
