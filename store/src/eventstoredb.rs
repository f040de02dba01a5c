//! The EventStoreDB adapter (production), over the official gRPC client,
//! `kurrentdb` (the continuation of `eventstore` 4.x; docs/event-store.md says why).
//!
//! The mapping between our types and the client's is plain functions with
//! unit tests; the adapter's behaviour on the wire (dropped reads, deadlines,
//! not-leader answers, retries answered by the server's rules, deleted
//! streams, access denied, checkpoints between events) is tested against a gRPC double built from the client's own
//! `.proto` files; the conformance suite runs whenever `EVENTSTOREDB_URL`
//! points at a real server. Our causal metadata travels as the event's
//! custom metadata under EventStoreDB's own `$correlationId` and
//! `$causationId` keys, so its system projections understand it too.
//!
//! Two guards against the client:
//! - the client's subscriptions spin forever when the server ends one with
//!   an OK status (`Subscription::next` polls the finished stream again in a
//!   loop that never yields), so [`EsdbEventStore::subscribe_all`] follows
//!   the log by reading it, page after page, and waits between empty pages;
//! - `eventstore` 4.0 panicked in its connection task when the process had
//!   already installed a default rustls crypto provider; `kurrentdb` 1.2
//!   does not, and a test installs one first and connects.

mod session;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadAllOptions, ReadStreamOptions,
    StreamPosition, StreamState,
};
use mileage_domain::envelope::{Actor, EventMetadata, TraceContext};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AppendOutcome, EventStore, ExpectedVersion, Idempotency, NewEvent, Position, RecordedEvent,
    StoreError,
};

/// The stream whose metadata names this store (see [`EventStore::identity`]):
/// the metadata is its `$$` stream, a system stream no reader of ours sees.
const IDENTITY_STREAM: &str = "mileage-store";

/// The connection string's own parameter naming a namespace.
const NAMESPACE_PARAMETER: &str = "namespace";

/// How long an append may take before its outcome counts as unknown.
const APPEND_DEADLINE: Duration = Duration::from_secs(10);

/// How long one read (a page of the log, a stream, a search of one) may
/// take before it counts as failed: a read is always safe to retry, and a
/// hung server or connection must not hold a reader for good.
const READ_DEADLINE: Duration = Duration::from_secs(30);

/// The oldest server version this adapter works with (major, minor):
/// before 22.6 the server gives an event read from a stream the position
/// `u64::MAX`, which [`position`] refuses; 22.10 is the long-term release
/// after it.
pub const MINIMUM_SERVER: (usize, usize) = (22, 10);

/// How long a reader that found nothing new waits before reading again.
const POLL: Duration = Duration::from_millis(100);

/// Events read per page while following the log.
const FOLLOW_PAGE: usize = 500;

/// The EventStoreDB adapter of [`EventStore`]. Cheap to clone.
#[derive(Clone)]
pub struct EsdbEventStore {
    client: Client,
    /// `{namespace}.` when the store is one namespace of a shared server.
    prefix: Option<String>,
    append_deadline: Duration,
    read_deadline: Duration,
    poll: Duration,
    /// The server's version, checked once (see [`EsdbEventStore::server_version`]).
    version: std::sync::Arc<tokio::sync::OnceCell<ServerVersion>>,
    /// Atomic multi-stream appends, used once the server says it is 25.1
    /// or later; `None` where the settings rule them out.
    sessions: Option<std::sync::Arc<session::Sessions>>,
}

/// A server's version, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// The release year, e.g. 25.
    pub major: usize,
    /// The release within the year, e.g. 1.
    pub minor: usize,
    /// The patch.
    pub patch: usize,
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl ServerVersion {
    /// Whether this adapter works with it ([`MINIMUM_SERVER`] or later);
    /// the refusal says why not.
    pub fn supported(self) -> Result<Self, StoreError> {
        if (self.major, self.minor) >= MINIMUM_SERVER {
            return Ok(self);
        }
        let (major, minor) = MINIMUM_SERVER;
        let reported = if self.major == 0 {
            "reports no version (older than 21.6)".to_owned()
        } else {
            format!("is version {self}")
        };
        Err(StoreError::Config(format!(
            "the EventStoreDB server {reported}; Mileage needs {major}.{minor} or later \
             (before 22.6 an event read from a stream carries no position): upgrade the server"
        )))
    }
}

