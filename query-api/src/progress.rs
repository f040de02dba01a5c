//! How far each projection has got: its checkpoint, kept current from the
//! projector's commit notifications (`LISTEN`), with a periodic re-read as a
//! fallback. Requests that carry a position wait here, bounded, for their
//! own writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use mileage_read_model::bookkeeping::{self, CHANNEL};
use mileage_store::Position;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, NoTls};

/// How often the checkpoints are re-read even without notifications.
const REREAD_EVERY: Duration = Duration::from_secs(1);

/// Each projection's checkpoint, as last seen.
#[derive(Clone)]
pub struct Progress {
    seen: watch::Receiver<HashMap<String, Position>>,
}

/// What a wait found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The projection's checkpoint when the wait ended.
    pub checkpoint: Option<Position>,
    /// A position was asked for and the projection has not reached it.
    pub stale: bool,
}

impl Progress {
    /// Follows the checkpoints in the database at `config`, for as long as
    /// the process runs.
    pub fn follow(config: tokio_postgres::Config) -> Self {
        let (tx, seen) = watch::channel(HashMap::new());
        let tx = Arc::new(tx);
        tokio::spawn(async move {
            let mut delays = backoff();
            loop {
                match listen(&config, &tx).await {
                    Ok(()) => delays = backoff(),
                    Err(e) => {
                        let delay = delays.next().unwrap_or(Duration::from_secs(5));
                        tracing::warn!(error = %e, ?delay, "lost the projection notifications; reconnecting");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        });
        Self { seen }
    }

    /// The checkpoint of `projection`.
    pub fn checkpoint(&self, projection: &str) -> Option<Position> {
        self.seen.borrow().get(projection).copied()
    }

    /// Waits at most `limit` until `projection` has reached `wanted`.
    pub async fn wait(&self, projection: &str, wanted: Option<Position>, limit: Duration) -> Seen {
        let Some(wanted) = wanted else {
            return Seen {
                checkpoint: self.checkpoint(projection),
                stale: false,
            };
        };
        let mut seen = self.seen.clone();
        let reached =
            |map: &HashMap<String, Position>| map.get(projection).is_some_and(|p| *p >= wanted);
        let _ = tokio::time::timeout(limit, seen.wait_for(reached)).await;
        let checkpoint = self.checkpoint(projection);
        Seen {
            checkpoint,
            stale: checkpoint.is_none_or(|p| p < wanted),
        }
    }
}

/// One connection's life: LISTEN, read the table, then apply notifications
/// and periodic re-reads until the connection fails.
async fn listen(
    config: &tokio_postgres::Config,
    tx: &watch::Sender<HashMap<String, Position>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(note)) => {
                    if notes_tx.send(note.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let mut reread = tokio::time::interval(REREAD_EVERY);
    loop {
        tokio::select! {
            note = notes.recv() => {
                let Some(note) = note else { break };
                if let Some((name, position)) = note.split_once(' ')
                    && let Ok(position) = position.parse::<Position>()
                {
                    tx.send_if_modified(|map| advance(map, name, position));
                }
            }
            _ = reread.tick() => {
                for status in bookkeeping::statuses(&client).await? {
                    if let Some(position) = status.checkpoint {
                        tx.send_if_modified(|map| advance(map, &status.name, position));
                    }
                }
            }
        }
    }
    match driver.await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Moves a checkpoint forward only (a re-read may race a notification).
fn advance(map: &mut HashMap<String, Position>, name: &str, position: Position) -> bool {
    match map.get(name) {
        Some(current) if *current >= position => false,
        _ => {
            map.insert(name.to_owned(), position);
            true
        }
    }
}

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
