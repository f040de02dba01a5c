//! Wake-ups across processes. Appends ask for a NOTIFY; one task per store
//! sends them one at a time and at most every `NOTIFY_INTERVAL`, so a burst of appends costs one NOTIFY (NOTIFY
//! takes a cluster-wide lock at commit, which would serialise writers). A
//! listener task holds a LISTEN connection and bumps the wake counter; when
//! that connection is down, subscribers fall back to polling.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::Inner;

/// The NOTIFY channel name.
const CHANNEL: &str = "mileage_events";

/// At most one NOTIFY per this interval: appends in between share it. Bounds
/// the cost at low concurrency (one extra transaction per append otherwise)
/// at the price of this much wake-up latency in other processes.
const NOTIFY_INTERVAL: Duration = Duration::from_millis(5);

/// Sends one NOTIFY per batch of announced appends until the store is dropped.
pub(super) fn spawn_notifier(store: Weak<Inner>, signal: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            signal.notified().await;
            let Some(inner) = store.upgrade() else { return };
            let sent = match inner.pool.get().await {
                Ok(client) => client
                    .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                    .await
                    .map(drop),
                Err(e) => {
                    tracing::debug!(error = %e, "no connection for NOTIFY; subscribers will poll");
                    Ok(())
                }
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "NOTIFY failed; subscribers will poll");
            }
            drop(inner);
            tokio::time::sleep(NOTIFY_INTERVAL).await;
        }
    });
}

/// Keeps a LISTEN connection open (reconnecting with backoff) and bumps
/// `wake` on every notification, until the store is dropped.
pub(super) fn spawn_listener(
    config: tokio_postgres::Config,
    wake: Arc<watch::Sender<u64>>,
    store: Weak<Inner>,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while store.strong_count() > 0 {
            match config.connect(NoTls).await {
                Ok((client, mut connection)) => {
                    let bump = Arc::clone(&wake);
                    let mut driver = tokio::spawn(async move {
                        let mut messages =
                            futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(Ok(message)) = messages.next().await {
                            if let AsyncMessage::Notification(_) = message {
                                bump.send_modify(|n| *n = n.wrapping_add(1));
                            }
                        }
                    });
                    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        tracing::warn!(error = %e, "LISTEN failed; subscribers will poll");
                        driver.abort();
                    } else {
                        backoff = Duration::from_millis(100);
                        // Anything appended while we were not listening is now readable.
                        wake.send_modify(|n| *n = n.wrapping_add(1));
                        loop {
                            tokio::select! {
                                _ = &mut driver => break,
                                () = tokio::time::sleep(Duration::from_secs(1)) => {
                                    if store.strong_count() == 0 {
                                        driver.abort();
                                        return;
                                    }
                                }
                            }
                        }
                        tracing::warn!("LISTEN connection lost; reconnecting");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot open LISTEN connection; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}
