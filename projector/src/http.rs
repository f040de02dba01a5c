//! `/health`, `/ready`, `/metrics` (the shared ops routes), `/status` and
//! `/dormancy` of a projector process.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mileage_store::EventStore;
use serde_json::{Value, json};

use mileage_read_model::bookkeeping;

/// What the endpoints read.
#[derive(Clone)]
pub(crate) struct Probe {
    pub store: Arc<dyn EventStore>,
    /// The read database.
    pub read_config: tokio_postgres::Config,
    /// The live consumers' lags, as last measured.
    pub lags: tokio::sync::watch::Receiver<crate::head::Lags>,
    /// The dormancy policy this process applies.
    pub dormancy: crate::config::DormancySettings,
}

/// The projector's own port: the operations routes every service has
/// (`/health`, `/ready` with the event store and read database, `/metrics`)
/// and `/status`, each consumer's state.
pub(crate) fn router(probe: Probe) -> Router {
    Router::new()
        .merge(mileage_service::ops::router(Arc::new(probe.clone()), None))
        .route("/status", get(status))
        .route("/dormancy", get(dormancy))
        .with_state(probe)
}

#[async_trait]
impl mileage_service::ops::Probe for Probe {
    async fn dependencies(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("eventStore", self.store.head_position().await.is_ok()),
            ("readDatabase", connect(&self.read_config).await.is_ok()),
        ]
    }

    async fn current_gauges(&self) -> String {
        crate::head::render(&self.lags.borrow())
    }
}

/// Every consumer's checkpoint and state, from the status table.
async fn status(State(probe): State<Probe>) -> (StatusCode, Json<Value>) {
    let result = async {
        let client = connect(&probe.read_config).await?;
        bookkeeping::statuses(&client).await
    }
    .await;
    match result {
        Ok(statuses) => (
            StatusCode::OK,
            Json(Value::Array(
                statuses
                    .into_iter()
                    .map(|s| {
                        json!({
                            "name": s.name,
                            "state": s.state,
                            "checkpoint": s.checkpoint.map(|p| p.to_string()),
                            "eventsHandled": s.events_handled,
                            "lastEventAt": s.last_event_at,
                            "error": s.error.map(|(position, event_type, reason)| json!({
                                "position": position, "eventType": event_type, "reason": reason,
                            })),
                        })
                    })
                    .collect(),
            )),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": format!("read database: {e}") })),
        ),
    }
}

/// The dormancy policy in force, this process's part in applying it, and
/// what the scheduler's passes (on whichever replica) have done.
async fn dormancy(State(probe): State<Probe>) -> (StatusCode, Json<Value>) {
    let settings = &probe.dormancy;
    let policy = json!({
        "afterDays": settings.policy.after_days(),
        "graceDays": settings.policy.grace_days(),
        "ratePerSecond": settings.rate.get(),
        "scanEverySeconds": settings.every.as_secs(),
        "appliedHere": settings.applies,
        "clockOffsetSeconds": settings.clock.offset().num_seconds(),
        "now": settings.clock.now(),
    });
    let result = async {
        let client = connect(&probe.read_config).await?;
        let row = mileage_read_model::dormancy::scheduler(&client).await?;
        let pending = mileage_read_model::dormancy::pending_count(&client).await?;
        Ok::<_, tokio_postgres::Error>((row, pending))
    }
    .await;
    match result {
        Ok((row, pending)) => (
            StatusCode::OK,
            Json(json!({
                "policy": policy,
                "scheduler": {
                    "passes": row.passes,
                    "registered": row.registered,
                    "marked": row.marked,
                    "lifted": row.lifted,
                    "pending": pending,
                    "scannedThrough": row.cursor.map(|(at, id)| json!({ "lastActiveAt": at, "memberId": id })),
                    "lastPassStarted": row.last_pass_started,
                    "lastPassFinished": row.last_pass_finished,
                    "lastPassNow": row.last_pass_now,
                },
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "policy": policy, "error": format!("read database: {e}") })),
        ),
    }
}

async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}
