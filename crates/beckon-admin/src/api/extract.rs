//! Extractors whose refusals are the API's JSON errors, not axum's plain text.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::AdminError;

/// A JSON body.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AdminError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(r) if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AdminError::TooLarge)
            }
            Err(r) => Err(AdminError::BadRequest(r.body_text())),
        }
    }
}

/// A file sent whole as the body (its route lifts the body limit to the chat's file limit).
pub struct FileBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for FileBytes {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AdminError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) if b.len() <= beckon_agent::files::MAX_FILE_BYTES => Ok(FileBytes(b)),
            Ok(_) => Err(AdminError::TooLarge),
            Err(r) if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AdminError::TooLarge)
            }
            Err(r) => Err(AdminError::BadRequest(r.body_text())),
        }
    }
}

/// Query parameters.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AdminError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(r) => Err(AdminError::BadRequest(r.body_text())),
        }
    }
}

/// Path segments.
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AdminError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Segments(v)),
            Err(r) => Err(AdminError::BadRequest(r.body_text())),
        }
    }
}
