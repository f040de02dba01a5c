//! Group commit: concurrent appends share one statement and one commit.
//!
//! Appends with known expectations (no stream, exact version), of one
//! stream or atomically of several, are queued; a few committer tasks each
//! take whatever is queued and write it as one `INSERT`. An append one of
//! whose expected versions is missing is simply not inserted (none of its
//! parts) and is retried alone; a clash on a unique index (a concurrent
//! writer, a reused event id, a retry) fails the statement and every append
//! of the group is retried alone, on the ordinary path, which gives each its
//! exact answer. So the semantics are those of individual appends.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::append::{self, StreamColumns};
use super::{pool_error, write_error};
use crate::{AppendOutcome, ExpectedVersion, NewEvent, StoreError, StreamAppend};

/// Most events one group statement carries.
const MAX_GROUP_EVENTS: usize = 256;

/// One stream's share of a queued append.
struct Part {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
}

/// One queued append (of one stream or, atomically, several) and where to
/// answer: one outcome per part, in order.
struct Request {
    parts: Vec<Part>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, StoreError>>,
}

impl Request {
    fn events(&self) -> usize {
        self.parts.iter().map(|p| p.events.len()).sum()
    }
}

/// The queue in front of the committer tasks.
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Request>,
}

impl GroupCommit {
    /// Starts `committers` tasks writing through `pool`. They end when the
    /// returned handle is dropped.
    pub(super) fn start(pool: &Pool, committers: usize) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..committers.max(1) {
            tokio::spawn(run(pool.clone(), Arc::clone(&receiver)));
        }
        Self { queue }
    }

    /// Appends through the group: one outcome per part, in order; `None`
    /// when it does not take this append (an `Any` expectation, too many
    /// events, or the committers are gone).
    pub(super) async fn append(
        &self,
        parts: &[StreamAppend<'_>],
    ) -> Option<Result<Vec<AppendOutcome>, StoreError>> {
        let events: usize = parts.iter().map(|p| p.events.len()).sum();
        if parts.iter().any(|p| p.expected == ExpectedVersion::Any) || events >= MAX_GROUP_EVENTS {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            parts: parts
                .iter()
                .map(|p| Part {
                    stream: p.stream.to_owned(),
                    expected: p.expected,
                    events: p.events.to_vec(),
                })
                .collect(),
            reply,
        };
        self.queue.send(request).ok()?;
        answer.await.ok()
    }
}

async fn run(pool: Pool, receiver: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>) {
    while let Some(group) =
        crate::batch::next_batch(&receiver, MAX_GROUP_EVENTS, Request::events).await
    {
        commit(&pool, group).await;
    }
}

/// Writes a group and answers every request in it.
async fn commit(pool: &Pool, group: Vec<Request>) {
    if group.len() == 1 {
        return alone(pool, group).await;
    }
    match insert_group(pool, &group).await {
        Ok(mut written) => {
            // An append's rows are all written or none: the rows of its
            // parts' last events are its outcomes.
            let mut missed = Vec::new();
            for request in group {
                let outcomes: Option<Vec<AppendOutcome>> = request
                    .parts
                    .iter()
                    .map(|p| p.events.last().and_then(|e| written.remove(&e.event_id)))
                    .collect();
                match outcomes {
                    Some(outcomes) => {
                        let _ = request.reply.send(Ok(outcomes));
                    }
                    None => missed.push(request),
                }
            }
            alone(pool, missed).await;
        }
        Err(GroupError::Clash) => alone(pool, group).await,
        Err(GroupError::Store(e)) => {
            let message = e.to_string();
            for request in group {
                let _ = request
                    .reply
                    .send(Err(StoreError::Backend(message.clone())));
            }
        }
    }
}

/// The ordinary path, concurrently, for requests the group could not take.
async fn alone(pool: &Pool, requests: Vec<Request>) {
    futures::future::join_all(requests.into_iter().map(|r| async move {
        let result = match r.parts.as_slice() {
            [one] => append::append(pool, &one.stream, one.expected, &one.events)
                .await
                .map(|outcome| vec![outcome]),
            parts => {
                let parts: Vec<StreamAppend<'_>> = parts
                    .iter()
                    .map(|p| StreamAppend {
                        stream: &p.stream,
                        expected: p.expected,
                        events: &p.events,
                    })
                    .collect();
                append::append_many(pool, &parts).await
            }
        };
        let _ = r.reply.send(result);
    }))
    .await;
}

enum GroupError {
    Clash,
    Store(StoreError),
}

/// Inserts the whole group; returns each written event's outcome by id.
async fn insert_group(
    pool: &Pool,
    group: &[Request],
) -> Result<HashMap<Uuid, AppendOutcome>, GroupError> {
    let mut columns = StreamColumns::default();
    for (append, request) in (0..).zip(group) {
        for (index, part) in request.parts.iter().enumerate() {
            let key = part.events.first().and_then(|e| e.request);
            columns.push(
                append,
                &part.stream,
                part.expected,
                &part.events,
                key.filter(|_| index == 0),
            );
        }
    }
    let client = pool
        .get()
        .await
        .map_err(|e| GroupError::Store(pool_error(e)))?;
    let rows = columns.insert(&client).await.map_err(|e| {
        // Two groups inserting contested keys in opposite orders may
        // deadlock; like a unique clash, each append then goes alone.
        let clash = [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
        ];
        if e.code().is_some_and(|code| clash.contains(code)) {
            GroupError::Clash
        } else {
            GroupError::Store(write_error(e))
        }
    })?;
    Ok(append::outcomes_by_id(&rows))
}
