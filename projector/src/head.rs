//! Publishes the log's head to the read side (`projector.log_head`) every
//! second, so the query API and other readers of the read database can tell
//! each projection's lag without a connection to the event store.

use std::sync::Arc;
use std::time::Duration;

use mileage_read_model::bookkeeping;
use mileage_store::EventStore;
use tokio::sync::watch;

/// How often the head is read and recorded.
const EVERY: Duration = Duration::from_secs(1);

/// Records the head every second until `stop` turns true; reconnects to the
/// read database when it goes away.
pub(crate) async fn publish(
    store: Arc<dyn EventStore>,
    read_config: tokio_postgres::Config,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Ok((client, connection)) = read_config.connect(tokio_postgres::NoTls).await {
            let connection = tokio::spawn(connection);
            loop {
                if let Ok(Some(head)) = store.head_position().await
                    && let Err(e) = bookkeeping::record_head(&client, head).await
                {
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
