//! Group commit: concurrent appends share one statement and one commit.
//!
//! Appends with a known expectation (no stream, exact version) are queued;
//! a few committer tasks each take whatever is queued and write it as one
//! `INSERT`. An append whose expected version is missing is simply not
//! inserted and is retried alone; a clash on a unique index (a concurrent
//! writer, a reused event id, a retry) fails the statement and every append
//! of the group is retried alone, on the ordinary path, which gives each its
//! exact answer. So the semantics are those of individual appends.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::append::{self, StreamColumns, to_u64};
use super::sql;
use super::{pg_error, pool_error};
use crate::{AppendOutcome, ExpectedVersion, NewEvent, Position, StoreError};

/// Most events one group statement carries.
const MAX_GROUP_EVENTS: usize = 256;

/// One queued append and where to answer.
struct Request {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
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

    /// Appends through the group; `None` when it does not take this append
    /// (an `Any` expectation, or the committers are gone).
    pub(super) async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Option<Result<AppendOutcome, StoreError>> {
        if expected == ExpectedVersion::Any || events.len() >= MAX_GROUP_EVENTS {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            stream: stream.to_owned(),
            expected,
            events: events.to_vec(),
            reply,
        };
        self.queue.send(request).ok()?;
        answer.await.ok()
    }
}

async fn run(pool: Pool, receiver: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut size = first.events.len();
            let mut group = vec![first];
            while size < MAX_GROUP_EVENTS {
                match receiver.try_recv() {
                    Ok(next) => {
                        size += next.events.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            group
        };
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
            // An append's rows are all written or none (they share one
            // check): its last event's row is its outcome.
            let mut missed = Vec::new();
            for request in group {
                let last = request
                    .events
                    .last()
                    .and_then(|e| written.remove(&e.event_id));
                match last {
                    Some(outcome) => {
                        let _ = request.reply.send(Ok(outcome));
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
        let result = append::append(pool, &r.stream, r.expected, &r.events).await;
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
    for request in group {
        columns.push(&request.stream, request.expected, &request.events);
    }
    let client = pool
        .get()
        .await
        .map_err(|e| GroupError::Store(pool_error(e)))?;
    let stmt = client
        .prepare_cached(sql::APPEND_GROUP)
        .await
        .map_err(|e| GroupError::Store(pg_error(e)))?;
    let rows = client.query(&stmt, &columns.params()).await.map_err(|e| {
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
            GroupError::Store(pg_error(e))
        }
    })?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                row.get(3),
                AppendOutcome {
                    last_version: to_u64(row.get(2)),
                    position: Position {
                        commit: to_u64(row.get(0)),
                        prepare: to_u64(row.get(1)),
                    },
                    already_appended: false,
                },
            )
        })
        .collect())
}
