//! A wire-level stand-in for EventStoreDB (for tests of this and other
//! crates, behind the `testing` feature): the `Streams` gRPC service built
//! from the client's published `streams.proto` (see `build.rs`), holding
//! events in memory, with switches that make it misbehave the ways a real
//! cluster does (a read cut off, a read that ends early with OK, a
//! not-leader answer, an append that times out or never answers, an
//! answer without a position, checkpoints and caught-up messages between
//! events, system events of its own).
//!
//! It tests the adapter's handling of those answers, not EventStoreDB's
//! rules: the conformance suite must still pass against a real server.

#![allow(clippy::pedantic, clippy::result_large_err, unreachable_pub, dead_code)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
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
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
}

use proto::event_store::client::{self as shared, streams as pb};

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
    /// Reads are accepted and then send nothing, ever (a hung server or
    /// connection that keepalives alone would not notice).
    pub hang_reads: bool,
    /// Appends wait this long before they are decided, as behind a lock
    /// another writer holds.
    pub stall_appends: Option<std::time::Duration>,
    /// Successful appends are answered without a position.
    pub no_position: bool,
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
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
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

    /// Every stored event, in order.
    pub fn log(&self) -> Vec<Stored> {
        self.state.lock().unwrap().log.clone()
    }

    /// Writes a system event of the server's own (statistics), as a real
    /// server does every few seconds.
    pub fn write_system_event(&self) {
        let mut state = self.state.lock().unwrap();
        let stream = "$stats-127.0.0.1:2113".to_owned();
        let revision = state.log.iter().filter(|e| e.stream == stream).count() as u64;
        push(
            &mut state.log,
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
    log: &mut Vec<Stored>,
    stream: String,
    revision: u64,
    id: uuid::Uuid,
    event_type: String,
    data: Vec<u8>,
    custom_metadata: Vec<u8>,
) -> u64 {
    let position = (log.len() as u64 + 1) * STRIDE;
    let created_ticks = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) / 100;
    log.push(Stored {
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
                let events: Vec<&Stored> = state.log.iter().filter(|e| e.stream == name).collect();
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
                let selected: Vec<&Stored> = match (all_option, backwards) {
                    (Some(AllOption::Position(p)), false) => state
                        .log
                        .iter()
                        .filter(|e| e.position >= p.commit_position)
                        .collect(),
                    (Some(AllOption::Position(p)), true) => state
                        .log
                        .iter()
                        .rev()
                        .filter(|e| e.position < p.commit_position)
                        .collect(),
                    // Forwards from the end: nothing is after it.
                    (Some(AllOption::End(_)), false) => Vec::new(),
                    (_, false) => state.log.iter().collect(),
                    (_, true) => state.log.iter().rev().collect(),
                };
                let mut selected: Vec<Stored> = selected.into_iter().take(count).cloned().collect();
                if let Some(n) = behaviour.end_reads_after {
                    selected.truncate(n);
                }
                if let Some(n) = behaviour.cut_read_after {
                    selected.truncate(n);
                    state.behaviour.cut_read_after = None;
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
        use pb::append_req::{Content, options::ExpectedStreamRevision};
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
        let mut state = self.state.lock().unwrap();
        let current: Option<u64> = state
            .log
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.revision)
            .max();
        let ids = proposed
            .iter()
            .map(|m| uuid_of(m.id.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        // EventStoreDB's idempotence: the same ids right after the expected
        // revision are a retry, answered with success and no position.
        let first = match expected {
            Some(ExpectedStreamRevision::Revision(r)) => Some(r + 1),
            Some(ExpectedStreamRevision::NoStream(_)) => Some(0),
            _ => None,
        };
        if let Some(first) = first {
            let stored: Vec<uuid::Uuid> = state
                .log
                .iter()
                .filter(|e| e.stream == stream && e.revision >= first)
                .map(|e| e.id)
                .take(ids.len())
                .collect();
            if !ids.is_empty() && stored == ids {
                let no_position =
                    pb::append_resp::success::PositionOption::NoPosition(shared::Empty {});
                return Ok(appended(first + ids.len() as u64 - 1, no_position));
            }
        }
        let matches = match expected {
            Some(ExpectedStreamRevision::Revision(r)) => current == Some(r),
            Some(ExpectedStreamRevision::NoStream(_)) => current.is_none(),
            Some(ExpectedStreamRevision::StreamExists(_)) => current.is_some(),
            _ => true,
        };
        if !matches {
            return Ok(wrong_expected_version(current, expected));
        }
        let mut revision = current.map_or(0, |r| r + 1);
        let mut position = 0;
        for (m, id) in proposed.into_iter().zip(ids) {
            let event_type = m.metadata.get("type").cloned().unwrap_or_default();
            position = push(
                &mut state.log,
                stream.clone(),
                revision,
                id,
                event_type,
                m.data,
                m.custom_metadata,
            );
            revision += 1;
        }
        if behaviour.store_then_deadline {
            return Err(Status::deadline_exceeded(
                "the double let the deadline pass",
            ));
        }
        if behaviour.store_then_commit_timeout {
            return Err(Status::aborted("Operation timed out"));
        }
        let position_option = if behaviour.no_position {
            pb::append_resp::success::PositionOption::NoPosition(shared::Empty {})
        } else {
            pb::append_resp::success::PositionOption::Position(pb::append_resp::Position {
                commit_position: position,
                prepare_position: position,
            })
        };
        Ok(appended(revision - 1, position_option))
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
    Ok(())
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
