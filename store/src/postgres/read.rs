//! Reading streams and the global log, and following it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use deadpool_postgres::Pool;
use futures::StreamExt;
use futures::stream::BoxStream;
use mileage_domain::envelope::EventMetadata;
use tokio::sync::watch;
use tokio_postgres::Row;

use super::append::to_u64;
use super::sql::{self, RawJson};
use super::{PgEventStore, pg_error, pool_error};
use crate::{Backlog, EventStore, Position, RecordedEvent, StoreError};

/// Reads `stream` from `from_version`.
pub(super) async fn read_stream(
    pool: &Pool,
    stream: &str,
    from_version: u64,
    max_count: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let Ok(from) = i64::try_from(from_version) else {
        return Ok(Vec::new());
    };
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client
        .prepare_cached(&sql::read_stream())
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&stmt, &[&stream, &from, &limit(max_count)])
        .await
        .map_err(pg_error)?;
    rows.iter().map(row_to_event).collect()
}

/// The event `event_id` of `stream`, by the unique index on event ids.
pub(super) async fn find_in_stream(
    pool: &Pool,
    stream: &str,
    event_id: uuid::Uuid,
) -> Result<Option<RecordedEvent>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client
        .prepare_cached(&sql::find_in_stream())
        .await
        .map_err(pg_error)?;
    let row = client
        .query_opt(&stmt, &[&stream, &event_id])
        .await
        .map_err(pg_error)?;
    row.as_ref().map(row_to_event).transpose()
}

/// Reads the global log strictly after `after`.
pub(super) async fn read_all(
    pool: &Pool,
    after: Option<Position>,
    max_count: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let (tx, pos) = match after {
        None => (0, 0),
        Some(p) => match (i64::try_from(p.commit), i64::try_from(p.prepare)) {
            (Ok(tx), Ok(pos)) => (tx, pos),
            _ => return Ok(Vec::new()),
        },
    };
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client
        .prepare_cached(&sql::read_all())
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&stmt, &[&tx, &pos, &limit(max_count)])
        .await
        .map_err(pg_error)?;
    rows.iter().map(row_to_event).collect()
}

/// The last position readers can see.
pub(super) async fn head_position(pool: &Pool) -> Result<Option<Position>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let row = client.query_opt(sql::HEAD, &[]).await.map_err(pg_error)?;
    Ok(row.map(|r| Position {
        commit: to_u64(r.get(0)),
        prepare: to_u64(r.get(1)),
    }))
}

/// This store's id (migration 0003 creates it once).
pub(super) async fn identity(pool: &Pool) -> Result<String, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let row = client
        .query_one(sql::IDENTITY, &[])
        .await
        .map_err(pg_error)?;
    Ok(format!("postgresql:{}", row.get::<_, uuid::Uuid>(0)))
}

/// What a reader after `after` has still to read, counted up to `limit`.
pub(super) async fn backlog(
    pool: &Pool,
    after: Option<Position>,
    limit: u64,
) -> Result<Backlog, StoreError> {
    let (tx, pos) = match after {
        None => (0, 0),
        Some(p) => match (i64::try_from(p.commit), i64::try_from(p.prepare)) {
            (Ok(tx), Ok(pos)) => (tx, pos),
            _ => return Ok(Backlog::default()),
        },
    };
    let counted = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let client = pool.get().await.map_err(pool_error)?;
    let row = client
        .query_one(sql::BACKLOG, &[&tx, &pos, &counted])
        .await
        .map_err(pg_error)?;
    let events = to_u64(row.get(0));
    Ok(Backlog {
        events: events.min(limit),
        more: events > limit,
        oldest: row.get(1),
    })
}

struct Follow {
    store: PgEventStore,
    wake: watch::Receiver<u64>,
    after: Option<Position>,
    buffer: VecDeque<RecordedEvent>,
    /// After a wake-up, events may still be behind the visibility horizon
    /// (an older transaction is still open): re-read eagerly until then.
    eager_until: Option<Instant>,
    eager_delay: Duration,
    /// The next page, already being read while the consumer drains this one
    /// (catch-up overlaps the server's work with ours).
    prefetch: Option<Prefetch>,
}