impl EsdbEventStore {
    /// Connects to `url` (`esdb://host:2113?tls=false`, `kurrentdb://…`, or
    /// `esdb+discover://…` for a cluster). The client connects lazily; a
    /// malformed URL fails here, an unreachable server at the first call
    /// (start-up calls [`EventStore::identity`] to find out early).
    ///
    /// A `namespace=NAME` parameter (letters, digits, `_`; ours, removed
    /// before the client sees the URL) makes the store one namespace of a
    /// shared server: its streams are written as `NAME.stream`, and it reads
    /// and counts only those, with the prefix taken off. The end-to-end
    /// tests use it to share one server without seeing each other's events.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, namespace) = split_namespace(url)?;
        let settings = Self::parse(&url)?;
        let sessions = session::Sessions::new(&settings)?.map(std::sync::Arc::new);
        let client = Client::new(settings)
            .map_err(|e| StoreError::Config(format!("EventStoreDB client: {e}")))?;
        Ok(Self {
            client,
            prefix: namespace.map(|n| format!("{n}.")),
            append_deadline: APPEND_DEADLINE,
            read_deadline: READ_DEADLINE,
            poll: POLL,
            version: std::sync::Arc::default(),
            sessions,
        })
    }

    /// One read of `$all`: every event the server sends (system events
    /// too), checkpoints and other messages skipped.
    async fn read_all_page(
        &self,
        options: &ReadAllOptions,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, StoreError> {
        self.bounded("$all", self.read_all_page_unbounded(options))
            .await
    }

    async fn read_all_page_unbounded(
        &self,
        options: &ReadAllOptions,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, StoreError> {
        let failed = |e| store_error("$all", ExpectedVersion::Any, e);
        let mut read = self.client.read_all(options).await.map_err(failed)?;
        let mut events = Vec::new();
        while let Some(resolved) = read.next().await.map_err(failed)? {
            if let Some(event) = resolved.event {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Reads of `$all` for this store's events, filtered by the server:
    /// by the namespace's stream prefix when there is one (which no system
    /// stream has), otherwise by event types not starting with `$`. The
    /// server then skips its own events (statistics, scavenges, epochs,
    /// the identity) instead of sending them all for the client to drop;
    /// `is_ours` still checks each event it sends.
    fn filtered(&self, options: ReadAllOptions) -> ReadAllOptions {
        let filter = match &self.prefix {
            Some(prefix) => kurrentdb::SubscriptionFilter::on_stream_name().add_prefix(prefix),
            None => kurrentdb::SubscriptionFilter::on_event_type().exclude_system_events(),
        };
        options.filter(filter)
    }

    /// A stream's name on the server.
    fn on_server(&self, stream: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}{stream}"),
            None => stream.to_owned(),
        }
    }

    /// The identity's metadata stream on the server.
    fn identity_stream(&self) -> String {
        format!("$${}", self.on_server(IDENTITY_STREAM))
    }

    /// Whether a stored event is one of ours: not a system event, and in
    /// this store's namespace.
    fn is_ours(&self, e: &kurrentdb::RecordedEvent) -> bool {
        !is_system(e)
            && self
                .prefix
                .as_ref()
                .is_none_or(|prefix| e.stream_id().starts_with(prefix.as_str()))
    }

    /// A stored event in our terms, the namespace taken off its stream.
    fn ours(&self, e: &kurrentdb::RecordedEvent) -> Result<RecordedEvent, StoreError> {
        let mut raw = Raw::from(e);
        if let Some(prefix) = &self.prefix {
            raw.stream = raw
                .stream
                .strip_prefix(prefix.as_str())
                .unwrap_or(raw.stream);
        }
        recorded(&raw)
    }

    /// The server's version, asked once per store and checked against
    /// [`MINIMUM_SERVER`]: a server too old is a configuration error, so
    /// start-up (which asks for the store's identity, which asks this
    /// first) refuses to run on it.
    pub async fn server_version(&self) -> Result<ServerVersion, StoreError> {
        let version =
            self.version
                .get_or_try_init(|| async {
                    let info = self.bounded("the server's version", async {
                        self.client.server_info().await.map_err(|e| {
                            store_error("the server's version", ExpectedVersion::Any, e)
                        })
                    });
                    let reported = info.await?.version();
                    Ok::<_, StoreError>(ServerVersion {
                        major: reported.major(),
                        minor: reported.minor(),
                        patch: reported.patch(),
                    })
                })
                .await?;
        version.supported()
    }

    /// The same store with reads cut off after `deadline` (then
    /// unavailable: retry) instead of the default 30 s.
    #[must_use]
    pub fn with_read_deadline(mut self, deadline: Duration) -> Self {
        self.read_deadline = deadline;
        self
    }

    /// `read`, cut off after the read deadline: unavailable, worth a retry.
    async fn bounded<T>(
        &self,
        what: &str,
        read: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.read_deadline, read)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "no answer to a read of {what} within {} s",
                    self.read_deadline.as_secs_f64()
                )))
            })
    }

    /// The same store with appends cut off after `deadline` (their outcome
    /// then unknown) instead of the default 10 s.
    #[must_use]
    pub fn with_append_deadline(mut self, deadline: Duration) -> Self {
        self.append_deadline = deadline;
        self
    }

    /// Checks a connection string without connecting (settings checks run
    /// before any runtime exists). The error never repeats the URL, which
    /// may hold a password.
    pub fn parse(url: &str) -> Result<ClientSettings, StoreError> {
        url.parse()
            .map_err(|e: kurrentdb::ClientSettingsParseError| {
                StoreError::Config(format!(
                    "malformed EventStoreDB URL (expected esdb://host:port?tls=false or \
                 esdb+discover://...): {}",
                    e.to_string().replace(url, "<url>")
                ))
            })
    }

    async fn read_identity(&self) -> Result<Option<String>, StoreError> {
        self.bounded("the store identity", async {
            let stream = self.identity_stream();
            let options = ReadStreamOptions::default()
                .backwards()
                .position(StreamPosition::End)
                .max_count(1);
            let mut read = match self.client.read_stream(stream.as_str(), &options).await {
                Ok(read) => read,
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(None),
                Err(e) => return Err(store_error(&stream, ExpectedVersion::Any, e)),
            };
            match read.next().await {
                Ok(Some(resolved)) => Ok(resolved.event.and_then(|e| identity_of(&e.data))),
                Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => Ok(None),
                Err(e) => Err(store_error(&stream, ExpectedVersion::Any, e)),
            }
        })
        .await
    }

    async fn append_once(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        let data = events
            .iter()
            .map(event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default()
            .stream_state(stream_state(expected))
            .deadline(self.append_deadline);
        let call = self
            .client
            .append_to_stream(self.on_server(stream), &options, data);
        let written = match tokio::time::timeout(self.append_deadline, call).await {
            Ok(written) => written.map_err(|e| append_error(stream, expected, e))?,
            Err(_) => {
                return Err(StoreError::OutcomeUnknown(format!(
                    "no answer to an append to {stream} within {} s",
                    self.append_deadline.as_secs_f64()
                )));
            }
        };
        let position = position(written.position);
        if position
            != (Position {
                commit: 0,
                prepare: 0,
            })
        {
            return Ok(AppendOutcome {
                last_version: written.next_expected_version,
                position,
                already_appended: false,
            });
        }
        // Answered without a position: the server recognised the append
        // as a retry of one it stored, whose last event it could not read
        // back (scavenged or truncated, `IndexWriter.CheckCommit`). Any
        // other recognised retry is answered with the stored position,
        // alike to a first write. The position readers wait for is the
        // stored last event's, when the stream still has it.
        let Some(last) = events.last() else {
            return Err(StoreError::InvalidRequest(format!(
                "append to {stream} has no events"
            )));
        };
        match self.find_in_stream(stream, last.event_id).await? {
            Some(stored) => Ok(AppendOutcome {
                last_version: stored.stream_version,
                position: stored.position,
                already_appended: true,
            }),
            None => Err(StoreError::Backend(format!(
                "EventStoreDB accepted an append to {stream} without a position, \
                 and its last event {} is not in the stream",
                last.event_id
            ))),
        }
    }
}

