//! What can go wrong in an admin request, and how the API says it: always JSON,
//! `{"error": {"code", "message", "field"?}}`, with the status the code implies.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beckon_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An admin request's failure.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No valid session or token.
    #[error("sign in first, or send an API token as `Authorization: Bearer …`")]
    Unauthenticated,
    /// A sign-in with a wrong address or password (never told apart).
    #[error("the address or password is wrong")]
    BadCredentials,
    /// Signed in, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, or one the caller may not see (the two are not told apart).
    #[error("{0}")]
    NotFound(String),
    /// The input is wrong; `field` names where, when one field is at fault.
    #[error("{message}")]
    Invalid {
        /// The field at fault (`rules[0].when.all[1].value`), if one is.
        field: Option<String>,
        /// What is wrong, in words.
        message: String,
    },
    /// Rules the engine refused, with every problem it named.
    #[error("{}", .0.first().map_or_else(String::new, |e| format!("{}: {}", e.field, e.message)))]
    Rules(Vec<FieldProblem>),
    /// The request is malformed (a body that is not JSON of the right shape, a bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the admin side accepts.
    #[error("the body is larger than {} bytes", crate::MAX_BODY_BYTES)]
    TooLarge,
    /// The change collides with the current state (taken address, stale version).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts; try again later.
    #[error("too many attempts; try again in a minute")]
    Throttled,
    /// The request failed a cross-site check.
    #[error("{0}")]
    CrossSite(String),
    /// Storage failed; details are logged, never sent.
    #[error("storage failed; the error is logged")]
    Store(String),
}

impl AdminError {
    /// Invalid input with no single field to blame.
    pub fn invalid(message: impl Into<String>) -> AdminError {
        AdminError::Invalid {
            field: None,
            message: message.into(),
        }
    }

    /// Invalid input in `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> AdminError {
        AdminError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthenticated | AdminError::BadCredentials => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden(_) | AdminError::CrossSite(_) => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid { .. } | AdminError::Rules(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            AdminError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Unauthenticated => "unauthenticated",
            AdminError::BadCredentials => "bad_credentials",
            AdminError::Forbidden(_) => "forbidden",
            AdminError::NotFound(_) => "not_found",
            AdminError::Invalid { .. } | AdminError::Rules(_) => "invalid",
            AdminError::Conflict(_) => "conflict",
            AdminError::BadRequest(_) => "bad_request",
            AdminError::TooLarge => "too_large",
            AdminError::Throttled => "throttled",
            AdminError::CrossSite(_) => "cross_site",
            AdminError::Store(_) => "internal",
        }
    }

    /// The field at fault, if one is.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            AdminError::Invalid { field, .. } => field.as_deref(),
            AdminError::Rules(problems) => problems.first().map(|p| p.field.as_str()),
            _ => None,
        }
    }

    /// The body the API sends.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: self.field_name().map(str::to_owned),
                problems: match self {
                    AdminError::Rules(p) => p.clone(),
                    _ => Vec::new(),
                },
            },
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        match e {
            StoreError::Conflict(m) => AdminError::Conflict(m),
            StoreError::NotFound(m) => AdminError::NotFound(m),
            other => {
                tracing::error!(error = %other, "admin storage call failed");
                AdminError::Store(other.to_string())
            }
        }
    }
}

/// The API's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `unauthenticated`, `forbidden`, `not_found`, `invalid`, `conflict`, `throttled`,
    /// `cross_site` or `internal`.
    pub code: String,
    /// What went wrong, in words.
    pub message: String,
    /// The field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem, when the engine refused rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<FieldProblem>,
}

/// One problem the engine found in a rule.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct FieldProblem {
    /// The rule's id.
    pub rule: String,
    /// The field (`when.all[1].value`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl AdminError {
    /// The engine's refusal of rules, field by field.
    pub fn from_load(e: beckon_engine::rules::LoadError) -> AdminError {
        use beckon_engine::rules::LoadError;
        match e {
            LoadError::Invalid(rules) => AdminError::Rules(
                rules
                    .into_iter()
                    .flat_map(|r| {
                        let rule = r.rule;
                        r.errors.into_iter().map(move |f| FieldProblem {
                            rule: rule.clone(),
                            field: f.field,
                            message: f.reason,
                        })
                    })
                    .collect(),
            ),
            other => AdminError::invalid(other.to_string()),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if matches!(self, AdminError::Throttled) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
        }
        response
    }
}

/// Result of an admin call.
pub type AdminResult<T> = Result<T, AdminError>;