/// A page read in flight; aborted if the subscription is dropped.
struct Prefetch(tokio::task::JoinHandle<Result<Vec<RecordedEvent>, StoreError>>);

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Follow {
    /// The next page after `self.after`: the prefetched one if any. A full
    /// page starts the read of the one after it.
    async fn next_page(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let batch = self.store.inner.options.subscription_batch;
        let page = match self.prefetch.take() {
            Some(mut prefetch) => (&mut prefetch.0)
                .await
                .unwrap_or_else(|e| Err(StoreError::Backend(format!("prefetch task failed: {e}")))),
            None => self.store.read_all(self.after, batch).await,
        }?;
        if page.len() == batch {
            let store = self.store.clone();
            let after = page.last().map(|e| e.position);
            self.prefetch = Some(Prefetch(tokio::spawn(async move {
                store.read_all(after, batch).await
            })));
        }
        Ok(page)
    }
}

/// How long after a wake-up a subscriber keeps re-reading before it falls
/// back to waiting for the next wake-up or poll.
const EAGER_WINDOW: Duration = Duration::from_secs(2);
const EAGER_FIRST_DELAY: Duration = Duration::from_millis(2);
const EAGER_MAX_DELAY: Duration = Duration::from_millis(100);

/// Follows the global log: read a batch, yield it, and when caught up wait for
/// a wake-up (local append or NOTIFY) or the poll interval, whichever first.
pub(super) fn subscribe_all(
    store: PgEventStore,
    wake: watch::Receiver<u64>,
    after: Option<Position>,
) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    let state = Follow {
        store,
        wake,
        after,
        buffer: VecDeque::new(),
        eager_until: None,
        eager_delay: EAGER_FIRST_DELAY,
        prefetch: None,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.buffer.pop_front() {
                s.after = Some(event.position);
                return Some((Ok(event), s));
            }
            // Mark wake-ups seen *before* reading, so one that arrives during
            // the read is not lost.
            s.wake.borrow_and_update();
            let page = s.next_page().await;
            let options = &s.store.inner.options;
            match page {
                Ok(events) if !events.is_empty() => {
                    s.eager_until = None;
                    s.buffer.extend(events);
                }
                Ok(_) if s.eager_until.is_some_and(|until| Instant::now() < until) => {
                    tokio::time::sleep(s.eager_delay).await;
                    s.eager_delay = (s.eager_delay * 2).min(EAGER_MAX_DELAY);
                }
                Ok(_) => {
                    let interval = options.poll_interval;
                    match tokio::time::timeout(interval, s.wake.changed()).await {
                        Ok(Ok(())) => {
                            s.eager_until = Some(Instant::now() + EAGER_WINDOW);
                            s.eager_delay = EAGER_FIRST_DELAY;
                        }
                        Ok(Err(_)) => tokio::time::sleep(interval).await,
                        Err(_) => {}
                    }
                }
                Err(e) => {
                    tokio::time::sleep(options.poll_interval).await;
                    return Some((Err(e), s));
                }
            }
        }
    })
    .boxed()
}

fn limit(max_count: usize) -> i64 {
    i64::try_from(max_count).unwrap_or(i64::MAX)
}

/// Reads one row of `sql::EVENT_COLUMNS`.
fn row_to_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    let tx: i64 = row.get(0);
    let global: i64 = row.get(1);
    let position = Position {
        commit: to_u64(tx),
        prepare: to_u64(global),
    };
    let event_type: String = row.get(5);
    let schema_version: i32 = row.get(6);
    let data: RawJson = row.try_get(7).map_err(|e| StoreError::Corrupt {
        position,
        event_type: event_type.clone(),
        reason: format!("unreadable data: {e}"),
    })?;
    Ok(RecordedEvent {
        event_id: row.get(2),
        stream: row.get(3),
        stream_version: to_u64(row.get(4)),
        position,
        schema_version: u16::try_from(schema_version).map_err(|_| StoreError::Corrupt {
            position,
            event_type: event_type.clone(),
            reason: format!("schema version {schema_version} out of range"),
        })?,
        event_type,
        data: data.0,
        metadata: EventMetadata {
            correlation_id: row.get(8),
            causation_id: row.get(9),
            recorded_at: row.get(10),
            trace: row.get::<_, Option<&str>>(11).and_then(|t| t.parse().ok()),
            actor: row.get::<_, Option<&str>>(12).and_then(|a| a.parse().ok()),
        },
    })
}