/// A `u16` written as an integer or as a whole double.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let n = f64::deserialize(deserializer)?;
    if n.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(&n) {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked whole and in range just above"
        )]
        Ok(n as u16)
    } else {
        Err(serde::de::Error::custom(format!(
            "schemaVersion {n} is not a whole number from 0 to 65535"
        )))
    }
}

/// The custom metadata we store with every event.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CustomMetadata {
    #[serde(rename = "$correlationId")]
    correlation_id: Uuid,
    #[serde(rename = "$causationId")]
    causation_id: Uuid,
    /// A number; written by the v2 protocol's properties (a protobuf
    /// `Struct`, whose numbers are doubles), it may read back as `2.0`.
    #[serde(rename = "schemaVersion", deserialize_with = "whole_number")]
    schema_version: u16,
    /// The W3C trace context the event was appended in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<TraceContext>,
    /// Who caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<Actor>,
    /// When the event was first recorded, for an event imported from an
    /// archive (the server's own time is that of the import); read back as
    /// the event's recorded time.
    #[serde(
        rename = "recordedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    recorded_at: Option<DateTime<Utc>>,
}

/// `url` without our `namespace` parameter, and the namespace.
pub(crate) fn split_namespace(url: &str) -> Result<(String, Option<String>), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut namespace = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case(NAMESPACE_PARAMETER) => {
                let valid = !value.is_empty()
                    && value.len() <= 64
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(StoreError::Config(
                        "malformed EventStoreDB URL: namespace must be 1 to 64 letters, digits \
                         or underscores"
                            .into(),
                    ));
                }
                namespace = Some(value.to_owned());
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, namespace))
}

/// The identity stream's metadata.
#[derive(Debug, Serialize, Deserialize)]
struct IdentityMetadata {
    #[serde(rename = "mileageStoreId")]
    store_id: Uuid,
}

/// The store id in an identity event, if it is one of ours.
fn identity_of(data: &[u8]) -> Option<String> {
    serde_json::from_slice::<IdentityMetadata>(data)
        .ok()
        .map(|m| format!("eventstoredb:{}", m.store_id))
}

