//! `/health`, `/ready`, `/metrics` and `/status` of a projector process.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mileage_store::EventStore;
use serde_json::{Value, json};

use crate::bookkeeping;

/// What the endpoints read.
#[derive(Clone)]
pub struct Probe {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The read database.
    pub read_config: tokio_postgres::Config,
}

/// The routes.
pub fn router(probe: Probe) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .route(
            "/metrics",
            get(|| async { mileage_command_api::telemetry::prometheus().render() }),
        )
        .with_state(probe)
}

async fn ready(State(probe): State<Probe>) -> (StatusCode, Json<Value>) {
    let store = probe.store.head_position().await.is_ok();
    let read = connect(&probe.read_config).await.is_ok();
    let status = if store && read {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "eventStore": store, "readDatabase": read })),
    )
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

async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}
