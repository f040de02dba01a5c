//! The values that cross the store port.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use mileage_domain::envelope::{Causation, Envelope, EventMetadata};
use mileage_domain::event::{DecodeError, EventPayload};
use uuid::Uuid;

use crate::error::StoreError;

/// A place in the global log: an opaque, totally ordered token.
///
/// Two numbers because EventStoreDB positions are (commit, prepare) pairs; the
/// PostgreSQL adapter uses (transaction id, sequence number), which is the
/// order in which its events become visible. Compare positions only from the
/// same store. Written as `{commit}-{prepare}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Major component.
    pub commit: u64,
    /// Minor component.
    pub prepare: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.commit, self.prepare)
    }
}

impl FromStr for Position {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || {
            StoreError::InvalidRequest(format!(
                "malformed position {s:?}: expected <number>-<number>"
            ))
        };
        // Plain decimal, no sign, no leading zeros, at most 18 digits (so
        // it fits every store's and PostgreSQL's signed 64 bits): the
        // OpenAPI pattern `^(0|[1-9][0-9]{0,17})-(0|[1-9][0-9]{0,17})$`.
        let number = |part: &str| {
            let plain = !part.is_empty()
                && part.len() <= 18
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'));
            if plain {
                part.parse().map_err(|_| malformed())
            } else {
                Err(malformed())
            }
        };
        let (commit, prepare) = s.split_once('-').ok_or_else(malformed)?;
        Ok(Self {
            commit: number(commit)?,
            prepare: number(prepare)?,
        })
    }
}

/// What the appender believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream must have no events.
    NoStream,
    /// The stream's last event must have this 0-based version.
    Exact(u64),
}

impl ExpectedVersion {
    /// The expectation that matches a stream whose last version is `version`.
    pub fn from_last(version: Option<u64>) -> Self {
        version.map_or(Self::NoStream, Self::Exact)
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique id; appending it again is a no-op. Derive it deterministically
    /// when a retry must not duplicate (process managers).
    pub event_id: Uuid,
    /// Type name, e.g. `MemberJoined`.
    pub event_type: String,
    /// Schema version of `data`.
    pub schema_version: u16,
    /// The event as JSON.
    pub data: Bytes,
    /// Correlation and causation ids.
    pub causation: Causation,
    /// When the event was first recorded, when that was before this append
    /// (an import of an archive); `None` for a new event. Stores keep it
    /// with the event, in the append's own transaction: PostgreSQL as the
    /// row's time (through [`crate::EventStore::append`], which imports
    /// use), EventStoreDB (which stamps every append with the time of the
    /// append) in the event's metadata, read back in its place.
    pub recorded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// On the first event of a keyed command's append: the command's
    /// request key, which a store that records them
    /// ([`Idempotency::records_request_keys`]) writes with the append, so a
    /// second command under the key is refused
    /// ([`StoreError::RequestKeyUsed`](crate::StoreError::RequestKeyUsed)).
    pub request: Option<RequestKey>,
}

/// A keyed command's identity: its key (an `Idempotency-Key` within its
/// caller and route) and its request (that key with the request's
/// fingerprint). One key is applied by one request, at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey {
    /// The key alone.
    pub key: Uuid,
    /// The key and the request: what the command's event ids derive from.
    pub request: Uuid,
}

impl NewEvent {
    /// Wraps a domain event with its causal metadata.
    pub fn from_domain(event_id: Uuid, event: &impl EventPayload, causation: Causation) -> Self {
        Self {
            event_id,
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: Bytes::from(event.to_json()),
            causation,
            recorded_at: None,
            request: None,
        }
    }
}

/// What the global log holds after a position: how far behind a reader at
/// that position is, in the terms operators read (events and seconds, never
/// a store's byte offsets), counting only the log's own events (never a
/// store's system events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Events after the position, counted up to the limit asked for.
    pub events: u64,
    /// Whether there are more than `events` (the count stopped at the limit).
    pub more: bool,
    /// When the first of them was recorded; `None` when there are none.
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a store does with event ids it already holds: each adapter's rule,
/// pinned by the conformance suite's `idempotency_rules` case.
///
/// | | PostgreSQL | EventStoreDB |
/// | --- | --- | --- |
/// | same ids, same exact or no-stream expectation | nothing stored, first outcome | nothing stored, success |
/// | same ids under `Any` | nothing stored | only while the server's recent-id cache holds them |
/// | the retry says so (`already_appended`) | always | only when the server answers without a position (the retried events unreadable); otherwise alike to a first write |
/// | an id stored in another stream | `DuplicateEventId` | stored again |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent yes-or-no rules, one per row of the table"
)]
pub struct Idempotency {
    /// A retry of the same events under the same exact (or no-stream)
    /// expectation stores nothing new and succeeds. Every store: true.
    pub exact_retry_recognised: bool,
    /// The same under `ExpectedVersion::Any`, whenever it is retried.
    pub any_retry_recognised: bool,
    /// A recognised retry answers `already_appended`.
    pub retry_reported: bool,
    /// An event id stored in another stream is refused
    /// ([`StoreError::DuplicateEventId`]) instead of stored again.
    pub ids_unique_across_streams: bool,
    /// A request key ([`NewEvent::request`]) is written with the append,
    /// in its own transaction: the key's first append or refusal wins, and
    /// a command on this store needs no claim of its key beforehand.
    pub records_request_keys: bool,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Stream version of the last event appended (or found, on a retry).
    pub last_version: u64,
    /// Global position of the last event: the token a reader can wait for.
    pub position: Position,
    /// True when every event was already stored by an earlier identical
    /// append and nothing new was written. The PostgreSQL adapter always
    /// tells; EventStoreDB answers such a retry like a first write, with
    /// the stored position (see [`Idempotency::retry_reported`]), so false
    /// there means "written, or a retry": a caller that must know reads
    /// the events back ([`crate::stored_as_sent`]).
    pub already_appended: bool,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    /// The stream it belongs to.
    pub stream: String,
    /// 0-based version within the stream.
    pub stream_version: u64,
    /// Place in the global log.
    pub position: Position,
    pub event_type: String,
    /// Schema version of `data`.
    pub schema_version: u16,
    /// The event as JSON.
    pub data: Bytes,
    /// Correlation, causation and recorded time.
    pub metadata: EventMetadata,
}

