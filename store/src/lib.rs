//! The event store port and its adapters.
//!
//! [`EventStore`] is the one contract both sides of Mileage use: the command
//! side appends with an expected version and reads streams; the projector
//! reads and subscribes to the global log from a checkpoint. Two adapters
//! implement it: [`postgres::PgEventStore`] (the local default) and
//! [`eventstoredb::EsdbEventStore`] (production). [`conformance`] is the one
//! test suite both must pass (with [`testing`], behind the `testing`
//! feature, for other crates' tests).
//!
//! [`keys::KeyStore`] is the port of the per-person key table that makes
//! erasing personal data from an immutable log possible.

mod batch;
#[cfg(feature = "testing")]
pub mod conformance;
mod error;
#[cfg(feature = "testing")]
pub mod esdb_double;
pub mod eventstoredb;
pub mod executor;
pub mod keys;
pub mod postgres;
#[doc(hidden)]
pub mod protocol_v2;
mod sent;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use error::StoreError;
pub use sent::stored_as_sent;
pub use types::{
    AppendOutcome, Backlog, ExpectedVersion, Idempotency, NewEvent, Position, RecordedEvent,
    RequestKey, StreamAppend,
};

/// An append-only log of events, grouped into streams, with one global order.
///
/// Implementations must guarantee: an append is all-or-nothing; a wrong
/// expected version is [`StoreError::WrongExpectedVersion`], never an
/// overwrite; appending the same event ids again stores nothing new; the
/// global log is read in one order that never changes and never skips an
/// event that commits later.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its current version matches `expected`.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError>;

    /// Appends to several streams as one: each part under its own expected
    /// version, every part or none (see [`EventStore::multi_stream_atomic`]).
    /// A retry of the same parts with the same event ids answers the first
    /// outcomes (marked `already_appended` where the store reports
    /// retries, see [`Idempotency::retry_reported`]). Where the parts go in one by one,
    /// a part found stored under its ids with other data (another attempt
    /// of the command got there first) ends the append there, marked
    /// `already_appended`: the later parts are not appended. Streams must
    /// be distinct.
    async fn append_many(
        &self,
        parts: &[StreamAppend<'_>],
    ) -> Result<Vec<AppendOutcome>, StoreError>;

    /// Whether [`EventStore::append_many`] is all-or-nothing on this store.
    /// PostgreSQL: yes (one transaction). EventStoreDB: yes on KurrentDB
    /// 25.1 and later (`AppendSession`), once the server has said its
    /// version; before, the parts are appended in order and a failure
    /// part-way leaves the earlier parts appended, which the callers
    /// complete (a retry with the same event ids appends only what is
    /// missing) and the process managers that follow the log repair.
    fn multi_stream_atomic(&self) -> bool;

    /// What this store does with event ids it already holds (see
    /// [`Idempotency`]; each adapter's value is documented there). The rest
    /// of Mileage relies only on what every store guarantees: a retry with
    /// the same deterministic event ids under the same exact expectation
    /// stores nothing new, and [`EventStore::find_in_stream`] finds the
    /// first attempt.
    fn idempotency(&self) -> Idempotency;

    /// The event with id `event_id` in `stream`, if it is there: how a
    /// retried command finds that its first attempt was applied. PostgreSQL
    /// finds it anywhere in the stream (an index on the id); EventStoreDB
    /// reads the stream backwards until it turns up (the whole stream when
    /// it is not there).
    async fn find_in_stream(
        &self,
        stream: &str,
        event_id: uuid::Uuid,
    ) -> Result<Option<RecordedEvent>, StoreError>;

    /// Reads up to `max_count` events of `stream`, forwards, starting at
    /// version `from_version` (inclusive). An unknown stream reads as empty.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `max_count` events of the global log strictly after
    /// `after` (from the start when `None`), in global order.
    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Follows the global log strictly after `after`: first what is stored,
    /// then new events as they commit. The stream never ends by itself; an
    /// error is yielded as an item and the subscription goes on from the last
    /// event it yielded.
    fn subscribe_all(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>>;

    /// The position of the last event of the global log, if any; never a
    /// store's own system event, so a reader that handled everything is at
    /// the head.
    async fn head_position(&self) -> Result<Option<Position>, StoreError>;

    /// Which store this is, as `{kind}:{uuid}` (`postgresql:…`,
    /// `eventstoredb:…`), created once and kept by the store itself.
    /// Positions mean something only in the store that issued them, so a
    /// checkpoint records this and a reader refuses a checkpoint of another.
    async fn identity(&self) -> Result<String, StoreError>;

    /// How many events lie strictly after `after` (all of them when `None`),
    /// counted up to `limit`, and when the first was recorded: a reader's
    /// lag in events and seconds. Counts what [`EventStore::read_all`]
    /// returns, so system events never count.
    async fn backlog(&self, after: Option<Position>, limit: u64) -> Result<Backlog, StoreError> {
        let page = usize::try_from(limit.min(1000)).unwrap_or(1000).max(1);
        let mut backlog = Backlog::default();
        let mut from = after;
        loop {
            let events = self.read_all(from, page).await?;
            if backlog.oldest.is_none() {
                backlog.oldest = events.first().map(|e| e.metadata.recorded_at);
            }
            for event in &events {
                if backlog.events == limit {
                    backlog.more = true;
                    return Ok(backlog);
                }
                backlog.events += 1;
                from = Some(event.position);
            }
            if events.len() < page {
                return Ok(backlog);
            }
        }
    }
}
