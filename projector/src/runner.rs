//! Drives one [`Consumer`]: waits for its advisory lock (one active replica,
//! the others standing by), follows the log from its checkpoint in batches,
//! commits each batch with the checkpoint, and reconnects with backoff when
//! the event store or the read database goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use mileage_store::{EventStore, Position, RecordedEvent};
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};
use tracing::Instrument;

use crate::consumer::{Consumer, HandleError};
use mileage_read_model::bookkeeping::{self, Claim};

/// Traces a batch's span links to besides its own.
const MAX_LINKS: usize = 32;
/// How often a standby replica asks for the lock again.
const LOCK_RETRY: Duration = Duration::from_millis(500);

/// Why [`Runner::run`] returned.
#[derive(Debug)]
pub enum Exit {
    /// Shutdown was asked for.
    Shutdown,
    /// A poison event stopped the consumer (already logged and recorded).
    Stopped(HandleError),
    /// The consumer reached the position it was asked to stop at.
    Reached,
    /// A failing runner gave up instead of reconnecting (see
    /// [`Runner::fail_fast`]); the reason.
    Failed(String),
    /// The consumer's checkpoint belongs to another event store: reading on
    /// from it would skip or repeat events, so it does not start (recorded
    /// as stopped, with the reason).
    Refused(String),
}

/// How a session (one connection holding the lock) ended without an error.
enum SessionEnd {
    Shutdown,
    Stopped(HandleError),
    /// Another replica moved the checkpoint: stand by again.
    LostLease,
    /// The `until` position was reached.
    Reached,
    /// The checkpoint is another store's.
    Refused(String),
}

/// What every consumer of a process shares.
#[derive(Clone)]
pub struct Runner {
    store: Arc<dyn EventStore>,
    read_config: tokio_postgres::Config,
    batch_size: usize,
    shutdown: watch::Receiver<bool>,
    until: Option<Position>,
    fail_fast: bool,
}

impl Runner {
    /// A runner reading from `store`, writing to the database `read_url`.
    pub fn new(
        store: Arc<dyn EventStore>,
        read_url: &str,
        batch_size: usize,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let read_config = read_url
            .parse()
            .map_err(|e| anyhow::anyhow!("malformed read database URL: {e}"))?;
        Ok(Self {
            store,
            read_config,
            batch_size,
            shutdown,
            until: None,
            fail_fast: false,
        })
    }

    /// A runner that reports an outage ([`Exit::Failed`]) instead of
    /// reconnecting: for tools an operator runs and watches.
    #[must_use]
    pub fn fail_fast(mut self) -> Self {
        self.fail_fast = true;
        self
    }

    /// A runner that stops once its consumer has handled everything up to
    /// and including `position` (a rebuild up to a head, a verification).
    #[must_use]
    pub fn until(mut self, position: Position) -> Self {
        self.until = Some(position);
        self
    }

