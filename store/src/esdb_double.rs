//! A wire-level stand-in for EventStoreDB (for tests of this and other
//! crates, behind the `testing` feature): the `Streams` gRPC service built
//! from the client's published `streams.proto` (see `build.rs`), holding
//! events in memory, with switches that make it misbehave the ways a real
//! cluster does (a read cut off, a read that ends early with OK, a
//! not-leader answer, an append that times out or never answers, a
//! retry answered without a position or dropped, checkpoints and caught-up messages between
//! events, system events of its own).
//!
//! It tests the adapter's handling of those answers, not EventStoreDB's
//! rules: the conformance suite must still pass against a real server.

#![allow(clippy::pedantic, clippy::result_large_err, unreachable_pub, dead_code)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt as _};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

/// The generated server side of `streams.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod proto {
    pub mod event_store {
        pub mod client {
            include!(concat!(env!("OUT_DIR"), "/event_store.client.rs"));
            pub mod streams {
                include!(concat!(env!("OUT_DIR"), "/event_store.client.streams.rs"));
            }
            pub mod server_features {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/event_store.client.server_features.rs"
                ));
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
}

use proto::event_store::client::{self as shared, server_features as features, streams as pb};

use crate::protocol_v2::kurrentdb::protocol::v2::streams as v2;

/// The server version the double reports unless told otherwise: one with
/// the atomic multi-stream append (`AppendSession`, 25.1 and later).
pub const VERSION: &str = "25.1.0";

/// A version before the atomic multi-stream append: the double answers
/// `AppendSession` `UNIMPLEMENTED`, as such a server does, and the adapter
/// appends a command's parts in order.
pub const VERSION_BEFORE_SESSIONS: &str = "24.10.0";

/// Distance between consecutive positions: the server's are byte offsets,
/// so a lag computed from them would be 100 times the events.
pub const STRIDE: u64 = 100;

/// One stored event.
#[derive(Clone)]
pub struct Stored {
    pub stream: String,
    pub revision: u64,
    pub position: u64,
    pub id: uuid::Uuid,
    pub event_type: String,
    pub data: Vec<u8>,
    pub custom_metadata: Vec<u8>,
    pub created_ticks: i64,
}

/// How the double misbehaves; all off by default.
#[derive(Default, Clone)]
pub struct Behaviour {
    /// Reads of `$all` fail with UNAVAILABLE after this many events (once
    /// each time it is set).
    pub cut_read_after: Option<usize>,
    /// Reads of `$all` end with OK after this many events although more
    /// were asked for and exist.
    pub end_reads_after: Option<usize>,
    /// Appends and reads answer not-leader, naming this leader (a
    /// follower does both: the client asks for the leader on each call).
    pub not_leader: Option<(String, u16)>,
    /// Appends are stored, then answered DEADLINE_EXCEEDED.
    pub store_then_deadline: bool,
    /// Appends are stored, then answered ABORTED "Operation timed out":
    /// the server's own commit timeout (`RequestManagerBase.cs`, answered
    /// by `Streams.Append.cs`), after which the write may well be there.
    pub store_then_commit_timeout: bool,
    /// Appends are never answered (nor stored).
    pub never_answer: bool,
    /// How many recently written event ids the server remembers for
    /// recognising a retry under `Any` (`None`: [`RECENT_IDS`]).
    pub recent_ids: Option<usize>,
    /// The version the server reports (`None`: [`VERSION`]); the empty
    /// string answers as a server without the features service (older
    /// than 21.6) does: `UNIMPLEMENTED`.
    pub version: Option<String>,
    /// Every call is refused as access denied (`PERMISSION_DENIED`,
    /// `exception: access-denied`, `RpcExceptions.AccessDenied`): the
    /// configured user may not do this.
    pub access_denied: bool,
    /// Reads are accepted and then send nothing, ever (a hung server or
    /// connection that keepalives alone would not notice).
    pub hang_reads: bool,
    /// Appends wait this long before they are decided, as behind a lock
    /// another writer holds.
    pub stall_appends: Option<std::time::Duration>,
    /// A recognised retry is answered without a position: what the server
    /// does when the retried events can no longer be read (scavenged or
    /// truncated; `IndexWriter.CheckCommit` finds log position -1, which
    /// `Streams.Append.cs` answers as `NoPosition`).
    pub retries_unreadable: bool,
    /// A recognised retry is dropped, never answered: what the server does
    /// when the original write is not yet replicated (`IdempotentNotReady`
    /// in `IndexWriter.CheckCommit`, dropped by `StorageWriterService.cs`'s
    /// `VerifyCommitChecks`); the caller sees its deadline pass.
    pub retries_not_ready: bool,
    /// Reads send a checkpoint and a caught-up message before each event.
    pub interleave: bool,
    /// Appends to streams whose name starts with this are refused with
    /// UNAVAILABLE (nothing stored): a multi-stream append, which this
    /// store makes part by part, stops after its earlier parts.
    pub refuse_streams_starting: Option<String>,
}

