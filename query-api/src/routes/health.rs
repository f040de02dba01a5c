//! `/health`, `/ready` and `/metrics` (with each projection's lag).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mileage_projector::bookkeeping;
use serde_json::{Value, json};

use crate::state::QueryState;

/// The routes.
pub fn router() -> Router<QueryState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the read database answers.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "The read database is unreachable"),
))]
pub async fn ready(State(state): State<QueryState>) -> (StatusCode, Json<Value>) {
    let reachable = match state.pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    if reachable {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": "read database unreachable" })),
        )
    }
}

/// Prometheus text; measures each projection's lag first: events between
/// its checkpoint and the log's head, and seconds since the last event it
/// applied was recorded (0 when caught up).
async fn metrics(State(state): State<QueryState>) -> String {
    if let (Ok(client), Ok(Some(head))) =
        (state.pool.get().await, state.store.head_position().await)
        && let Ok(statuses) = bookkeeping::statuses(&**client).await
    {
        let now = chrono::Utc::now();
        for status in statuses {
            let behind = status
                .checkpoint
                .map_or(head.prepare, |p| head.prepare.saturating_sub(p.prepare));
            let seconds = match (behind, status.last_event_at) {
                (0, _) | (_, None) => 0.0,
                (_, Some(at)) => (now - at).to_std().map_or(0.0, |d| d.as_secs_f64()),
            };
            let name = status.name;
            metrics::gauge!("projection_lag_events", "projection" => name.clone())
                .set(f64::from(u32::try_from(behind).unwrap_or(u32::MAX)));
            metrics::gauge!("projection_lag_seconds", "projection" => name.clone()).set(seconds);
            metrics::gauge!("projection_stopped", "projection" => name)
                .set(if status.state == "stopped" { 1.0 } else { 0.0 });
        }
    }
    mileage_command_api::telemetry::prometheus().render()
}