/// Our expectation in the client's terms.
pub(crate) fn stream_state(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::NoStream => StreamState::NoStream,
        ExpectedVersion::Exact(v) => StreamState::StreamRevision(v),
    }
}

/// Our event in the client's terms; the event id passes through, so a retry
/// is recognised by the server.
pub(crate) fn event_data(event: &NewEvent) -> Result<EventData, StoreError> {
    let raw: &serde_json::value::RawValue = serde_json::from_slice(&event.data).map_err(|e| {
        StoreError::InvalidRequest(format!("event {} data is not JSON: {e}", event.event_id))
    })?;
    let metadata = custom_metadata(event);
    EventData::json(&event.event_type, &raw)
        .and_then(|data| data.metadata_as_json(&metadata))
        .map(|data| data.id(event.event_id))
        .map_err(|e| {
            StoreError::InvalidRequest(format!("event {} cannot be encoded: {e}", event.event_id))
        })
}

/// The metadata stored with `event`, whichever protocol appends it.
fn custom_metadata(event: &NewEvent) -> CustomMetadata {
    CustomMetadata {
        correlation_id: event.causation.correlation_id,
        causation_id: event.causation.causation_id,
        schema_version: event.schema_version,
        traceparent: event.causation.trace,
        actor: event.causation.actor.clone(),
        recorded_at: event.recorded_at,
    }
}

/// The client's position in ours (the same pair, ordered the same way).
pub(crate) fn position(p: kurrentdb::Position) -> Position {
    Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

fn esdb_position(p: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

/// A stored event as the server sent it: the fields we map, so the mapping
/// is tested without a server (the client's own type cannot be built
/// outside it).
pub(crate) struct Raw<'a> {
    pub(crate) stream: &'a str,
    pub(crate) id: Uuid,
    pub(crate) revision: u64,
    pub(crate) event_type: &'a str,
    pub(crate) data: &'a Bytes,
    pub(crate) custom_metadata: &'a [u8],
    pub(crate) position: kurrentdb::Position,
    /// The server's `created` system metadata: 100 ns ticks since 1970.
    pub(crate) created_ticks: Option<&'a str>,
    /// The client's reading of it (whole seconds).
    pub(crate) created: DateTime<Utc>,
}

impl<'a> From<&'a kurrentdb::RecordedEvent> for Raw<'a> {
    fn from(e: &'a kurrentdb::RecordedEvent) -> Self {
        Self {
            stream: e.stream_id(),
            id: e.id,
            revision: e.revision,
            event_type: &e.event_type,
            data: &e.data,
            custom_metadata: &e.custom_metadata,
            position: e.position,
            created_ticks: e.metadata.get("created").map(String::as_str),
            created: e.created,
        }
    }
}

/// When the event was recorded, to the 100 ns tick the server keeps (the
/// client truncates it to whole seconds); the client's reading when the
/// ticks are missing or unreadable.
pub(crate) fn recorded_at(ticks: Option<&str>, fallback: DateTime<Utc>) -> DateTime<Utc> {
    ticks
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| {
            let seconds = t.div_euclid(10_000_000);
            let nanos = u32::try_from(t.rem_euclid(10_000_000) * 100).ok()?;
            DateTime::from_timestamp(seconds, nanos)
        })
        .unwrap_or(fallback)
}

/// A recorded event in our terms. Events written without our metadata (by
/// other tools) get nil causal ids and schema version 1 rather than failing.
/// Metadata we cannot read is corruption on one of our streams (it stops
/// whoever reads it, naming the position); on another application's stream
/// (one sharing the database) it is that application's business: the event
/// is passed on without it, counted in `eventstoredb_foreign_events_total`
/// and logged by its stream's category, type and position, never by
/// content or full stream name.
pub(crate) fn recorded(e: &Raw<'_>) -> Result<RecordedEvent, StoreError> {
    let position = position(e.position);
    let metadata: Option<CustomMetadata> = if e.custom_metadata.is_empty() {
        None
    } else {
        match serde_json::from_slice(e.custom_metadata) {
            Ok(metadata) => Some(metadata),
            Err(_) if !mileage_domain::aggregate::is_ours(e.stream) => {
                metrics::counter!("eventstoredb_foreign_events_total").increment(1);
                // Its category and position only: another application's
                // stream names may hold its users' data.
                let category = e.stream.split_once('-').map_or("", |(c, _)| c);
                tracing::warn!(
                    category,
                    event_type = e.event_type,
                    %position,
                    "an event of another application (metadata not ours) passed over"
                );
                None
            }
            Err(err) => {
                return Err(StoreError::Corrupt {
                    position,
                    event_type: e.event_type.to_owned(),
                    reason: format!("custom metadata is not ours: {err}"),
                });
            }
        }
    };
    Ok(RecordedEvent {
        event_id: e.id,
        stream: e.stream.to_owned(),
        stream_version: e.revision,
        position,
        event_type: e.event_type.to_owned(),
        schema_version: metadata.as_ref().map_or(1, |m| m.schema_version),
        data: e.data.clone(),
        metadata: EventMetadata {
            correlation_id: metadata.as_ref().map_or(Uuid::nil(), |m| m.correlation_id),
            causation_id: metadata.as_ref().map_or(Uuid::nil(), |m| m.causation_id),
            recorded_at: metadata
                .as_ref()
                .and_then(|m| m.recorded_at)
                .unwrap_or_else(|| recorded_at(e.created_ticks, e.created)),
            trace: metadata.as_ref().and_then(|m| m.traceparent),
            actor: metadata.as_ref().and_then(|m| m.actor.clone()),
        },
    })
}

