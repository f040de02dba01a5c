//! Liveness, readiness and metrics, for the gateway, Kubernetes and Prometheus.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

/// `/health` (the process answers), `/ready` (the event store answers) and
/// `/metrics` (Prometheus text format).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}

async fn metrics() -> String {
    crate::telemetry::prometheus().render()
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the event store answers.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "The event store is unreachable"),
))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.head_position().await {
        Ok(_) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: event store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": "event store unreachable" })),
            )
        }
    }
}
