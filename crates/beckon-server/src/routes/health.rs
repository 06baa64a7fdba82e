//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

/// `GET /healthz`: the process is up and can still take events once ready: every engine shard
/// and the writer run. A writer that stopped on a failed sync, or a shard that died, never
/// comes back by itself, so this fails (503) and a supervisor restarts the process; what only
/// waits on something outside (the store, a lease, Redis) fails `/readyz` alone.
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.liveness.check() {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "failed", "error": reason })),
        ),
    }
}

/// `GET /readyz`: events can be accepted: the store answers, every engine shard and the
/// writer still run, and, in a cluster, this node's lease holds. Otherwise 503, with what is
/// wrong.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match ready(&state).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(reason) => {
            tracing::warn!(reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "error": reason })),
            )
        }
    }
}

async fn ready(state: &AppState) -> Result<(), &'static str> {
    state.liveness.check()?;
    if !state.placement.holds_lease() {
        return Err("this node's lease in the cluster may have lapsed");
    }
    if state.bus.as_ref().is_some_and(|bus| !bus.healthy()) {
        return Err("Redis, the bus to the other nodes, does not answer");
    }
    // The store's cheapest read stands in for a ping.
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "the store does not answer");
        "the store does not answer"
    })
}
