//! The PostgreSQL event store: the local default, and the one every test and
//! benchmark runs against.
//!
//! One `events` table with a global identity column and the writing
//! transaction's id. Appends are one `INSERT … SELECT FROM unnest(…)`
//! statement (one round trip, atomic); optimistic concurrency comes from the
//! `(stream_id, stream_version)` unique index. Readers of the global log see
//! only transactions older than the oldest running one (see `sql::read_all`),
//! ordered by `(tx_id, global_position)`, so they never pass an event that
//! commits later. Subscribers are woken by LISTEN/NOTIFY and poll as a
//! fallback.

mod append;
mod group;
mod migrations;
mod notify;
mod read;
mod sql;

pub use migrations::create_under_lock;

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::stream::BoxStream;
use tokio::sync::{Notify, watch};
use tokio_postgres::NoTls;

use crate::{
    AppendOutcome, Backlog, EventStore, ExpectedVersion, Idempotency, NewEvent, Position,
    RecordedEvent, StoreError,
};

/// Tuning knobs; the defaults suit a service.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long connecting may take before start-up fails.
    pub connect_timeout: Duration,
    /// How often an idle subscriber looks for new events when no
    /// notification arrives (e.g. the LISTEN connection is down).
    pub poll_interval: Duration,
    /// Events fetched per global-log query by a subscriber.
    pub subscription_batch: usize,
    /// Concurrent appends with a known expected version share one statement
    /// and commit (see `group`). Off: every append is its own statement.
    pub group_commit: bool,
    /// Tasks writing groups; each holds one connection while it writes.
    pub group_committers: usize,
    /// Appends already in flight before a new one joins a group. Below it,
    /// separate statements in parallel do better (PostgreSQL already flushes
    /// concurrent commits together); above it, one statement per group wins.
    pub group_min_in_flight: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(250),
            subscription_batch: 1000,
            group_commit: true,
            group_committers: 4,
            group_min_in_flight: 8,
        }
    }
}

/// The PostgreSQL adapter of [`EventStore`]. Cheap to clone.
#[derive(Clone)]
pub struct PgEventStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: tokio_postgres::Config,
    options: PgOptions,
    /// Bumped whenever new events may be visible; subscribers wait on it.
    wake: Arc<watch::Sender<u64>>,
    /// Asks the notifier task to send one NOTIFY to other processes.
    notify_others: Arc<Notify>,
    listener: OnceLock<()>,
    group: Option<group::GroupCommit>,
    /// Appends under way in this process; the group is only worth its queue
    /// hop when enough others are already in flight.
    in_flight: AtomicUsize,
}

/// Counts one append in flight for as long as it lives (also when cancelled).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Registers an append; returns the guard and how many others were under way.
    fn enter(counter: &'a AtomicUsize) -> (Self, usize) {
        let others = counter.fetch_add(1, Ordering::AcqRel);
        (Self(counter), others)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Lets the notifier task see that the store is gone and end.
        self.notify_others.notify_one();
    }
}

impl PgEventStore {
    /// Connects with default options, checks the server answers, and applies
    /// the store's migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// Connects with the given options; see [`PgEventStore::connect`].
    pub async fn connect_with(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Config(format!("malformed PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("mileage");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(options.connect_timeout))
            .wait_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Config(format!("cannot build the connection pool: {e}")))?;
        let mut client = pool.get().await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {}: {e}",
                describe(&config)
            ))
        })?;
        migrations::migrate(&mut client).await?;
        drop(client);

        let group = options
            .group_commit
            .then(|| group::GroupCommit::start(&pool, options.group_committers));
        let notify_others = Arc::new(Notify::new());
        let (wake, _) = watch::channel(0);
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                config,
                options,
                wake: Arc::new(wake),
                notify_others: Arc::clone(&notify_others),
                listener: OnceLock::new(),
                group,
                in_flight: AtomicUsize::new(0),
            }),
        };
        notify::spawn_notifier(Arc::downgrade(&store.inner), notify_others);
        Ok(store)
    }

    /// The connection pool, for adapters that share the database (key store).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// How many events the log holds (the replay tool's progress bars and
    /// its export's completeness check).
    pub async fn count_events(&self) -> Result<u64, StoreError> {
        let client = self.inner.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .map_err(pg_error)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// A small pool of connections to the same database whose commits do not
    /// wait for the disk (`synchronous_commit = off`), for writes that an
    /// append made later through this store makes durable (see
    /// [`crate::keys::PgKeyStore::sharing_wal_with_events`]). Connections are
    /// opened on first use. They never choose to read a whole table
    /// (`enable_seqscan = off`): the tables they write start empty and grow
    /// fast, and a prepared statement's generic plan made while a table was
    /// small would read it whole for good (a batch's `UPDATE ... FROM
    /// unnest(..)` did, and slowed as its table grew). Their plans are still
    /// made once and reused, which planning every execution instead cost a
    /// tenth of a keyed command's time.
    pub fn lazy_commit_pool(&self, size: usize) -> Result<Pool, StoreError> {
        let mut config = self.inner.config.clone();
        config.options("-c synchronous_commit=off -c enable_seqscan=off");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(self.inner.options.connect_timeout))
            .wait_timeout(Some(self.inner.options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Config(format!("cannot build the connection pool: {e}")))
    }

    /// Appends through the group commit when it is on and `others` appends
    /// are already in flight (enough to share a statement); `None` when the
    /// append should go alone.
    async fn grouped(
        &self,
        parts: &[crate::StreamAppend<'_>],
        others: usize,
    ) -> Option<Result<Vec<AppendOutcome>, StoreError>> {
        match &self.inner.group {
            Some(group) if others >= self.inner.options.group_min_in_flight => {
                group.append(parts).await
            }
            _ => None,
        }
    }

    /// Tells local subscribers at once, and other processes through one
    /// coalesced NOTIFY, that new events are visible.
    fn announce(&self) {
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
        self.inner.notify_others.notify_one();
    }

    /// Subscribes to wake-ups, starting the LISTEN task on first use.
    fn wake_ups(&self) -> watch::Receiver<u64> {
        self.inner.listener.get_or_init(|| {
            notify::spawn_listener(
                self.inner.config.clone(),
                Arc::clone(&self.inner.wake),
                Arc::downgrade(&self.inner),
            );
        });
        self.inner.wake.subscribe()
    }
}

/// Host and port of a config, for error messages (never the password).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config.get_hosts().first().map_or_else(
        || "localhost".to_owned(),
        |h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        },
    );
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Maps a driver error: lost connections, shutdowns and deadlock victims are
/// `Unavailable` (worth retrying), malformed input
/// `InvalidRequest`, the rest `Backend` with the server's message.
/// Takes the error by value so it reads as `.map_err(pg_error)`.
#[allow(clippy::needless_pass_by_value)]
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match e.as_db_error() {
        Some(db)
            if [
                SqlState::INVALID_TEXT_REPRESENTATION,
                SqlState::INVALID_PARAMETER_VALUE,
            ]
            .contains(db.code()) =>
        {
            StoreError::InvalidRequest(db.message().to_owned())
        }
        Some(db)
            if [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::T_R_SERIALIZATION_FAILURE,
            ]
            .contains(db.code())
                // Class 08: the connection failed.
                || db.code().code().starts_with("08") =>
        {
            StoreError::Unavailable(db.message().to_owned())
        }
        Some(db) => StoreError::Backend(format!("{}: {}", db.code().code(), db.message())),
        None if e.is_closed() || is_io(&e) => StoreError::Unavailable(e.to_string()),
        None => StoreError::Backend(full_message(&e)),
    }
}