#[derive(Default)]
struct State {
    log: Vec<Stored>,
    behaviour: Behaviour,
    appends: usize,
    /// System events (types starting with `$`) sent by reads so far.
    system_sent: usize,
    /// Streams tombstoned, never to be written again.
    deleted: std::collections::HashSet<String>,
    /// Where each stream's events are in `log`, in order.
    streams: HashMap<String, Vec<usize>>,
    /// Ids of recently written events, newest last, with their stream
    /// and revision: the server's bounded cache of committed events
    /// (`IndexWriter._committedEvents`), the only place a retry under
    /// `Any` is recognised.
    recent: std::collections::VecDeque<Recent>,
}

/// A recently written event, as the recent-id cache holds it.
struct Recent {
    id: uuid::Uuid,
    stream: String,
    revision: u64,
    position: u64,
}

/// Events the double's recent-id cache holds unless told otherwise.
pub const RECENT_IDS: usize = 100_000;

/// An append's expectation of its stream, from either protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Any,
    NoStream,
    Exists,
    At(u64),
}

impl Expect {
    /// The v2 protocol's expected revision (`ExpectedRevisionConstants`:
    /// -1 no stream, -2 any, -4 exists; absent: any).
    fn from_v2(expected: Option<i64>) -> Self {
        match expected {
            Some(-1) => Self::NoStream,
            Some(-4) => Self::Exists,
            Some(r) if r >= 0 => Self::At(r as u64),
            _ => Self::Any,
        }
    }

    fn from_v1(expected: Option<&pb::append_req::options::ExpectedStreamRevision>) -> Self {
        use pb::append_req::options::ExpectedStreamRevision as E;
        match expected {
            Some(E::Revision(r)) => Self::At(*r),
            Some(E::NoStream(_)) => Self::NoStream,
            Some(E::StreamExists(_)) => Self::Exists,
            Some(E::Any(_)) | None => Self::Any,
        }
    }
}

/// What the server decides for an append (`IndexWriter.CheckCommit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Write the events after `current`.
    Write { current: Option<u64> },
    /// A retry of events stored: the last at revision `last`, `position`.
    Retry { last: u64, position: u64 },
    /// The expectation is not met, or the ids match only in part (the
    /// server's `CorruptedIdempotency`, answered as this).
    Wrong { current: Option<u64> },
    /// The stream is tombstoned.
    Deleted,
}

/// An event to write.
struct Record {
    id: uuid::Uuid,
    event_type: String,
    data: Vec<u8>,
    custom_metadata: Vec<u8>,
}

impl State {
    /// The stream's events, in order.
    fn stream<'a>(&'a self, stream: &str) -> impl DoubleEndedIterator<Item = &'a Stored> + 'a {
        self.streams
            .get(stream)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|&i| &self.log[i])
    }

    /// The stream's last revision, `None` when it has no events.
    fn current(&self, stream: &str) -> Option<u64> {
        self.stream(stream).map(|e| e.revision).max()
    }

    /// The server's decision for appending `ids` to `stream` under
    /// `expect`, following `IndexWriter.CheckCommit`: under an exact
    /// expectation behind the stream, the same ids right after it are a
    /// retry (in part: a conflict); under `Any` or `Exists`, ids the
    /// recent-id cache holds for this stream are a retry.
    fn check(&self, stream: &str, expect: Expect, ids: &[uuid::Uuid]) -> Check {
        if self.deleted.contains(stream) {
            return Check::Deleted;
        }
        let current = self.current(stream);
        let retry = |stored: Vec<(u64, u64)>| {
            let (last, position) = stored.last().copied().unwrap_or_default();
            Check::Retry { last, position }
        };
        match expect {
            Expect::Any | Expect::Exists => {
                if expect == Expect::Exists && current.is_none() {
                    return Check::Wrong { current };
                }
                let found: Vec<(u64, u64)> = ids
                    .iter()
                    .map_while(|id| {
                        self.recent
                            .iter()
                            .find(|r| r.id == *id && r.stream == stream)
                            .map(|r| (r.revision, r.position))
                    })
                    .collect();
                match found.len() {
                    0 => Check::Write { current },
                    n if n == ids.len() => retry(found),
                    _ => Check::Wrong { current },
                }
            }
            Expect::NoStream | Expect::At(_) => {
                let after = match expect {
                    Expect::At(r) => Some(r),
                    _ => None,
                };
                if after == current {
                    return Check::Write { current };
                }
                if after.map_or(-1, |r| r as i128) > current.map_or(-1, |r| r as i128) {
                    return Check::Wrong { current };
                }
                let first = after.map_or(0, |r| r + 1);
                let stored: Vec<&Stored> = self
                    .stream(stream)
                    .filter(|e| e.revision >= first)
                    .take(ids.len())
                    .collect();
                let matching = stored
                    .iter()
                    .zip(ids)
                    .take_while(|(e, id)| e.id == **id)
                    .count();
                if ids.is_empty() || matching == 0 || matching < ids.len() {
                    // The first differs: a plain conflict; a later one: the
                    // server's `CorruptedIdempotency`, answered alike.
                    Check::Wrong { current }
                } else {
                    retry(stored.iter().map(|e| (e.revision, e.position)).collect())
                }
            }
        }
    }

    /// Writes `records` after `current`, remembering their ids; answers
    /// the last revision and its position.
    fn write(
        &mut self,
        stream: &str,
        current: Option<u64>,
        records: impl IntoIterator<Item = Record>,
    ) -> (u64, u64) {
        let capacity = self.behaviour.recent_ids.unwrap_or(RECENT_IDS);
        let mut revision = current.map_or(0, |r| r + 1);
        let mut position = 0;
        for record in records {
            position = push(
                self,
                stream.to_owned(),
                revision,
                record.id,
                record.event_type,
                record.data,
                record.custom_metadata,
            );
            self.recent.push_back(Recent {
                id: record.id,
                stream: stream.to_owned(),
                revision,
                position,
            });
            while self.recent.len() > capacity {
                self.recent.pop_front();
            }
            revision += 1;
        }
        (revision - 1, position)
    }
}

