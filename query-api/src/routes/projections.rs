//! `/projections`: the read side's health as an operator needs it on the
//! console: each projection and process manager, whether it runs, how far
//! behind the log it is (events and seconds), and where and why it
//! stopped, so a list that is silently stale shows as such.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mileage_read_model::bookkeeping::{self, Lag};
use mileage_service::ApiError;
use mileage_service::auth::Caller;
use serde::Serialize;
use utoipa::ToSchema;

use super::db_error;
use crate::state::QueryState;

/// The read side's health.
pub(super) fn router() -> Router<QueryState> {
    Router::new().route("/projections", get(projections))
}

/// Every projection and process manager.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Projections {
    items: Vec<Projection>,
    /// The lag, in seconds, beyond which operators are alerted
    /// (`mileage:projector_lag_threshold_seconds` in
    /// `deploy/observability/rules.yml`); the console shows its banner past
    /// it too.
    #[schema(example = 120)]
    lag_alert_seconds: u64,
}

/// The lag beyond which operators are alerted: the same number as the
/// Prometheus rules' threshold (a test keeps them equal).
pub(crate) const LAG_ALERT_SECONDS: u64 = 120;

/// One projection or process manager.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Projection {
    #[schema(example = "managerpage")]
    name: String,
    /// `running`, `starting` or `stopped` (at an event it cannot handle).
    #[schema(example = "running")]
    state: String,
    /// Events of the log it has still to handle, as the projector last
    /// measured (every second); 0 when caught up.
    lag_events: u64,
    /// How long the oldest of them has waited, in seconds.
    lag_seconds: f64,
    /// The last event it handled (`commit-prepare`); `null` before the first.
    #[schema(value_type = Option<crate::docs::PositionText>, example = "1204-1204")]
    checkpoint: Option<String>,
    /// Where and why it stopped; `null` unless stopped.
    stopped: Option<Stopped>,
}

/// Where a consumer stopped, and why.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Stopped {
    /// The position of the event it could not handle.
    position: String,
    /// That event's type.
    event_type: String,
    /// Why (the projector's words; never the event's data).
    reason: String,
}

/// The read side's health (managers): every projection and process
/// manager, its lag, and where and why it stopped.
#[utoipa::path(
    get, path = "/projections", tag = "operations",
    responses(
        (status = 200, description = "Every projection and process manager", body = Projections),
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn projections(
    State(state): State<QueryState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let client = state.pool.get().await.map_err(db_error)?;
    let head = bookkeeping::head(&**client).await.map_err(db_error)?;
    let statuses = bookkeeping::statuses(&**client).await.map_err(db_error)?;
    let now = chrono::Utc::now();
    let items = statuses
        .into_iter()
        .filter(|s| !s.is_scratch())
        .map(|s| {
            let lag = Lag::of(head, s.checkpoint, s.backlog.as_ref(), now);
            Projection {
                name: s.name,
                state: s.state,
                lag_events: lag.events,
                lag_seconds: lag.seconds,
                checkpoint: s.checkpoint.map(|p| p.to_string()),
                stopped: s.error.map(|(position, event_type, reason)| Stopped {
                    position,
                    event_type,
                    reason,
                }),
            }
        })
        .collect();
    Ok(axum::Json(Projections {
        items,
        lag_alert_seconds: LAG_ALERT_SECONDS,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_consoles_lag_threshold_is_the_alerts() {
        let rules = include_str!("../../../deploy/observability/rules.yml");
        let threshold = format!(
            "record: mileage:projector_lag_threshold_seconds\n        expr: vector({})",
            super::LAG_ALERT_SECONDS
        );
        assert!(
            rules.contains(&threshold),
            "rules.yml must say {threshold:?}"
        );
    }
}
