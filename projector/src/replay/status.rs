//! `status`: every projection and process manager: state, checkpoint, lag.

use mileage_store::EventStore;
use serde::Serialize;

use super::Context;
use mileage_read_model::bookkeeping::{Lag, statuses};

/// One consumer's state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    /// Its name.
    pub name: String,
    /// `running`, `stopped`, `starting`, or `rebuilding` while a rebuild's
    /// shadow exists.
    pub state: String,
    /// Its checkpoint.
    pub checkpoint: Option<String>,
    /// Events between the checkpoint and the log's head.
    pub lag_events: u64,
    /// Seconds since the last event it handled was recorded, when behind.
    pub lag_seconds: f64,
    /// Events handled so far.
    pub events_handled: i64,
    /// Where and why it stopped.
    pub error: Option<String>,
    /// The rebuild's progress, when one exists.
    pub rebuild_checkpoint: Option<String>,
}

/// Every consumer, by name.
pub async fn status(ctx: &Context) -> anyhow::Result<Vec<Consumer>> {
    let client = ctx.read_client().await?;
    let head = ctx.store.head_position().await?;
    let all = statuses(&client).await?;
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for s in &all {
        if s.name.ends_with("__rebuild") || s.name.ends_with("__verify") {
            continue;
        }
        let lag = Lag::of(head, s.checkpoint, s.last_event_at, now);
        let rebuild = all
            .iter()
            .find(|r| r.name == format!("{}__rebuild", s.name));
        out.push(Consumer {
            name: s.name.clone(),
            state: if rebuild.is_some() {
                "rebuilding".into()
            } else {
                s.state.clone()
            },
            checkpoint: s.checkpoint.map(|p| p.to_string()),
            lag_events: lag.events,
            lag_seconds: lag.seconds,
            events_handled: s.events_handled,
            error: s.error.as_ref().map(|(position, event_type, reason)| {
                format!("{event_type} at {position}: {reason}")
            }),
            rebuild_checkpoint: rebuild.and_then(|r| r.checkpoint).map(|p| p.to_string()),
        });
    }
    Ok(out)
}
