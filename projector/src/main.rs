//! `projector`: follows the global event log from the start and reports what
//! it sees. Projections and process managers build on this loop.

use futures::StreamExt;
use mileage_store::EventStore;
use mileage_store::postgres::PgEventStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not set (postgres://user@host:port/db)"))?;
    let store = PgEventStore::connect(&url).await?;
    tracing::info!("projector following the global log");
    let mut events = store.subscribe_all(None);
    loop {
        tokio::select! {
            next = events.next() => match next {
                Some(Ok(event)) => tracing::info!(
                    position = %event.position,
                    stream = %event.stream,
                    event_type = %event.event_type,
                    correlation_id = %event.metadata.correlation_id,
                    "event"
                ),
                Some(Err(e)) => tracing::warn!(error = %e, "reading the log failed; retrying"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("projector stopped");
    Ok(())
}