/// The running double. Dropping it leaves the server running until the
/// test's runtime ends.
#[derive(Clone)]
pub struct Double {
    state: Arc<Mutex<State>>,
    pub port: u16,
}

impl Double {
    /// Starts a double on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let double = Self {
            state: Arc::default(),
            port,
        };
        let service = pb::streams_server::StreamsServer::new(double.clone());
        let sessions = v2::streams_service_server::StreamsServiceServer::new(double.clone());
        let features = features::server_features_server::ServerFeaturesServer::new(double.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .add_service(sessions)
                .add_service(features)
                .serve_with_incoming(TcpListenerStream::new(listener).map(|socket| {
                    // As a server's sockets are: small answers go out at
                    // once, not after the peer's delayed acknowledgement.
                    if let Ok(socket) = &socket {
                        let _ = socket.set_nodelay(true);
                    }
                    socket
                }))
                .await
                .expect("double serves");
        });
        double
    }

    /// The connection string of this double.
    pub fn url(&self) -> String {
        format!("esdb://127.0.0.1:{}?tls=false", self.port)
    }

    /// Changes how it behaves from now on.
    pub fn behave(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.state.lock().unwrap().behaviour);
    }

    /// Appends calls received so far.
    pub fn appends(&self) -> usize {
        self.state.lock().unwrap().appends
    }

    /// System events (types starting with `$`) sent by reads so far:
    /// none when reads are filtered by the server.
    pub fn system_events_sent(&self) -> usize {
        self.state.lock().unwrap().system_sent
    }

    /// Every stored event, in order.
    pub fn log(&self) -> Vec<Stored> {
        self.state.lock().unwrap().log.clone()
    }

    /// Tombstones `stream`, as an operator's `$tombstone` would: reading
    /// or appending to it is refused as deleted, while its events stay in
    /// `$all` (until a scavenge) and are followed there by the server's
    /// `$streamDeleted` event.
    pub fn tombstone(&self, stream: &str) {
        let mut state = self.state.lock().unwrap();
        state.deleted.insert(stream.to_owned());
        push(
            &mut state,
            stream.to_owned(),
            i64::MAX as u64,
            uuid::Uuid::new_v4(),
            "$streamDeleted".into(),
            Vec::new(),
            Vec::new(),
        );
    }

    /// Writes a system event of the server's own (statistics), as a real
    /// server does every few seconds.
    pub fn write_system_event(&self) {
        let mut state = self.state.lock().unwrap();
        let stream = "$stats-127.0.0.1:2113".to_owned();
        let revision = state.stream(&stream).count() as u64;
        push(
            &mut state,
            stream,
            revision,
            uuid::Uuid::new_v4(),
            "$statsCollected".into(),
            b"{}".to_vec(),
            Vec::new(),
        );
    }
}

fn push(
    state: &mut State,
    stream: String,
    revision: u64,
    id: uuid::Uuid,
    event_type: String,
    data: Vec<u8>,
    custom_metadata: Vec<u8>,
) -> u64 {
    let position = (state.log.len() as u64 + 1) * STRIDE;
    let created_ticks = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) / 100;
    state
        .streams
        .entry(stream.clone())
        .or_default()
        .push(state.log.len());
    state.log.push(Stored {
        stream,
        revision,
        position,
        id,
        event_type,
        data,
        custom_metadata,
        created_ticks,
    });
    position
}

fn uuid_of(id: Option<shared::Uuid>) -> Result<uuid::Uuid, Status> {
    match id.and_then(|u| u.value) {
        Some(shared::uuid::Value::Structured(s)) => {
            let bits = ((s.most_significant_bits as u64 as u128) << 64)
                | (s.least_significant_bits as u64 as u128);
            Ok(uuid::Uuid::from_u128(bits))
        }
        Some(shared::uuid::Value::String(s)) => s
            .parse()
            .map_err(|_| Status::invalid_argument("bad event id")),
        None => Err(Status::invalid_argument("an event without an id")),
    }
}

fn proto_uuid(id: uuid::Uuid) -> shared::Uuid {
    let bits = id.as_u128();
    shared::Uuid {
        value: Some(shared::uuid::Value::Structured(shared::uuid::Structured {
            most_significant_bits: (bits >> 64) as u64 as i64,
            least_significant_bits: bits as u64 as i64,
        })),
    }
}

fn stream_name(id: Option<shared::StreamIdentifier>) -> String {
    String::from_utf8_lossy(&id.map(|s| s.stream_name).unwrap_or_default()).into_owned()
}