/// The client's error in ours; a version conflict names stream and versions.
pub(crate) fn store_error(
    stream: &str,
    expected: ExpectedVersion,
    e: kurrentdb::Error,
) -> StoreError {
    use kurrentdb::Error as E;
    match e {
        E::WrongExpectedVersion { current, .. } => StoreError::WrongExpectedVersion {
            stream: stream.to_owned(),
            expected,
            actual: match current {
                kurrentdb::CurrentRevision::Current(v) => Some(v),
                kurrentdb::CurrentRevision::NoStream => None,
            },
        },
        E::ConnectionClosed
        | E::GrpcConnectionError(_)
        | E::DeadlineExceeded
        | E::NotLeaderException(_)
        | E::ServerError(_) => StoreError::Unavailable(e.to_string()),
        E::Grpc { code, .. } if is_transient_code(code) => StoreError::Unavailable(e.to_string()),
        E::InitializationError(_) => StoreError::Config(e.to_string()),
        E::AccessDenied => access_denied(stream),
        E::ResourceDeleted => deleted(stream),
        other => StoreError::Backend(other.to_string()),
    }
}

/// The server refused `what` to the connection's user: its settings are
/// wrong, and a retry cannot help.
pub(crate) fn access_denied(what: &str) -> StoreError {
    StoreError::Config(format!(
        "EventStoreDB denied access to {what}: the user of the connection string \
         may not do this (its ACL, or no user where the server needs one)"
    ))
}

/// A stream of `what` was deleted on the server, by someone else.
pub(crate) fn deleted(what: &str) -> StoreError {
    StoreError::Backend(format!(
        "stream {what} is deleted on the server: deleted outside Mileage, which never \
         deletes a stream"
    ))
}

fn is_transient_code(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
            | tonic::Code::ResourceExhausted
            | tonic::Code::Cancelled
    )
}

/// An append's error in ours: a deadline that passed, a call cut off
/// after it was sent, the server's own commit timeout (ABORTED,
/// "Operation timed out": the write was sent to the cluster and may have
/// committed), or an error the server answered after taking the request
/// (`INTERNAL`, `UNKNOWN`, `UNAVAILABLE`, `DATA_LOSS`: the client's `ServerError`)
/// leaves the outcome unknown, unlike a refusal or a server that was
/// never reached (no connection).
pub(crate) fn append_error(
    stream: &str,
    expected: ExpectedVersion,
    e: kurrentdb::Error,
) -> StoreError {
    use kurrentdb::Error as E;
    match e {
        E::DeadlineExceeded
        | E::Grpc {
            code: tonic::Code::DeadlineExceeded | tonic::Code::Cancelled | tonic::Code::Aborted,
            ..
        }
        | E::ServerError(_) => StoreError::OutcomeUnknown(format!("append to {stream}: {e}")),
        other => store_error(stream, expected, other),
    }
}

fn is_system(e: &kurrentdb::RecordedEvent) -> bool {
    e.event_type.starts_with('$') || e.stream_id().starts_with('$')
}

