//! What `/ready` and `/metrics` check here: the read database answers, and
//! each projection's lag (between its checkpoint and the log's head as the
//! projector last recorded it; seconds since the last event it applied)
//! measured on every scrape, from the read database alone.

use async_trait::async_trait;
use mileage_read_model::bookkeeping::{self, Lag};
use mileage_service::ops::Probe;

use crate::state::QueryState;

/// The query API's dependencies.
pub(super) struct ReadSide(pub QueryState);

#[async_trait]
impl Probe for ReadSide {
    async fn dependencies(&self) -> Vec<(&'static str, bool)> {
        let reachable = match self.0.pool.get().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        };
        vec![("readDatabase", reachable)]
    }

    async fn current_gauges(&self) -> String {
        let state = &self.0;
        let Ok(client) = state.pool.get().await else {
            return String::new();
        };
        let (Ok(recorded), Ok(statuses)) = (
            bookkeeping::head(&**client).await,
            bookkeeping::statuses(&**client).await,
        ) else {
            return String::new();
        };
        // The projector records the head and each backlog every second.
        let now = chrono::Utc::now();
        mileage_service::telemetry::render_current(|| {
            for status in statuses.into_iter().filter(|s| !s.is_scratch()) {
                let lag = Lag::of(recorded, status.checkpoint, status.backlog.as_ref(), now);
                let name = status.name;
                metrics::gauge!("projection_lag_events", "projection" => name.clone())
                    .set(f64::from(u32::try_from(lag.events).unwrap_or(u32::MAX)));
                metrics::gauge!("projection_lag_seconds", "projection" => name.clone())
                    .set(lag.seconds);
                metrics::gauge!("projection_stopped", "projection" => name)
                    .set(if status.state == "stopped" { 1.0 } else { 0.0 });
            }
        })
    }
}