impl RecordedEvent {
    /// Decodes the data into a domain event enum. A failure names the position.
    pub fn decode<E: EventPayload>(&self) -> Result<E, StoreError> {
        E::decode(&self.event_type, self.schema_version, &self.data).map_err(|e| self.corrupt(&e))
    }

    /// The error describing this event as unreadable.
    pub fn corrupt(&self, reason: &DecodeError) -> StoreError {
        StoreError::Corrupt {
            position: self.position,
            event_type: self.event_type.clone(),
            reason: reason.to_string(),
        }
    }

    /// The event in its versioned JSON envelope.
    pub fn to_envelope(&self) -> Result<Envelope, StoreError> {
        let data = serde_json::from_slice(&self.data).map_err(|e| StoreError::Corrupt {
            position: self.position,
            event_type: self.event_type.clone(),
            reason: format!("data is not JSON: {e}"),
        })?;
        Ok(Envelope {
            event_id: self.event_id,
            stream: self.stream.clone(),
            stream_version: self.stream_version,
            position: self.position.to_string(),
            event_type: self.event_type.clone(),
            version: self.schema_version,
            data,
            metadata: self.metadata.clone(),
        })
    }
}

/// One stream's part of an append to several streams at once.
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    pub stream: &'a str,
    /// Its expected version.
    pub expected: ExpectedVersion,
    /// Its events, in order.
    pub events: &'a [NewEvent],
}

/// Refuses multi-stream appends no store should take: no parts, a stream
/// named twice, or a part [`validate_append`] refuses.
pub(crate) fn validate_append_many(parts: &[StreamAppend<'_>]) -> Result<(), StoreError> {
    if parts.is_empty() {
        return Err(StoreError::InvalidRequest(
            "a multi-stream append has no parts".into(),
        ));
    }
    for (i, part) in parts.iter().enumerate() {
        validate_append(part.stream, part.events)?;
        if parts[..i].iter().any(|p| p.stream == part.stream) {
            return Err(StoreError::InvalidRequest(format!(
                "stream {} appears twice in one multi-stream append",
                part.stream
            )));
        }
    }
    Ok(())
}

/// Refuses appends no store should take: no events, a reserved or empty
/// stream name, data that is not JSON.
pub(crate) fn validate_append(stream: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::InvalidRequest(format!(
            "append to {stream} has no events"
        )));
    }
    if stream.is_empty() || stream.starts_with('$') || stream.len() > 200 {
        return Err(StoreError::InvalidRequest(format!(
            "invalid stream name {stream:?}: 1 to 200 characters, not starting with '$'"
        )));
    }
    if let Some(e) = events
        .iter()
        .find(|e| e.schema_version == 0 || !looks_like_json(&e.data))
    {
        return Err(StoreError::InvalidRequest(format!(
            "event {} ({}) needs JSON data and a schema version of at least 1",
            e.event_id, e.event_type
        )));
    }
    Ok(())
}

fn looks_like_json(data: &Bytes) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_commit_then_prepare() {
        let a = Position {
            commit: 1,
            prepare: 9,
        };
        let b = Position {
            commit: 2,
            prepare: 1,
        };
        assert!(a < b);
    }

    #[test]
    fn positions_round_trip_as_text() {
        let p = Position {
            commit: 123,
            prepare: 456,
        };
        assert_eq!(p.to_string(), "123-456");
        assert_eq!("123-456".parse::<Position>().unwrap(), p);
        assert_eq!(
            "0-999999999999999999".parse::<Position>().unwrap().prepare,
            999_999_999_999_999_999
        );
    }

    #[test]
    fn malformed_positions_are_named_errors() {
        for raw in [
            "",
            "12",
            "a-1",
            "1-",
            "-1-2",
            "1-2-3",
            "+1-2",
            "01-2",
            "1-1234567890123456789",
        ] {
            let err = raw.parse::<Position>().unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidRequest(ref m) if m.contains("malformed position")),
                "{raw}: {err}"
            );
        }
    }

    #[test]
    fn expected_version_from_last() {
        assert_eq!(ExpectedVersion::from_last(None), ExpectedVersion::NoStream);
        assert_eq!(
            ExpectedVersion::from_last(Some(3)),
            ExpectedVersion::Exact(3)
        );
    }
}