    /// Runs `consumer` until shutdown or a poison event, surviving outages.
    pub async fn run(&self, consumer: Arc<dyn Consumer>) -> Exit {
        let name = consumer.name().to_owned();
        series_at_zero(&name);
        let mut delays = backoff();
        loop {
            if *self.shutdown.borrow() {
                return Exit::Shutdown;
            }
            let started = Instant::now();
            let outcome = self.session(&*consumer).await;
            metrics::gauge!("projector_active", "consumer" => name.clone()).set(0.0);
            match outcome {
                Ok(SessionEnd::Shutdown) => return Exit::Shutdown,
                Ok(SessionEnd::Stopped(error)) => return Exit::Stopped(error),
                Ok(SessionEnd::Reached) => return Exit::Reached,
                Ok(SessionEnd::Refused(reason)) => return Exit::Refused(reason),
                Ok(SessionEnd::LostLease) => {
                    tracing::warn!(consumer = %name, "another replica moved the checkpoint; standing by");
                }
                Err(reason) if self.fail_fast => return Exit::Failed(reason),
                Err(reason) => {
                    if started.elapsed() > Duration::from_secs(30) {
                        delays = backoff();
                    }
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    metrics::counter!("projector_restarts_total", "consumer" => name.clone())
                        .increment(1);
                    tracing::warn!(consumer = %name, %reason, ?delay, "consumer interrupted; reconnecting");
                    let mut shutdown = self.shutdown.clone();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return Exit::Shutdown,
                    }
                }
            }
        }
    }

    async fn session(&self, consumer: &dyn Consumer) -> Result<SessionEnd, String> {
        let name = consumer.name();
        let (mut client, connection) = self.open(name).await?;
        let mut shutdown = self.shutdown.clone();
        if !self.stand_by(&client, &connection, name).await? {
            return Ok(SessionEnd::Shutdown);
        }
        tracing::info!(consumer = name, "active");
        metrics::gauge!("projector_active", "consumer" => name.to_owned()).set(1.0);
        metrics::gauge!("projector_stopped", "consumer" => name.to_owned()).set(0.0);
        consumer.prepare(&client).await.map_err(|e| e.to_string())?;
        if let Some(reason) = self.refusal(&client, name).await? {
            return Ok(SessionEnd::Refused(reason));
        }
        let mut checkpoint = bookkeeping::checkpoint(&client, name)
            .await
            .map_err(database_error)?;
        bookkeeping::mark_running(&client, name)
            .await
            .map_err(database_error)?;
        if let (Some(until), Some(at)) = (self.until, checkpoint)
            && at >= until
        {
            return Ok(SessionEnd::Reached);
        }
        let mut events = self
            .store
            .subscribe_all(checkpoint)
            .ready_chunks(self.batch_size);
        loop {
            let chunk = tokio::select! {
                next = events.next() => next,
                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
            };
            let Some(chunk) = chunk else {
                return Err("the subscription ended".into());
            };
            let Taken {
                batch,
                reached,
                failure,
            } = self.take(chunk);
            if !batch.is_empty() {
                match self
                    .commit(&mut client, consumer, checkpoint, &batch)
                    .await?
                {
                    Committed::Yes(position) => checkpoint = Some(position),
                    Committed::LostLease => return Ok(SessionEnd::LostLease),
                    Committed::Stopped(error) => return Ok(SessionEnd::Stopped(error)),
                }
            }
            if reached {
                return Ok(SessionEnd::Reached);
            }
            if let Some(e) = failure {
                return Err(format!("event store: {e}"));
            }
        }
    }

    /// Opens `name`'s session on the read database, named after it (what
    /// `pg_stat_activity` and the lock holders show).
    async fn open(
        &self,
        name: &str,
    ) -> Result<(Client, AbortOnDrop<Result<(), tokio_postgres::Error>>), String> {
        let mut config = self.read_config.clone();
        config.application_name(format!("mileage-projector:{name}"));
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| format!("read database: {e}"))?;
        let connection = AbortOnDrop(tokio::spawn(connection));
        // A batch commits with its checkpoint, and the log is the record: a
        // crash that loses the last commits loses both together, and they
        // are handled again. So commits need not wait for the WAL flush.
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .map_err(database_error)?;
        Ok((client, connection))
    }

    /// Asks for `name`'s lock until this session holds it (`true`) or the
    /// runner is shut down (`false`): a standby replica waits here.
    async fn stand_by(
        &self,
        client: &Client,
        connection: &AbortOnDrop<Result<(), tokio_postgres::Error>>,
        name: &str,
    ) -> Result<bool, String> {
        let mut shutdown = self.shutdown.clone();
        while !try_lock(client, name).await.map_err(database_error)? {
            metrics::gauge!("projector_active", "consumer" => name.to_owned()).set(0.0);
            tokio::select! {
                () = tokio::time::sleep(LOCK_RETRY) => {}
                _ = shutdown.changed() => return Ok(false),
            }
            if connection.0.is_finished() {
                return Err("read database connection closed".into());
            }
        }
        Ok(true)
    }

    /// The events of `chunk` to handle now: up to the first error, and up
    /// to and including [`Runner::until`] when set.
    fn take(&self, chunk: Vec<Result<RecordedEvent, mileage_store::StoreError>>) -> Taken {
        let mut taken = Taken {
            batch: Vec::with_capacity(chunk.len()),
            reached: false,
            failure: None,
        };
        for item in chunk {
            match item {
                Ok(event) if self.until.is_some_and(|until| event.position > until) => {
                    taken.reached = true;
                    break;
                }
                Ok(event) => {
                    taken.reached = self.until == Some(event.position);
                    taken.batch.push(event);
                    if taken.reached {
                        break;
                    }
                }
                Err(e) => {
                    taken.failure = Some(e);
                    break;
                }
            }
        }
        taken
    }

    /// Why `name` must not run on the configured store (its checkpoint is
    /// another store's; recorded as stopped), or `None` when it may.
    async fn refusal(&self, client: &Client, name: &str) -> Result<Option<String>, String> {
        let store_id = self
            .store
            .identity()
            .await
            .map_err(|e| format!("event store: {e}"))?;
        let Claim::Other(owner) = bookkeeping::claim(client, name, &store_id)
            .await
            .map_err(database_error)?
        else {
            return Ok(None);
        };
        let reason = format!(
            "the checkpoint of {name} belongs to event store {owner}, not to the configured \
             {store_id}; positions of one store mean nothing in another: rebuild it \
             (`replay rebuild {name}`) or, if it handled everything the other store held, \
             move it to this store's head (`replay adopt {name}`)"
        );
        bookkeeping::mark_refused(client, name, &reason)
            .await
            .map_err(database_error)?;
        metrics::gauge!("projector_stopped", "consumer" => name.to_owned()).set(1.0);
        tracing::error!(consumer = name, %owner, configured = %store_id, "checkpoint of another event store; not starting");
        Ok(Some(reason))
    }

    /// Handles `batch` and moves the checkpoint in one transaction. At a
    /// poison event, commits the events before it, then records the stop.
    async fn commit(
        &self,
        client: &mut Client,
        consumer: &dyn Consumer,
        from: Option<Position>,
        batch: &[RecordedEvent],
    ) -> Result<Committed, String> {
        let name = consumer.name();
        let started = Instant::now();
        // The batch is a span of the first event's trace, linked to the
        // other traces it handles (at most `MAX_LINKS` of them).
        let span = tracing::info_span!("batch", consumer = name, events = batch.len());
        let mut traces = batch.iter().filter_map(|e| e.metadata.trace);
        let first = traces.next();
        mileage_service::traces::enter(&span, first);
        let mut linked = std::collections::HashSet::from([first.map(|t| t.trace_id)]);
        for other in traces {
            if linked.len() > MAX_LINKS {
                break;
            }
            if linked.insert(Some(other.trace_id)) {
                mileage_service::traces::link(&span, other);
            }
        }
        match handle_in_tx(client, consumer, from, batch)
            .instrument(span)
            .await?
        {
            Ok(committed) => {
                metrics::histogram!("projector_batch_seconds", "consumer" => name.to_owned())
                    .record(started.elapsed().as_secs_f64());
                if let Committed::Yes(position) = committed {
                    metrics::counter!("projector_events_total", "consumer" => name.to_owned())
                        .increment(batch.len() as u64);
                    metrics::gauge!("projector_checkpoint", "consumer" => name.to_owned())
                        .set(as_gauge(position.prepare));
                }
                Ok(committed)
            }
            Err(HandleError::Transient(reason)) => Err(reason),
            Err(HandleError::Poison {
                position,
                event_type,
                reason,
            }) => {
                let good = batch.iter().take_while(|e| e.position < position).count();
                let mut at = from;
                if good > 0 {
                    match handle_in_tx(client, consumer, from, &batch[..good]).await? {
                        Ok(Committed::Yes(handled)) => at = Some(handled),
                        Ok(other) => return Ok(other),
                        Err(HandleError::Transient(reason)) => return Err(reason),
                        Err(poison) => {
                            return Err(format!(
                                "the events before a poison event failed: {poison}"
                            ));
                        }
                    }
                }
                // Reported before it is recorded, so whoever sees the status
                // row also sees the metric; taken back if it is not ours.
                metrics::gauge!("projector_stopped", "consumer" => name.to_owned()).set(1.0);
                let recorded =
                    bookkeeping::mark_stopped(&*client, name, at, position, &event_type, &reason)
                        .await
                        .map_err(database_error)?;
                if !recorded {
                    metrics::gauge!("projector_stopped", "consumer" => name.to_owned()).set(0.0);
                    return Ok(Committed::LostLease);
                }
                tracing::error!(consumer = name, %position, %event_type, %reason, "cannot apply event; consumer stopped");
                Ok(Committed::Stopped(HandleError::Poison {
                    position,
                    event_type,
                    reason,
                }))
            }
        }
    }
}

