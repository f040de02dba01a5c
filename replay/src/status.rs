//! `status`: every projection and process manager: state, checkpoint, lag.

use mileage_store::Backlog;
use serde::Serialize;

use super::Context;
use mileage_read_model::bookkeeping::statuses;

/// One consumer's state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    pub name: String,
    /// `running`, `stopped`, `starting`, or `rebuilding` while a rebuild's
    /// shadow exists.
    pub state: String,
    pub checkpoint: Option<String>,
    /// Events of the log after the checkpoint (counted now, up to 10,000;
    /// system events never count).
    pub lag_events: u64,
    /// Whether there are more than `lag_events`.
    pub lag_more: bool,
    /// How long the oldest unhandled event has waited; 0 when caught up.
    pub lag_seconds: f64,
    /// Whether the checkpoint belongs to the configured store (`false`: the
    /// consumer refuses to run until rebuilt or adopted).
    pub same_store: bool,
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
    let store_id = ctx.store.identity().await?;
    let all = statuses(&client).await?;
    let mut out = Vec::new();
    for s in &all {
        if s.is_scratch() {
            continue;
        }
        let same_store = s.store_id.as_ref().is_none_or(|id| *id == store_id);
        let backlog = if same_store {
            ctx.store
                .backlog(s.checkpoint, mileage_projector::BACKLOG_LIMIT)
                .await?
        } else {
            Backlog::default()
        };
        let lag_seconds = backlog.oldest.map_or(0.0, |oldest| {
            (chrono::Utc::now() - oldest)
                .to_std()
                .map_or(0.0, |d| d.as_secs_f64())
        });
        let rebuild = all
            .iter()
            .find(|r| r.name == crate::rebuild::shadow_of(&s.name));
        out.push(Consumer {
            name: s.name.clone(),
            state: if rebuild.is_some() {
                "rebuilding".into()
            } else {
                s.state.clone()
            },
            checkpoint: s.checkpoint.map(|p| p.to_string()),
            lag_events: backlog.events,
            lag_more: backlog.more,
            lag_seconds,
            same_store,
            events_handled: s.events_handled,
            error: s.error.as_ref().map(|(position, event_type, reason)| {
                format!("{event_type} at {position}: {reason}")
            }),
            rebuild_checkpoint: rebuild.and_then(|r| r.checkpoint).map(|p| p.to_string()),
        });
    }
    Ok(out)
}
