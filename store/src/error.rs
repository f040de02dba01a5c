//! The one error type of the store boundary.

use crate::types::{ExpectedVersion, Position};

/// Why a store operation failed. `WrongExpectedVersion` is the only one a
/// command handler retries by re-deciding; `Unavailable` is worth retrying
/// later; the rest are bugs or corrupt data, and say where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream's version is not what the append expected.
    #[error("wrong expected version on stream {stream}: expected {expected}, actual {}", actual.map_or_else(|| "no stream".to_owned(), |v| v.to_string()))]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's last version, `None` when it has no events.
        actual: Option<u64>,
    },
    /// An event id in the append is already stored elsewhere (another stream,
    /// or with different neighbours): not a retry of the same append.
    #[error("event {event_id} is already stored in stream {stored_in} at version {stored_version}")]
    DuplicateEventId {
        /// The clashing id.
        event_id: uuid::Uuid,
        /// Where it is stored.
        stored_in: String,
        /// At which version.
        stored_version: u64,
    },
    /// The append's request key ([`crate::NewEvent::request`]) is another
    /// request's, or was refused: this command must not be applied under
    /// it. Its holder says what to answer.
    #[error("request key {key} is held by another request or a refusal")]
    RequestKeyUsed {
        /// The key.
        key: uuid::Uuid,
    },
    /// The caller asked for something the store cannot do (empty append,
    /// data that is not JSON, an invalid stream name).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A stored event cannot be read as an event.
    #[error("corrupt event at position {position} (type {event_type}): {reason}")]
    Corrupt {
        /// Where in the global log.
        position: Position,
        event_type: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration cannot work (malformed URL, bad settings).
    #[error("invalid event store configuration: {0}")]
    Config(String),
    /// The store cannot be reached or timed out; retrying later may work.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// An append was sent but its answer never came (a deadline passed, the
    /// connection dropped mid-call): it may or may not be stored. Retrying
    /// with the same event ids is safe and tells which.
    #[error("event store append outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The store answered with an error we do not map.
    #[error("event store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the operation may succeed if retried later unchanged.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::OutcomeUnknown(_))
    }
}