/// The outcome of one batch.
enum Committed {
    Yes(Position),
    LostLease,
    Stopped(HandleError),
}

/// One transaction: the consumer's work, then the checkpoint. The outer error
/// is the connection's; the inner one the consumer's.
async fn handle_in_tx(
    client: &mut Client,
    consumer: &dyn Consumer,
    from: Option<Position>,
    batch: &[RecordedEvent],
) -> Result<Result<Committed, HandleError>, String> {
    let Some(last) = batch.last() else {
        return Err("an empty batch".into());
    };
    let tx = client.transaction().await.map_err(database_error)?;
    if let Err(e) = consumer.handle(&tx, batch).await {
        return Ok(Err(e));
    }
    let moved = bookkeeping::advance(&tx, consumer.name(), from, last, batch.len())
        .await
        .map_err(database_error)?;
    if !moved {
        return Ok(Ok(Committed::LostLease));
    }
    tx.commit().await.map_err(database_error)?;
    Ok(Ok(Committed::Yes(last.position)))
}

/// Takes `name`'s consumer lock for `client`'s session (released when the
/// session ends): the one replica that runs it, or a tool that must not
/// run beside it.
pub async fn try_lock(client: &Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('mileage.consumer.' || $1))",
            &[&name],
        )
        .await?;
    Ok(row.get(0))
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "used as map_err(database_error)"
)]
fn database_error(error: tokio_postgres::Error) -> String {
    format!("read database: {error}")
}