fn event_message(e: &Stored) -> pb::ReadResp {
    let mut metadata = HashMap::new();
    metadata.insert("type".to_owned(), e.event_type.clone());
    metadata.insert("content-type".to_owned(), "application/json".to_owned());
    metadata.insert("created".to_owned(), e.created_ticks.to_string());
    pb::ReadResp {
        content: Some(pb::read_resp::Content::Event(pb::read_resp::ReadEvent {
            event: Some(pb::read_resp::read_event::RecordedEvent {
                id: Some(proto_uuid(e.id)),
                stream_identifier: Some(shared::StreamIdentifier {
                    stream_name: e.stream.clone().into_bytes(),
                }),
                stream_revision: e.revision,
                prepare_position: e.position,
                commit_position: e.position,
                metadata,
                custom_metadata: e.custom_metadata.clone(),
                data: e.data.clone(),
            }),
            link: None,
            position: Some(pb::read_resp::read_event::Position::CommitPosition(
                e.position,
            )),
        })),
    }
}

fn checkpoint(position: u64) -> pb::ReadResp {
    pb::ReadResp {
        content: Some(pb::read_resp::Content::Checkpoint(
            pb::read_resp::Checkpoint {
                commit_position: position,
                prepare_position: position,
                timestamp: None,
            },
        )),
    }
}