#[async_trait]
impl EventStore for EsdbEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        crate::types::validate_append(stream, events)?;
        self.append_once(stream, expected, events).await
    }

    /// Atomic on KurrentDB 25.1 and later (`AppendSession`, see
    /// `session`); before, or where the settings rule it out, the parts are
    /// appended in order, each under its own expected version.
    async fn append_many(
        &self,
        parts: &[crate::StreamAppend<'_>],
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        crate::types::validate_append_many(parts)?;
        self.server_version().await?;
        if let Some(sessions) = self
            .sessions
            .as_ref()
            .filter(|_| self.multi_stream_atomic())
        {
            let parts: Vec<session::Part<'_>> = parts
                .iter()
                .map(|p| session::Part {
                    on_server: self.on_server(p.stream),
                    stream: p.stream,
                    expected: p.expected,
                    events: p.events,
                })
                .collect();
            return sessions.append(&parts, self.append_deadline).await;
        }
        let mut outcomes = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let outcome = self.append(part.stream, part.expected, part.events).await?;
            // The parts go in one by one. A part the server took as a retry
            // (the same ids at the same version) may be another attempt's,
            // with other data: then the parts after it were decided by an
            // attempt that lost, and appending them would apply it after
            // all. The executor answers the first attempt's outcome, and
            // the use case completes what that attempt left missing.
            let is_last = index + 1 == parts.len();
            if !is_last && !crate::stored_as_sent(self, part.stream, part.events, &outcome).await? {
                outcomes.push(AppendOutcome {
                    already_appended: true,
                    ..outcome
                });
                break;
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// True once the server said it is 25.1 or later (at start-up, or the
    /// first multi-stream append), unless the settings rule it out.
    fn multi_stream_atomic(&self) -> bool {
        self.sessions.is_some()
            && self
                .version
                .get()
                .is_some_and(|v| (v.major, v.minor) >= session::ATOMIC_FROM)
    }

    /// EventStoreDB's own rules: a retry under the same exact expectation
    /// is recognised; under `Any` only while the server's cache of recent
    /// ids holds it; ids are unique per stream only; a retry is reported
    /// only when the server answers it without a position. Request keys
    /// are not recorded: nothing beside the events is written in an
    /// append's transaction there.
    fn idempotency(&self) -> Idempotency {
        Idempotency {
            exact_retry_recognised: true,
            any_retry_recognised: false,
            retry_reported: false,
            ids_unique_across_streams: false,
            records_request_keys: false,
        }
    }

    async fn find_in_stream(
        &self,
        stream: &str,
        event_id: uuid::Uuid,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        self.bounded(stream, async {
            // The whole stream, newest first, until the id turns up: a retry
            // comes soon after its first attempt in the common case, so the
            // search ends early; a command never applied reads the stream
            // (the server streams it; nothing is held but the current event).
            let options = ReadStreamOptions::default()
                .backwards()
                .position(StreamPosition::End);
            let mut read = match self
                .client
                .read_stream(self.on_server(stream), &options)
                .await
            {
                Ok(read) => read,
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(None),
                Err(e) => return Err(store_error(stream, ExpectedVersion::Any, e)),
            };
            loop {
                match read.next().await {
                    Ok(Some(resolved)) => {
                        if let Some(e) = &resolved.event
                            && e.id == event_id
                        {
                            return self.ours(e).map(Some);
                        }
                    }
                    Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => return Ok(None),
                    Err(e) => return Err(store_error(stream, ExpectedVersion::Any, e)),
                }
            }
        })
        .await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.bounded(stream, async {
            let options = ReadStreamOptions::default()
                .forwards()
                .position(StreamPosition::Position(from_version))
                .max_count(max_count);
            let mut read = match self
                .client
                .read_stream(self.on_server(stream), &options)
                .await
            {
                Ok(read) => read,
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(store_error(stream, ExpectedVersion::Any, e)),
            };
            let mut events = Vec::new();
            loop {
                match read.next().await {
                    Ok(Some(resolved)) => {
                        if let Some(e) = &resolved.event {
                            events.push(self.ours(e)?);
                        }
                    }
                    Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => return Ok(events),
                    Err(e) => return Err(store_error(stream, ExpectedVersion::Any, e)),
                }
            }
        })
        .await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // $all reads are inclusive of the start position: page until
        // `max_count` of ours are found or the log ends.
        let mut events = Vec::new();
        let mut from = after;
        loop {
            let page_size = max_count.saturating_sub(events.len()).max(1) + 1;
            let options = self.filtered(
                ReadAllOptions::default()
                    .forwards()
                    .position(from.map_or(StreamPosition::Start, |p| {
                        StreamPosition::Position(esdb_position(p))
                    }))
                    .max_count(page_size),
            );
            let page = self.read_all_page(&options).await?;
            let raw_count = page.len();
            let mut moved = false;
            for e in &page {
                let p = position(e.position);
                if after.is_some_and(|a| p <= a) || from.is_some_and(|f| p <= f) {
                    continue;
                }
                from = Some(p);
                moved = true;
                if self.is_ours(e) {
                    events.push(self.ours(e)?);
                    if events.len() == max_count {
                        return Ok(events);
                    }
                }
            }
            // A read can end (with OK) before the count asked for while
            // more is stored: the log ends only at a read that finds
            // nothing new.
            if raw_count == 0 || !moved {
                return Ok(events);
            }
        }
    }

    /// Follows the log by reading it (see the module's note on the client's
    /// subscriptions): a page at a time while there is more, then a read
    /// every 100 ms. An error is yielded once and the next read retries from
    /// the last event yielded, after a pause.
    fn subscribe_all(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let store = self.clone();
        futures::stream::unfold(
            (store, after, std::collections::VecDeque::new(), false),
            |(store, mut after, mut buffer, mut waited)| async move {
                loop {
                    if let Some(event) = buffer.pop_front() {
                        let event: RecordedEvent = event;
                        after = Some(event.position);
                        return Some((Ok(event), (store, after, buffer, false)));
                    }
                    if waited {
                        tokio::time::sleep(store.poll).await;
                    }
                    match store.read_all(after, FOLLOW_PAGE).await {
                        Ok(page) => {
                            waited = page.len() < FOLLOW_PAGE;
                            buffer.extend(page);
                        }
                        Err(e) => return Some((Err(e), (store, after, buffer, true))),
                    }
                }
            },
        )
        .boxed()
    }

    /// The last of our events: read backwards past the system events the
    /// server writes on its own (statistics, scavenges, epochs), a page at a
    /// time.
    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        const PAGE: usize = 200;
        let mut from = StreamPosition::End;
        loop {
            let options = self.filtered(
                ReadAllOptions::default()
                    .backwards()
                    .position(from)
                    .max_count(PAGE),
            );
            let page = self.read_all_page(&options).await?;
            let count = page.len();
            let mut last = None;
            for e in &page {
                if self.is_ours(e) {
                    return Ok(Some(position(e.position)));
                }
                last = Some(e.position);
            }
            match last {
                Some(p) if count == PAGE && StreamPosition::Position(p) != from => {
                    from = StreamPosition::Position(p);
                }
                _ => return Ok(None),
            }
        }
    }

    /// Created on first use: a `$metadata` event naming a random id in the
    /// identity stream, appended only if the stream does not exist, so two
    /// processes starting together agree on the first one written.
    async fn identity(&self) -> Result<String, StoreError> {
        self.server_version().await?;
        if let Some(id) = self.read_identity().await? {
            return Ok(id);
        }
        let metadata = IdentityMetadata {
            store_id: Uuid::new_v4(),
        };
        let event = EventData::json("$metadata", &metadata)
            .map_err(|e| StoreError::Backend(format!("identity cannot be encoded: {e}")))?;
        let options = AppendToStreamOptions::default().stream_state(StreamState::NoStream);
        let stream = self.identity_stream();
        match self
            .client
            .append_to_stream(stream.as_str(), &options, event)
            .await
        {
            Ok(_) | Err(kurrentdb::Error::WrongExpectedVersion { .. }) => {}
            Err(e) => return Err(store_error(&stream, ExpectedVersion::NoStream, e)),
        }
        self.read_identity().await?.ok_or_else(|| {
            StoreError::Backend(format!("{stream} holds no store id after creating it"))
        })
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
            recorded_at: None,
            request: None,
        }
    }

    fn raw<'a>(data: &'a Bytes, custom_metadata: &'a [u8]) -> Raw<'a> {
        Raw {
            stream: "member-1",
            id: Uuid::from_u128(7),
            revision: 4,
            event_type: "MemberJoined",
            data,
            custom_metadata,
            position: kurrentdb::Position {
                commit: 10,
                prepare: 9,
            },
            created_ticks: None,
            created: Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
        }
    }

    #[test]
    fn expected_versions_map_one_to_one() {
        assert_eq!(stream_state(ExpectedVersion::Any), StreamState::Any);
        assert_eq!(
            stream_state(ExpectedVersion::NoStream),
            StreamState::NoStream
        );
        assert_eq!(
            stream_state(ExpectedVersion::Exact(3)),
            StreamState::StreamRevision(3)
        );
    }

    #[test]
    fn our_metadata_uses_eventstoredb_keys() {
        let trace: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
        let metadata = CustomMetadata {
            correlation_id: Uuid::from_u128(1),
            causation_id: Uuid::from_u128(2),
            schema_version: 2,
            traceparent: Some(trace),
            actor: Some(Actor::system("notices")),
            recorded_at: None,
        };
        let json = serde_json::to_value(&metadata).unwrap();
        assert_eq!(json["$correlationId"], Uuid::from_u128(1).to_string());
        assert_eq!(json["$causationId"], Uuid::from_u128(2).to_string());
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["traceparent"], trace.to_string());
        assert_eq!(json["actor"], "system:notices");
        assert!(event_data(&new_event()).is_ok());
        let old: CustomMetadata = serde_json::from_value(serde_json::json!({
            "$correlationId": Uuid::from_u128(1), "$causationId": Uuid::from_u128(2), "schemaVersion": 1
        }))
        .unwrap();
        assert_eq!(
            (old.traceparent, old.actor),
            (None, None),
            "events written before traces and actors still read"
        );
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
        let data = Bytes::from_static(br#"{"memberId":"1"}"#);
        let mapped = recorded(&raw(&data, meta)).unwrap();
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
        let data = Bytes::from_static(b"{}");
        let mapped = recorded(&raw(&data, b"")).unwrap();
        assert_eq!(mapped.schema_version, 1);
        assert_eq!(mapped.metadata.correlation_id, Uuid::nil());
    }

    #[test]
    fn another_applications_event_with_metadata_not_ours_is_passed_on_without_it() {
        let data = Bytes::from_static(b"{}");
        let mut foreign = raw(&data, b"<xml/>");
        foreign.stream = "orders-17";
        foreign.event_type = "OrderPlaced";
        let mapped = recorded(&foreign).expect("not a stop");
        assert_eq!(mapped.stream, "orders-17");
        assert_eq!(mapped.metadata.correlation_id, Uuid::nil());
        let ours = raw(&data, b"<xml/>");
        assert!(matches!(recorded(&ours), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn unreadable_metadata_is_a_corrupt_event_naming_its_position() {
        let Err(StoreError::Corrupt {
            position,
            event_type,
            ..
        }) = recorded(&raw(&Bytes::from_static(b"{}"), b"{oops"))
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
        let e = kurrentdb::Error::WrongExpectedVersion {
            expected: StreamState::StreamRevision(1),
            current: kurrentdb::CurrentRevision::Current(4),
        };
        let mapped = store_error("member-1", ExpectedVersion::Exact(1), e);
        assert_eq!(
            mapped.to_string(),
            "wrong expected version on stream member-1: expected 1, actual 4"
        );
        let none = store_error(
            "member-2",
            ExpectedVersion::Exact(0),
            kurrentdb::Error::WrongExpectedVersion {
                expected: StreamState::StreamRevision(0),
                current: kurrentdb::CurrentRevision::NoStream,
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
                kurrentdb::Error::ConnectionClosed
            )
            .is_transient()
        );
        assert!(
            !store_error("s", ExpectedVersion::Any, kurrentdb::Error::AccessDenied).is_transient()
        );
    }

    #[test]
    fn a_malformed_url_is_a_configuration_error_that_hides_the_url() {
        for url in [
            "not a url",
            "http://admin:secret@host:2113",
            "esdb://admin:secret@host:notaport",
        ] {
            let Err(StoreError::Config(message)) = EsdbEventStore::parse(url) else {
                panic!("{url} should be refused");
            };
            assert!(message.contains("malformed EventStoreDB URL"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn recorded_times_keep_the_servers_ticks() {
        let fallback = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        // 2026-11-23T09:00:00.1234567Z in 100 ns ticks since 1970.
        let ticks = (fallback.timestamp() * 10_000_000 + 1_234_567).to_string();
        let at = recorded_at(Some(&ticks), fallback);
        assert_eq!(at.timestamp(), fallback.timestamp());
        assert_eq!(at.timestamp_subsec_nanos(), 123_456_700);
        assert_eq!(recorded_at(None, fallback), fallback);
        assert_eq!(recorded_at(Some("soon"), fallback), fallback);
    }

    #[test]
    fn a_deadline_a_cut_call_the_servers_timeout_or_its_error_leaves_the_append_outcome_unknown() {
        for e in [
            kurrentdb::Error::DeadlineExceeded,
            kurrentdb::Error::Grpc {
                code: tonic::Code::DeadlineExceeded,
                message: "late".into(),
            },
            kurrentdb::Error::Grpc {
                code: tonic::Code::Aborted,
                message: "Operation timed out".into(),
            },
            kurrentdb::Error::ServerError("status: Internal".into()),
        ] {
            let mapped = append_error("member-1", ExpectedVersion::Exact(1), e);
            assert!(matches!(mapped, StoreError::OutcomeUnknown(_)), "{mapped}");
            assert!(mapped.is_transient());
        }
        assert!(matches!(
            append_error(
                "member-1",
                ExpectedVersion::Exact(1),
                kurrentdb::Error::ConnectionClosed
            ),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn the_namespace_parameter_is_ours_and_the_rest_goes_to_the_client() {
        assert_eq!(
            split_namespace("esdb://h:2113?tls=false&namespace=test_1").unwrap(),
            (
                "esdb://h:2113?tls=false".to_owned(),
                Some("test_1".to_owned())
            )
        );
        assert_eq!(
            split_namespace("esdb://h:2113?namespace=a").unwrap(),
            ("esdb://h:2113".to_owned(), Some("a".to_owned()))
        );
        assert_eq!(
            split_namespace("esdb://h:2113?tls=false").unwrap(),
            ("esdb://h:2113?tls=false".to_owned(), None)
        );
        for bad in [
            "esdb://h?namespace=",
            "esdb://h?namespace=a.b",
            "esdb://h?namespace=$x",
        ] {
            assert!(
                matches!(split_namespace(bad), Err(StoreError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_our_identity_metadata_names_a_store() {
        let id = Uuid::from_u128(5);
        assert_eq!(
            identity_of(format!(r#"{{"mileageStoreId":"{id}"}}"#).as_bytes()),
            Some(format!("eventstoredb:{id}"))
        );
        assert_eq!(identity_of(br#"{"$maxAge":10}"#), None);
    }
}
