//! What `/ready` and `/metrics` check here: the read database answers, and
//! each projection's lag (events between its checkpoint and the log's head,
//! seconds since the last event it applied) measured on every scrape.

use async_trait::async_trait;
use mileage_projector::bookkeeping;
use mileage_service::ops::Probe;

use crate::state::QueryState;

/// The query API's dependencies.
pub struct ReadSide(pub QueryState);

#[async_trait]
impl Probe for ReadSide {
    async fn dependencies(&self) -> Vec<(&'static str, bool)> {
        let reachable = match self.0.pool.get().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        };
        vec![("readDatabase", reachable)]
    }

    async fn before_scrape(&self) {
        let state = &self.0;
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
                metrics::gauge!("projection_lag_seconds", "projection" => name.clone())
                    .set(seconds);
                metrics::gauge!("projection_stopped", "projection" => name)
                    .set(if status.state == "stopped" { 1.0 } else { 0.0 });
            }
        }
    }
}
