//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers and the shards and the writer run, so events can be
/// accepted.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let problem = if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "not ready: the store does not answer");
        Some("the store does not answer")
    } else if !state.shards.alive() {
        Some("an engine shard has stopped")
    } else if !state.writer.is_alive() {
        Some("the writer has stopped")
    } else {
        None
    };
    match problem {
        None => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": why })),
        ),
    }
}