/// A count as a gauge value (f64; counts here stay far below 2^52).
/// Registers a consumer's series without changing them, so each has a
/// series from the first scrape (an increment of zero leaves a value the
/// process already has as it is).
fn series_at_zero(name: &str) {
    metrics::counter!("projector_events_total", "consumer" => name.to_owned()).increment(0);
    metrics::counter!("projector_restarts_total", "consumer" => name.to_owned()).increment(0);
    metrics::gauge!("projector_active", "consumer" => name.to_owned()).increment(0.0);
    metrics::gauge!("projector_stopped", "consumer" => name.to_owned()).increment(0.0);
    metrics::gauge!("projector_checkpoint", "consumer" => name.to_owned()).increment(0.0);
    let _ = metrics::histogram!("projector_batch_seconds", "consumer" => name.to_owned());
}

#[expect(
    clippy::cast_precision_loss,
    reason = "positions and counts stay below 2^52"
)]
pub(crate) fn as_gauge(n: u64) -> f64 {
    n as f64
}

/// Exponential backoff with jitter, 100 ms to 5 s, without end.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Ends the connection task when the session ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

/// What a session handles of one chunk of the subscription.
struct Taken {
    /// The events to handle, in order.
    batch: Vec<RecordedEvent>,
    /// [`Runner::until`] is reached with them.
    reached: bool,
    /// The store failed after them.
    failure: Option<mileage_store::StoreError>,
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
