//! The EventStoreDB adapter (production), over the official gRPC client.
//!
//! The mapping between our types and the client's is plain functions with
//! unit tests; the adapter itself runs the conformance suite whenever
//! `EVENTSTOREDB_URL` points at a server. Our causal metadata travels as the
//! event's custom metadata under EventStoreDB's own `$correlationId` and
//! `$causationId` keys, so its system projections understand it too.

use async_trait::async_trait;
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ExpectedRevision, ReadAllOptions,
    ReadStreamOptions, StreamPosition, SubscribeToAllOptions, SubscriptionFilter,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use mileage_domain::envelope::EventMetadata;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AppendOutcome, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError,
};

/// The EventStoreDB adapter of [`EventStore`]. Cheap to clone.
#[derive(Clone)]
pub struct EsdbEventStore {
    client: Client,
}

impl EsdbEventStore {
    /// Connects to `url` (`esdb://host:2113?tls=false`, or `esdb+discover://…`
    /// for a cluster). The client connects lazily; a malformed URL fails here.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let settings = Self::parse(url)?;
        let client = Client::new(settings)
            .map_err(|e| StoreError::Config(format!("EventStoreDB client: {e}")))?;
        Ok(Self { client })
    }

    /// Checks a connection string without connecting (settings checks run
    /// before any runtime exists).
    pub fn parse(url: &str) -> Result<ClientSettings, StoreError> {
        url.parse()
            .map_err(|e| StoreError::Config(format!("malformed EventStoreDB URL: {e}")))
    }
}

/// The custom metadata we store with every event.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CustomMetadata {
    #[serde(rename = "$correlationId")]
    correlation_id: Uuid,
    #[serde(rename = "$causationId")]
    causation_id: Uuid,
    #[serde(rename = "schemaVersion")]
    schema_version: u16,
}

/// Our expectation in the client's terms.
pub(crate) fn expected_revision(expected: ExpectedVersion) -> ExpectedRevision {
    match expected {
        ExpectedVersion::Any => ExpectedRevision::Any,
        ExpectedVersion::NoStream => ExpectedRevision::NoStream,
        ExpectedVersion::Exact(v) => ExpectedRevision::Exact(v),
    }
}

/// Our event in the client's terms; the event id passes through, so a retry
/// is recognised by the server.
pub(crate) fn event_data(event: &NewEvent) -> Result<EventData, StoreError> {
    let raw: &serde_json::value::RawValue = serde_json::from_slice(&event.data).map_err(|e| {
        StoreError::InvalidRequest(format!("event {} data is not JSON: {e}", event.event_id))
    })?;
    let metadata = CustomMetadata {
        correlation_id: event.causation.correlation_id,
        causation_id: event.causation.causation_id,
        schema_version: event.schema_version,
    };
    EventData::json(&event.event_type, &raw)
        .and_then(|data| data.metadata_as_json(&metadata))
        .map(|data| data.id(event.event_id))
        .map_err(|e| {
            StoreError::InvalidRequest(format!("event {} cannot be encoded: {e}", event.event_id))
        })
}

/// The client's position in ours (the same pair, ordered the same way).
pub(crate) fn position(p: eventstore::Position) -> Position {
    Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

fn esdb_position(p: Position) -> eventstore::Position {
    eventstore::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

/// A recorded event in our terms. Events written without our metadata (by
/// other tools) get nil causal ids and schema version 1 rather than failing.
pub(crate) fn recorded(e: &eventstore::RecordedEvent) -> Result<RecordedEvent, StoreError> {
    let position = position(e.position);
    let metadata: Option<CustomMetadata> = if e.custom_metadata.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice(&e.custom_metadata).map_err(|err| StoreError::Corrupt {
                position,
                event_type: e.event_type.clone(),
                reason: format!("custom metadata is not ours: {err}"),
            })?,
        )
    };
    Ok(RecordedEvent {
        event_id: e.id,
        stream: e.stream_id.clone(),
        stream_version: e.revision,
        position,
        event_type: e.event_type.clone(),
        schema_version: metadata.as_ref().map_or(1, |m| m.schema_version),
        data: e.data.clone(),
        metadata: EventMetadata {
            correlation_id: metadata.as_ref().map_or(Uuid::nil(), |m| m.correlation_id),
            causation_id: metadata.as_ref().map_or(Uuid::nil(), |m| m.causation_id),
            recorded_at: e.created,
        },
    })
}

