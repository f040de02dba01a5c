//! Publishes the log's head to the read side (`projector.log_head`) every
//! second, and measures each consumer's backlog in events and seconds
//! (`EventStore::backlog`, so never a store's position units and never its
//! system events), so the query API, `replay status` and the metrics tell
//! every projection's lag without a connection to the event store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mileage_read_model::bookkeeping::{self, Lag, Measured};
use mileage_store::{EventStore, Position};
use tokio::sync::watch;

/// How often the head is read and recorded.
const EVERY: Duration = Duration::from_secs(1);

/// Events counted at most per measurement: a consumer further behind shows
/// this many, marked as more.
pub const BACKLOG_LIMIT: u64 = 10_000;

/// Each live consumer's lag as last measured, by name: what `/metrics`
/// shows (a consumer whose row is gone, or a replay's scratch copy, is not
/// in it, so no gauge of it stays behind).
pub(crate) type Lags = Vec<(String, Lag)>;

/// The lags as Prometheus gauges, `projector_lag_events` and
/// `projector_lag_seconds` by consumer.
pub(crate) fn render(lags: &Lags) -> String {
    mileage_service::telemetry::render_current(|| {
        for (name, lag) in lags {
            metrics::gauge!("projector_lag_events", "consumer" => name.clone())
                .set(crate::runner::as_gauge(lag.events));
            metrics::gauge!("projector_lag_seconds", "consumer" => name.clone()).set(lag.seconds);
        }
    })
}

/// Records the head every second until `stop` turns true, and each round's
/// lags in `lags`; reconnects to the read database when it goes away.
pub(crate) async fn publish(
    store: Arc<dyn EventStore>,
    read_config: tokio_postgres::Config,
    lags: watch::Sender<Lags>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Ok((client, connection)) = read_config.connect(tokio_postgres::NoTls).await {
            let connection = tokio::spawn(connection);
            loop {
                if let Err(e) = measure(&*store, &client, &lags).await {
                    tracing::debug!(error = %e, "cannot record the log's head; reconnecting");
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(EVERY) => {}
                    _ = stop.wait_for(|stop| *stop) => {
                        connection.abort();
                        return;
                    }
                }
            }
            connection.abort();
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// One round: the head, then every consumer's backlog (consumers at the
/// head cost nothing; consumers at the same checkpoint share one count),
/// and the live ones' lags published. An event store error skips the
/// round; a read database error ends it.
async fn measure(
    store: &dyn EventStore,
    client: &tokio_postgres::Client,
    lags: &watch::Sender<Lags>,
) -> Result<(), tokio_postgres::Error> {
    let Ok(head) = store.head_position().await else {
        return Ok(());
    };
    if let Some(head) = head {
        bookkeeping::record_head(client, head).await?;
    }
    let now = chrono::Utc::now();
    let mut counted: HashMap<Option<Position>, Measured> = HashMap::new();
    let mut live = Lags::new();
    for status in bookkeeping::statuses(client).await? {
        let measured = if let Some(measured) = counted.get(&status.checkpoint) {
            *measured
        } else {
            let at_head = head.is_none_or(|h| status.checkpoint.is_some_and(|c| c >= h));
            let backlog = if at_head {
                mileage_store::Backlog::default()
            } else {
                match store.backlog(status.checkpoint, BACKLOG_LIMIT).await {
                    Ok(backlog) => backlog,
                    Err(_) => continue,
                }
            };
            let measured = Measured {
                from: status.checkpoint,
                events: backlog.events,
                more: backlog.more,
                oldest: backlog.oldest,
            };
            counted.insert(status.checkpoint, measured);
            measured
        };
        bookkeeping::record_backlog(client, &status.name, &measured).await?;
        let lag = Lag::of(
            head.map(|h| (h, now)),
            status.checkpoint,
            Some(&measured),
            now,
        );
        if !status.is_scratch() {
            live.push((status.name, lag));
        }
    }
    lags.send_replace(live);
    Ok(())
}