/// Maps an error of a statement that writes events: where the server went
/// away (shut down, crashed, the connection dropped) after the statement
/// was sent, it may have committed, so the outcome is unknown, never
/// "unavailable" (which says nothing was written).
#[allow(clippy::needless_pass_by_value)]
pub(crate) fn write_error(e: tokio_postgres::Error) -> StoreError {
    match pg_error(e) {
        StoreError::Unavailable(detail) => StoreError::OutcomeUnknown(detail),
        other => other,
    }
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(<dyn std::error::Error>::is::<std::io::Error>)
}

/// The error with its sources, which the driver's `Display` leaves out.
fn full_message(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Maps a pool error: the database could not be reached in time.
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(format!("no database connection: {other}")),
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        crate::types::validate_append(stream, events)?;
        if events.iter().any(|e| e.recorded_at.is_some()) {
            let outcome =
                append::append_keeping_times(&self.inner.pool, stream, expected, events).await?;
            self.announce();
            return Ok(outcome);
        }
        let (_in_flight, others) = InFlight::enter(&self.inner.in_flight);
        let part = [crate::StreamAppend {
            stream,
            expected,
            events,
        }];
        let outcome = match self.grouped(&part, others).await {
            Some(result) => result?.pop().ok_or_else(missing_outcome)?,
            None => append::append(&self.inner.pool, stream, expected, events).await?,
        };
        if !outcome.already_appended {
            self.announce();
        }
        Ok(outcome)
    }

    async fn append_many(
        &self,
        parts: &[crate::StreamAppend<'_>],
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        crate::types::validate_append_many(parts)?;
        let (_in_flight, others) = InFlight::enter(&self.inner.in_flight);
        let outcomes = match self.grouped(parts, others).await {
            Some(result) => result?,
            None => append::append_many(&self.inner.pool, parts).await?,
        };

        if outcomes.iter().any(|o| !o.already_appended) {
            self.announce();
        }
        Ok(outcomes)
    }

    fn multi_stream_atomic(&self) -> bool {
        true
    }

    async fn find_in_stream(
        &self,
        stream: &str,
        event_id: uuid::Uuid,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        read::find_in_stream(&self.inner.pool, stream, event_id).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        read::read_stream(&self.inner.pool, stream, from_version, max_count).await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        read::read_all(&self.inner.pool, after, max_count).await
    }

    fn subscribe_all(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let wake = self.wake_ups();
        read::subscribe_all(self.clone(), wake, after)
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        read::head_position(&self.inner.pool).await
    }

    /// Every rule holds: ids are unique across the log (an index), a
    /// clash is looked at to tell a retry from a refusal, and request keys
    /// are written by the append's own statement (`request_keys`).
    fn idempotency(&self) -> Idempotency {
        Idempotency {
            exact_retry_recognised: true,
            any_retry_recognised: true,
            retry_reported: true,
            ids_unique_across_streams: true,
            records_request_keys: true,
        }
    }

    async fn identity(&self) -> Result<String, StoreError> {
        read::identity(&self.inner.pool).await
    }

    async fn backlog(&self, after: Option<Position>, limit: u64) -> Result<Backlog, StoreError> {
        read::backlog(&self.inner.pool, after, limit).await
    }
}

/// A group commit that answered fewer outcomes than parts: a bug, not a
/// refusal.
fn missing_outcome() -> StoreError {
    StoreError::Backend("the group commit answered no outcome for an append".into())
}