fn caught_up() -> pb::ReadResp {
    pb::ReadResp {
        content: Some(pb::read_resp::Content::CaughtUp(pb::read_resp::CaughtUp {
            timestamp: None,
            stream_revision: None,
            position: None,
        })),
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadResp, Status>> + Send>>;

#[tonic::async_trait]
impl pb::streams_server::Streams for Double {
    type ReadStream = ReadStream;
    type BatchAppendStream =
        Pin<Box<dyn Stream<Item = Result<pb::BatchAppendResp, Status>> + Send>>;

    async fn read(&self, request: Request<pb::ReadReq>) -> Result<Response<ReadStream>, Status> {
        use pb::read_req::options::{self, AllOptions, StreamOptions};
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("no options"))?;
        let backwards = options.read_direction == options::ReadDirection::Backwards as i32;
        let filter = Filter::from_options(options.filter_option.as_ref())?;
        let count = match options.count_option {
            Some(options::CountOption::Count(n)) => n as usize,
            _ => {
                return Err(Status::unimplemented(
                    "the double serves counted reads only",
                ));
            }
        };
        let mut state = self.state.lock().unwrap();
        let behaviour = state.behaviour.clone();
        if let Some(leader) = &behaviour.not_leader {
            return Err(not_leader(leader));
        }
        if behaviour.access_denied {
            return Err(access_denied());
        }
        if behaviour.hang_reads {
            return Ok(Response::new(Box::pin(futures::stream::pending())));
        }
        let mut messages: Vec<Result<pb::ReadResp, Status>> = Vec::new();
        let selected: Vec<Stored> = match options.stream_option {
            Some(options::StreamOption::Stream(StreamOptions {
                stream_identifier,
                revision_option,
            })) => {
                let name = stream_name(stream_identifier);
                if state.deleted.contains(&name) {
                    return Err(stream_deleted(&name));
                }
                let events: Vec<&Stored> = state.stream(&name).collect();
                if events.is_empty() {
                    messages.push(Ok(pb::ReadResp {
                        content: Some(pb::read_resp::Content::StreamNotFound(
                            pb::read_resp::StreamNotFound {
                                stream_identifier: Some(shared::StreamIdentifier {
                                    stream_name: name.into_bytes(),
                                }),
                            },
                        )),
                    }));
                    Vec::new()
                } else {
                    use options::stream_options::RevisionOption;
                    let selected: Vec<&Stored> = match (revision_option, backwards) {
                        (Some(RevisionOption::End(_)), true) => events.into_iter().rev().collect(),
                        // Forwards from the end: nothing is after it.
                        (Some(RevisionOption::End(_)), false) => Vec::new(),
                        (Some(RevisionOption::Revision(r)), true) => events
                            .into_iter()
                            .rev()
                            .filter(|e| e.revision <= r)
                            .collect(),
                        (Some(RevisionOption::Revision(r)), false) => {
                            events.into_iter().filter(|e| e.revision >= r).collect()
                        }
                        (_, false) => events,
                        (_, true) => events.into_iter().rev().collect(),
                    };
                    selected.into_iter().take(count).cloned().collect()
                }
            }
            Some(options::StreamOption::All(AllOptions { all_option })) => {
                use options::all_options::AllOption;
                // Positions are (index + 1) * STRIDE: where a position
                // falls in the log, without a scan.
                let log = &state.log;
                let at = |p: u64| {
                    usize::try_from(p.div_ceil(STRIDE).saturating_sub(1))
                        .unwrap_or(usize::MAX)
                        .min(log.len())
                };
                let selected: Box<dyn Iterator<Item = &Stored>> = match (all_option, backwards) {
                    (Some(AllOption::Position(p)), false) => Box::new(
                        log[at(p.commit_position)..]
                            .iter()
                            .filter(move |e| e.position >= p.commit_position),
                    ),
                    (Some(AllOption::Position(p)), true) => Box::new(
                        log[..at(p.commit_position)]
                            .iter()
                            .rev()
                            .filter(move |e| e.position < p.commit_position),
                    ),
                    // Forwards from the end: nothing is after it.
                    (Some(AllOption::End(_)), false) => Box::new(std::iter::empty()),
                    (_, false) => Box::new(log.iter()),
                    (_, true) => Box::new(log.iter().rev()),
                };
                let mut selected: Vec<Stored> = selected
                    .filter(|e| filter.passes(e))
                    .take(count)
                    .cloned()
                    .collect();
                if let Some(n) = behaviour.end_reads_after {
                    selected.truncate(n);
                }
                if let Some(n) = behaviour.cut_read_after {
                    selected.truncate(n);
                    state.behaviour.cut_read_after = None;
                    state.system_sent += system_count(&selected);
                    let messages: Vec<Result<pb::ReadResp, Status>> = selected
                        .iter()
                        .map(|e| Ok(event_message(e)))
                        .chain(std::iter::once(Err(Status::unavailable(
                            "the double cut the read off",
                        ))))
                        .collect();
                    return Ok(Response::new(Box::pin(futures::stream::iter(messages))));
                }
                selected
            }
            None => return Err(Status::invalid_argument("no stream option")),
        };
        state.system_sent += system_count(&selected);
        for e in &selected {
            if behaviour.interleave {
                messages.push(Ok(checkpoint(e.position)));
                messages.push(Ok(caught_up()));
            }
            messages.push(Ok(event_message(e)));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }

    async fn append(
        &self,
        request: Request<Streaming<pb::AppendReq>>,
    ) -> Result<Response<pb::AppendResp>, Status> {
        use pb::append_req::Content;
        let mut incoming = request.into_inner();
        let mut stream = String::new();
        let mut expected = None;
        let mut proposed = Vec::new();
        while let Some(message) = incoming.message().await? {
            match message.content {
                Some(Content::Options(o)) => {
                    stream = stream_name(o.stream_identifier);
                    expected = o.expected_stream_revision;
                }
                Some(Content::ProposedMessage(m)) => proposed.push(m),
                None => {}
            }
        }
        let behaviour = {
            let mut state = self.state.lock().unwrap();
            state.appends += 1;
            state.behaviour.clone()
        };
        misbehave(&behaviour, &stream).await?;
        let ids = proposed
            .iter()
            .map(|m| uuid_of(m.id.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let expect = Expect::from_v1(expected.as_ref());
        let decided = {
            let mut state = self.state.lock().unwrap();
            match state.check(&stream, expect, &ids) {
                Check::Write { current } => {
                    let records = proposed.into_iter().zip(ids).map(|(m, id)| Record {
                        id,
                        event_type: m.metadata.get("type").cloned().unwrap_or_default(),
                        data: m.data,
                        custom_metadata: m.custom_metadata,
                    });
                    let (last, position) = state.write(&stream, current, records);
                    Ok((last, position))
                }
                other => Err(other),
            }
        };
        match decided {
            Ok((last, position)) => {
                if behaviour.store_then_deadline {
                    return Err(Status::deadline_exceeded(
                        "the double let the deadline pass",
                    ));
                }
                if behaviour.store_then_commit_timeout {
                    return Err(Status::aborted("Operation timed out"));
                }
                Ok(appended(last, position_at(position)))
            }
            // A retry is answered as a success at the last of the stored
            // events, with its position (the server's `AlreadyCommitted`,
            // `RequestManagerBase.ReturnCommitAt`): alike to a first
            // write's answer.
            Err(Check::Retry { last, position }) => {
                if behaviour.retries_not_ready {
                    std::future::pending::<()>().await;
                }
                if behaviour.retries_unreadable {
                    let none =
                        pb::append_resp::success::PositionOption::NoPosition(shared::Empty {});
                    return Ok(appended(last, none));
                }
                Ok(appended(last, position_at(position)))
            }
            Err(Check::Wrong { current }) | Err(Check::Write { current }) => {
                Ok(wrong_expected_version(current, expected))
            }
            Err(Check::Deleted) => Err(stream_deleted(&stream)),
        }
    }

    async fn delete(&self, _: Request<pb::DeleteReq>) -> Result<Response<pb::DeleteResp>, Status> {
        Err(Status::unimplemented("not in the double"))
    }

    async fn tombstone(
        &self,
        _: Request<pb::TombstoneReq>,
    ) -> Result<Response<pb::TombstoneResp>, Status> {
        Err(Status::unimplemented("not in the double"))
    }

    async fn batch_append(
        &self,
        _: Request<Streaming<pb::BatchAppendReq>>,
    ) -> Result<Response<Self::BatchAppendStream>, Status> {
        Err(Status::unimplemented("not in the double"))
    }
}

#[tonic::async_trait]
impl features::server_features_server::ServerFeatures for Double {
    async fn get_supported_methods(
        &self,
        _: Request<shared::Empty>,
    ) -> Result<Response<features::SupportedMethods>, Status> {
        let version = self.state.lock().unwrap().behaviour.version.clone();
        let version = version.unwrap_or_else(|| VERSION.to_owned());
        if version.is_empty() {
            return Err(Status::unimplemented("no server features before 21.6"));
        }
        let method = |name: &str| features::SupportedMethod {
            method_name: name.to_owned(),
            service_name: "event_store.client.streams.streams".to_owned(),
            features: Vec::new(),
        };
        Ok(Response::new(features::SupportedMethods {
            methods: vec![method("read"), method("append")],
            event_store_server_version: version,
        }))
    }
}

#[tonic::async_trait]
impl v2::streams_service_server::StreamsService for Double {
    /// `AppendSession` as `StreamsService.cs` of 25.1 answers it: every
    /// part checked as one write (`StorageWriterService.VerifyCommitChecks`)
    /// and written all together, or none.
    async fn append_session(
        &self,
        request: Request<Streaming<v2::AppendRequest>>,
    ) -> Result<Response<v2::AppendSessionResponse>, Status> {
        let behaviour = self.state.lock().unwrap().behaviour.clone();
        if !sessions_served(&behaviour) {
            return Err(Status::unimplemented("no AppendSession before 25.1"));
        }
        let mut incoming = request.into_inner();
        let mut requests: Vec<v2::AppendRequest> = Vec::new();
        while let Some(request) = incoming.message().await? {
            if requests
                .iter()
                .any(|r| r.stream.eq_ignore_ascii_case(&request.stream))
            {
                return Err(Status::aborted(format!(
                    "Stream '{}' is already part of this append session.",
                    request.stream
                )));
            }
            requests.push(request);
        }
        if requests.is_empty() {
            return Err(Status::failed_precondition("no append requests"));
        }
        self.state.lock().unwrap().appends += 1;
        for request in &requests {
            misbehave_v2(&behaviour, &request.stream).await?;
        }
        let decided = self.decide_session(&requests)?;
        if let SessionAnswer::Retry(_) = &decided {
            if behaviour.retries_not_ready {
                std::future::pending::<()>().await;
            }
        } else if behaviour.store_then_deadline {
            return Err(Status::deadline_exceeded(
                "the double let the deadline pass",
            ));
        } else if behaviour.store_then_commit_timeout {
            return Err(Status::aborted("Operation timed out"));
        }
        let (SessionAnswer::Written(answer) | SessionAnswer::Retry(answer)) = decided;
        Ok(Response::new(answer))
    }
}

/// A session's answer: written now, or a retry of one written before.
enum SessionAnswer {
    Written(v2::AppendSessionResponse),
    Retry(v2::AppendSessionResponse),
}

impl Double {
    /// Checks every part of a session under one lock and writes them all,
    /// or answers why not.
    fn decide_session(&self, requests: &[v2::AppendRequest]) -> Result<SessionAnswer, Status> {
        let mut state = self.state.lock().unwrap();
        let mut checks = Vec::new();
        for request in requests {
            let ids = request
                .records
                .iter()
                .map(|r| {
                    r.record_id
                        .as_deref()
                        .and_then(|id| id.parse().ok())
                        .ok_or_else(|| {
                            Status::invalid_argument(
                                "Record ID must be a valid and non-empty UUID.",
                            )
                        })
                })
                .collect::<Result<Vec<uuid::Uuid>, _>>()?;
            let expect = Expect::from_v2(request.expected_revision);
            checks.push(state.check(&request.stream, expect, &ids));
        }
        if let Some(index) = checks.iter().position(|c| *c == Check::Deleted) {
            return Err(session_error(
                tonic::Code::FailedPrecondition,
                "the stream has been tombstoned",
                "kurrentdb.protocol.v2.streams.errors.StreamTombstonedErrorDetails",
                v2::errors::StreamTombstonedErrorDetails {
                    stream: requests[index].stream.clone(),
                }
                .encode_to_vec(),
            ));
        }
        let retries = checks
            .iter()
            .filter(|c| matches!(c, Check::Retry { .. }))
            .count();
        if retries == checks.len() {
            let mut position = 0;
            let output = requests
                .iter()
                .zip(&checks)
                .map(|(request, check)| {
                    let Check::Retry { last, position: at } = *check else {
                        unreachable!("all retries")
                    };
                    position = position.max(at);
                    v2::AppendResponse {
                        stream: request.stream.clone(),
                        stream_revision: last as i64,
                        position: None,
                    }
                })
                .collect();
            return Ok(SessionAnswer::Retry(v2::AppendSessionResponse {
                output,
                position: position as i64,
            }));
        }
        if retries > 0 {
            // Part a retry, part not: `VerifyCommitChecks` answers a wrong
            // expected version without naming a stream, and 25.1's
            // `MapToError` then fails reading the stream it names.
            return Err(Status::internal("Exception was thrown by handler."));
        }
        if let Some(index) = checks.iter().position(|c| matches!(c, Check::Wrong { .. })) {
            let Check::Wrong { current } = checks[index] else {
                unreachable!("found as wrong")
            };
            let request = &requests[index];
            return Err(session_error(
                tonic::Code::FailedPrecondition,
                "Append failed due to a revision conflict",
                "kurrentdb.protocol.v2.streams.errors.StreamRevisionConflictErrorDetails",
                v2::errors::StreamRevisionConflictErrorDetails {
                    stream: request.stream.clone(),
                    expected_revision: request.expected_revision.unwrap_or(-2),
                    actual_revision: current.map_or(-1, |r| r as i64),
                }
                .encode_to_vec(),
            ));
        }
        let mut position = 0;
        let mut output = Vec::new();
        for (request, check) in requests.iter().zip(checks) {
            let Check::Write { current } = check else {
                unreachable!("every other answer returned above")
            };
            let records = request.records.iter().map(|r| Record {
                id: r
                    .record_id
                    .as_deref()
                    .and_then(|id| id.parse().ok())
                    .unwrap_or_default(),
                event_type: r
                    .schema
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                data: r.data.clone(),
                custom_metadata: synthesized_metadata(r),
            });
            let (last, at) = state.write(&request.stream, current, records);
            position = at;
            output.push(v2::AppendResponse {
                stream: request.stream.clone(),
                stream_revision: last as i64,
                position: None,
            });
        }
        Ok(SessionAnswer::Written(v2::AppendSessionResponse {
            output,
            position: position as i64,
        }))
    }
}

/// Whether the version the double reports has `AppendSession`.
fn sessions_served(behaviour: &Behaviour) -> bool {
    let version = behaviour.version.as_deref().unwrap_or(VERSION);
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (25, 1)
}

/// The JSON metadata a v1 read returns for a record appended with
/// properties (`EventRecord.SynthesizeMetadataFromProperties`): the
/// properties, the schema's name and, for JSON, its format. Whole numbers
/// print as integers, as the server's JSON formatter prints them.
fn synthesized_metadata(record: &v2::AppendRecord) -> Vec<u8> {
    fn json(value: &prost_types::Value) -> serde_json::Value {
        use prost_types::value::Kind;
        match &value.kind {
            Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
            Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 1e15 => {
                serde_json::Value::from(*n as i64)
            }
            Some(Kind::NumberValue(n)) => serde_json::Value::from(*n),
            Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
            Some(Kind::ListValue(l)) => l.values.iter().map(json).collect(),
            Some(Kind::StructValue(s)) => {
                s.fields.iter().map(|(k, v)| (k.clone(), json(v))).collect()
            }
            Some(Kind::NullValue(_)) | None => serde_json::Value::Null,
        }
    }
    let mut map: serde_json::Map<String, serde_json::Value> = record
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), json(v)))
        .collect();
    let schema = record.schema.clone().unwrap_or_default();
    map.insert("$schema.name".into(), schema.name.into());
    if schema.format == v2::SchemaFormat::Json as i32 {
        map.insert("$schema.format".into(), "Json".into());
    }
    serde_json::to_vec(&map).unwrap_or_default()
}

/// An error answer with one detail, as `RpcExceptions.FromError` builds it
/// (a `google.rpc.Status` in the trailers).
fn session_error(code: tonic::Code, message: &str, detail: &str, value: Vec<u8>) -> Status {
    let details = crate::protocol_v2::google::rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: vec![prost_types::Any {
            type_url: format!("type.googleapis.com/{detail}"),
            value,
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

/// What `behaviour` makes of a session's part: as [`misbehave`], with the
/// v2 protocol's not-leader answer.
async fn misbehave_v2(behaviour: &Behaviour, stream: &str) -> Result<(), Status> {
    if let Some((host, port)) = &behaviour.not_leader {
        use crate::protocol_v2::kurrent::rpc::{
            NotLeaderNodeErrorDetails, not_leader_node_error_details::NodeInfo,
        };
        let details = NotLeaderNodeErrorDetails {
            current_leader: Some(NodeInfo {
                host: host.clone(),
                port: i32::from(*port),
                node_id: Some(uuid::Uuid::nil().to_string()),
            }),
        };
        return Err(session_error(
            tonic::Code::FailedPrecondition,
            "The server is not the leader node",
            "kurrent.rpc.NotLeaderNodeErrorDetails",
            details.encode_to_vec(),
        ));
    }
    misbehave(behaviour, stream).await
}

/// What `behaviour` makes of an append to `stream` before it is looked at:
/// no answer ever, a stall, a refusal, or a not-leader redirect.
async fn misbehave(behaviour: &Behaviour, stream: &str) -> Result<(), Status> {
    if behaviour.never_answer {
        std::future::pending::<()>().await;
    }
    if let Some(stall) = behaviour.stall_appends {
        tokio::time::sleep(stall).await;
    }
    if behaviour
        .refuse_streams_starting
        .as_deref()
        .is_some_and(|prefix| stream.starts_with(prefix))
    {
        return Err(Status::unavailable(
            "the double refuses appends to this stream",
        ));
    }
    if let Some(leader) = &behaviour.not_leader {
        return Err(not_leader(leader));
    }
    if behaviour.access_denied {
        return Err(access_denied());
    }
    Ok(())
}

fn system_count(events: &[Stored]) -> usize {
    events
        .iter()
        .filter(|e| e.event_type.starts_with('$'))
        .count()
}

/// A read's server-side filter on `$all` (`Streams.Read.cs`,
/// `ConvertToEventFilter`): by event type or stream name, a regex or any
/// of some prefixes.
enum Filter {
    None,
    EventType(Match),
    Stream(Match),
}

enum Match {
    Regex(regex::Regex),
    Prefixes(Vec<String>),
}

impl Match {
    fn from_expression(
        e: &pb::read_req::options::filter_options::Expression,
    ) -> Result<Self, Status> {
        if e.regex.is_empty() {
            return Ok(Self::Prefixes(e.prefix.clone()));
        }
        regex::Regex::new(&e.regex)
            .map(Self::Regex)
            .map_err(|_| Status::invalid_argument("a filter's regex does not parse"))
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Regex(regex) => regex.is_match(value),
            Self::Prefixes(prefixes) => prefixes.iter().any(|p| value.starts_with(p.as_str())),
        }
    }
}

impl Filter {
    fn from_options(option: Option<&pb::read_req::options::FilterOption>) -> Result<Self, Status> {
        use pb::read_req::options::{FilterOption, filter_options};
        match option {
            Some(FilterOption::Filter(f)) => match &f.filter {
                Some(filter_options::Filter::EventType(e)) => {
                    Ok(Self::EventType(Match::from_expression(e)?))
                }
                Some(filter_options::Filter::StreamIdentifier(e)) => {
                    Ok(Self::Stream(Match::from_expression(e)?))
                }
                None => Err(Status::invalid_argument("a filter without a kind")),
            },
            _ => Ok(Self::None),
        }
    }

    fn passes(&self, e: &Stored) -> bool {
        match self {
            Self::None => true,
            Self::EventType(m) => m.matches(&e.event_type),
            Self::Stream(m) => m.matches(&e.stream),
        }
    }
}

/// The server's answer for a tombstoned stream (`RpcExceptions.StreamDeleted`).
fn stream_deleted(stream: &str) -> Status {
    let mut status = Status::failed_precondition(format!("Event stream '{stream}' is deleted."));
    let metadata = status.metadata_mut();
    metadata.insert("exception", "stream-deleted".parse().unwrap());
    if let Ok(name) = stream.parse() {
        metadata.insert("stream-name", name);
    }
    status
}

/// The server's answer to a call the user may not make
/// (`RpcExceptions.AccessDenied`).
fn access_denied() -> Status {
    let mut status = Status::permission_denied("Access Denied");
    status
        .metadata_mut()
        .insert("exception", "access-denied".parse().unwrap());
    status
}

/// The server's not-leader answer, naming the leader.
fn not_leader((host, port): &(String, u16)) -> Status {
    let mut status = Status::not_found("not leader");
    let metadata = status.metadata_mut();
    metadata.insert("exception", "not-leader".parse().unwrap());
    metadata.insert("leader-endpoint-host", host.parse().unwrap());
    metadata.insert("leader-endpoint-port", port.to_string().parse().unwrap());
    status
}

/// An append answer's position: the double's commit and prepare
/// positions are one.
fn position_at(position: u64) -> pb::append_resp::success::PositionOption {
    pb::append_resp::success::PositionOption::Position(pb::append_resp::Position {
        commit_position: position,
        prepare_position: position,
    })
}

/// A successful append's answer: the stream's revision now, and where.
fn appended(
    revision: u64,
    position: pb::append_resp::success::PositionOption,
) -> Response<pb::AppendResp> {
    Response::new(pb::AppendResp {
        result: Some(pb::append_resp::Result::Success(pb::append_resp::Success {
            current_revision_option: Some(
                pb::append_resp::success::CurrentRevisionOption::CurrentRevision(revision),
            ),
            position_option: Some(position),
        })),
    })
}

/// The answer to an append whose expectation the stream (at `current`)
/// does not meet.
fn wrong_expected_version(
    current: Option<u64>,
    expected: Option<pb::append_req::options::ExpectedStreamRevision>,
) -> Response<pb::AppendResp> {
    use pb::append_req::options::ExpectedStreamRevision;
    use pb::append_resp::wrong_expected_version::{CurrentRevisionOption, ExpectedRevisionOption};
    Response::new(pb::AppendResp {
        result: Some(pb::append_resp::Result::WrongExpectedVersion(
            pb::append_resp::WrongExpectedVersion {
                current_revision_option_20_6_0: None,
                expected_revision_option_20_6_0: None,
                current_revision_option: Some(match current {
                    Some(r) => CurrentRevisionOption::CurrentRevision(r),
                    None => CurrentRevisionOption::CurrentNoStream(shared::Empty {}),
                }),
                expected_revision_option: Some(match expected {
                    Some(ExpectedStreamRevision::Revision(r)) => {
                        ExpectedRevisionOption::ExpectedRevision(r)
                    }
                    Some(ExpectedStreamRevision::NoStream(_)) => {
                        ExpectedRevisionOption::ExpectedNoStream(shared::Empty {})
                    }
                    Some(ExpectedStreamRevision::StreamExists(_)) => {
                        ExpectedRevisionOption::ExpectedStreamExists(shared::Empty {})
                    }
                    _ => ExpectedRevisionOption::ExpectedAny(shared::Empty {}),
                }),
            },
        )),
    })
}