/// The client's error in ours; a version conflict names stream and versions.
pub(crate) fn store_error(
    stream: &str,
    expected: ExpectedVersion,
    e: eventstore::Error,
) -> StoreError {
    use eventstore::Error as E;
    match e {
        E::WrongExpectedVersion { current, .. } => StoreError::WrongExpectedVersion {
            stream: stream.to_owned(),
            expected,
            actual: match current {
                eventstore::CurrentRevision::Current(v) => Some(v),
                eventstore::CurrentRevision::NoStream => None,
            },
        },
        E::ConnectionClosed
        | E::GrpcConnectionError(_)
        | E::DeadlineExceeded
        | E::NotLeaderException(_)
        | E::ServerError(_) => StoreError::Unavailable(e.to_string()),
        E::InitializationError(_) => StoreError::Config(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

fn is_system(e: &eventstore::RecordedEvent) -> bool {
    e.event_type.starts_with('$') || e.stream_id.starts_with('$')
}

/// How many of a stream's last events [`EventStore::find_in_stream`]
/// looks through.
const FIND_WINDOW: usize = 500;

#[async_trait]
impl EventStore for EsdbEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        crate::types::validate_append(stream, events)?;
        let data = events
            .iter()
            .map(event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let options =
            AppendToStreamOptions::default().expected_revision(expected_revision(expected));
        let written = self
            .client
            .append_to_stream(stream, &options, data)
            .await
            .map_err(|e| store_error(stream, expected, e))?;
        Ok(AppendOutcome {
            last_version: written.next_expected_version,
            position: position(written.position),
            already_appended: false,
        })
    }

    /// Not atomic here (the 4.x client has no multi-stream append): the
    /// parts are appended in order, each under its own expected version.
    async fn append_many(
        &self,
        parts: &[crate::StreamAppend<'_>],
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        crate::types::validate_append_many(parts)?;
        let mut outcomes = Vec::with_capacity(parts.len());
        for part in parts {
            outcomes.push(self.append(part.stream, part.expected, part.events).await?);
        }
        Ok(outcomes)
    }

    fn multi_stream_atomic(&self) -> bool {
        false
    }

    async fn find_in_stream(
        &self,
        stream: &str,
        event_id: uuid::Uuid,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .max_count(FIND_WINDOW);
        let mut read = match self.client.read_stream(stream, &options).await {
            Ok(read) => read,
            Err(eventstore::Error::ResourceNotFound) => return Ok(None),
            Err(e) => return Err(store_error(stream, ExpectedVersion::Any, e)),
        };
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(e) = &resolved.event
                        && e.id == event_id
                    {
                        return recorded(e).map(Some);
                    }
                }
                Ok(None) | Err(eventstore::Error::ResourceNotFound) => return Ok(None),
                Err(e) => return Err(store_error(stream, ExpectedVersion::Any, e)),
            }
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(from_version))
            .max_count(max_count);
        let mut read = match self.client.read_stream(stream, &options).await {
            Ok(read) => read,
            Err(eventstore::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(store_error(stream, ExpectedVersion::Any, e)),
        };
        let mut events = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(e) = &resolved.event {
                        events.push(recorded(e)?);
                    }
                }
                Ok(None) | Err(eventstore::Error::ResourceNotFound) => return Ok(events),
                Err(e) => return Err(store_error(stream, ExpectedVersion::Any, e)),
            }
        }
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // $all reads are inclusive of the start position and include system
        // events: page until `max_count` of ours are found or the log ends.
        let mut events = Vec::new();
        let mut from = after;
        loop {
            let page_size = max_count.saturating_sub(events.len()).max(1) + 1;
            let options = ReadAllOptions::default()
                .forwards()
                .position(from.map_or(StreamPosition::Start, |p| {
                    StreamPosition::Position(esdb_position(p))
                }))
                .max_count(page_size);
            let mut read = self
                .client
                .read_all(&options)
                .await
                .map_err(|e| store_error("$all", ExpectedVersion::Any, e))?;
            let mut raw_count = 0;
            while let Some(resolved) = read
                .next()
                .await
                .map_err(|e| store_error("$all", ExpectedVersion::Any, e))?
            {
                raw_count += 1;
                let Some(e) = &resolved.event else { continue };
                let p = position(e.position);
                if after.is_some_and(|a| p <= a) || from.is_some_and(|f| p <= f) {
                    continue;
                }
                from = Some(p);
                if !is_system(e) {
                    events.push(recorded(e)?);
                    if events.len() == max_count {
                        return Ok(events);
                    }
                }
            }
            if raw_count < page_size {
                return Ok(events);
            }
        }
    }

    fn subscribe_all(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let client = self.client.clone();
        futures::stream::unfold(
            (client, None, after),
            |(client, mut subscription, mut after)| async move {
                loop {
                    if subscription.is_none() {
                        let start = after.map_or(StreamPosition::Start, |p| {
                            StreamPosition::Position(esdb_position(p))
                        });
                        let options = SubscribeToAllOptions::default()
                            .position(start)
                            .filter(SubscriptionFilter::on_event_type().exclude_system_events());
                        subscription = Some(client.subscribe_to_all(&options).await);
                    }
                    let Some(sub) = subscription.as_mut() else {
                        continue;
                    };
                    match sub.next().await {
                        Ok(resolved) => {
                            let Some(e) = &resolved.event else { continue };
                            let p = position(e.position);
                            if after.is_some_and(|a| p <= a) || is_system(e) {
                                continue;
                            }
                            after = Some(p);
                            return Some((recorded(e), (client, subscription, after)));
                        }
                        Err(e) => {
                            // Resubscribe from the last delivered position next time.
                            return Some((
                                Err(store_error("$all", ExpectedVersion::Any, e)),
                                (client, None, after),
                            ));
                        }
                    }
                }
            },
        )
        .boxed()
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        let options = ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .max_count(1);
        let mut read = self
            .client
            .read_all(&options)
            .await
            .map_err(|e| store_error("$all", ExpectedVersion::Any, e))?;
        let last = read
            .next()
            .await
            .map_err(|e| store_error("$all", ExpectedVersion::Any, e))?;
        Ok(last.and_then(|r| r.event.map(|e| position(e.position))))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::{TimeZone, Utc};
    use mileage_domain::envelope::Causation;

    use super::*;

    fn new_event() -> NewEvent {
        NewEvent {
            event_id: Uuid::from_u128(7),
            event_type: "MemberJoined".into(),
            schema_version: 2,
            data: Bytes::from_static(br#"{"memberId":"1"}"#),
            causation: Causation::caused_by(Uuid::from_u128(1), Uuid::from_u128(2)),
        }
    }

    fn esdb_recorded(custom_metadata: &'static [u8]) -> eventstore::RecordedEvent {
        eventstore::RecordedEvent {
            stream_id: "member-1".into(),
            id: Uuid::from_u128(7),
            revision: 4,
            event_type: "MemberJoined".into(),
            data: Bytes::from_static(br#"{"memberId":"1"}"#),
            metadata: std::collections::HashMap::new(),
            custom_metadata: Bytes::from_static(custom_metadata),
            is_json: true,
            position: eventstore::Position {
                commit: 10,
                prepare: 9,
            },
            created: Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
        }
    }

    #[test]
    fn expected_versions_map_one_to_one() {
        assert_eq!(
            expected_revision(ExpectedVersion::Any),
            ExpectedRevision::Any
        );
        assert_eq!(
            expected_revision(ExpectedVersion::NoStream),
            ExpectedRevision::NoStream
        );
        assert_eq!(
            expected_revision(ExpectedVersion::Exact(3)),
            ExpectedRevision::Exact(3)
        );
    }

    #[test]
    fn our_metadata_uses_eventstoredb_keys() {
        let metadata = CustomMetadata {
            correlation_id: Uuid::from_u128(1),
            causation_id: Uuid::from_u128(2),
            schema_version: 2,
        };
        let json = serde_json::to_value(&metadata).unwrap();
        assert_eq!(json["$correlationId"], Uuid::from_u128(1).to_string());
        assert_eq!(json["$causationId"], Uuid::from_u128(2).to_string());
        assert_eq!(json["schemaVersion"], 2);
        assert!(event_data(&new_event()).is_ok());
    }

    #[test]
    fn non_json_data_is_refused_before_sending() {
        let mut e = new_event();
        e.data = Bytes::from_static(b"not json");
        assert!(
            matches!(event_data(&e), Err(StoreError::InvalidRequest(m)) if m.contains("not JSON"))
        );
    }

    #[test]
    fn a_recorded_event_maps_back_with_its_metadata_and_position() {
        let meta = br#"{"$correlationId":"00000000-0000-0000-0000-000000000001","$causationId":"00000000-0000-0000-0000-000000000002","schemaVersion":2}"#;
        let mapped = recorded(&esdb_recorded(meta)).unwrap();
        assert_eq!(mapped.event_id, Uuid::from_u128(7));
        assert_eq!(
            (mapped.stream.as_str(), mapped.stream_version),
            ("member-1", 4)
        );
        assert_eq!(
            mapped.position,
            Position {
                commit: 10,
                prepare: 9
            }
        );
        assert_eq!(mapped.schema_version, 2);
        assert_eq!(mapped.metadata.correlation_id, Uuid::from_u128(1));
        assert_eq!(mapped.metadata.causation_id, Uuid::from_u128(2));
        assert_eq!(
            mapped.metadata.recorded_at,
            Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
        );
    }

    #[test]
    fn foreign_events_without_metadata_still_map() {
        let mapped = recorded(&esdb_recorded(b"")).unwrap();
        assert_eq!(mapped.schema_version, 1);
        assert_eq!(mapped.metadata.correlation_id, Uuid::nil());
    }

    #[test]
    fn unreadable_metadata_is_a_corrupt_event_naming_its_position() {
        let Err(StoreError::Corrupt {
            position,
            event_type,
            ..
        }) = recorded(&esdb_recorded(b"{oops"))
        else {
            panic!("should be Corrupt");
        };
        assert_eq!(
            position,
            Position {
                commit: 10,
                prepare: 9
            }
        );
        assert_eq!(event_type, "MemberJoined");
    }

    #[test]
    fn a_version_conflict_names_stream_expected_and_actual() {
        let e = eventstore::Error::WrongExpectedVersion {
            expected: ExpectedRevision::Exact(1),
            current: eventstore::CurrentRevision::Current(4),
        };
        let mapped = store_error("member-1", ExpectedVersion::Exact(1), e);
        assert_eq!(
            mapped.to_string(),
            "wrong expected version on stream member-1: expected 1, actual 4"
        );
        let none = store_error(
            "member-2",
            ExpectedVersion::Exact(0),
            eventstore::Error::WrongExpectedVersion {
                expected: ExpectedRevision::Exact(0),
                current: eventstore::CurrentRevision::NoStream,
            },
        );
        assert!(matches!(
            none,
            StoreError::WrongExpectedVersion { actual: None, .. }
        ));
    }

    #[test]
    fn connection_problems_are_transient() {
        assert!(
            store_error(
                "s",
                ExpectedVersion::Any,
                eventstore::Error::ConnectionClosed
            )
            .is_transient()
        );
        assert!(
            !store_error("s", ExpectedVersion::Any, eventstore::Error::AccessDenied).is_transient()
        );
    }

    #[test]
    fn a_malformed_url_is_a_configuration_error() {
        assert!(matches!(
            EsdbEventStore::connect("not a url"),
            Err(StoreError::Config(_))
        ));
    }
}
