//! The `projector` schema's bookkeeping: each consumer's checkpoint and
//! status (one row per consumer, written in the same transaction as its
//! batch), the log's head as the projector last saw it, and how far behind
//! a consumer is ([`Lag`]), computed here and nowhere else.

use chrono::{DateTime, Utc};
use mileage_store::{Position, RecordedEvent};
use tokio_postgres::{Client, GenericClient};

/// The channel a commit notifies with `{name} {position}`, for readers
/// waiting for their own writes.
pub const CHANNEL: &str = "mileage_projection";

/// Creates the bookkeeping schema (idempotent, safe to race: the projector
/// replicas and the query API all call it at start-up).
pub async fn migrate(client: &Client) -> Result<(), tokio_postgres::Error> {
    crate::create_tables(
        client,
        "CREATE SCHEMA IF NOT EXISTS projector;
         CREATE TABLE IF NOT EXISTS projector.consumers (
             name text PRIMARY KEY,
             commit_position bigint,
             prepare_position bigint,
             state text NOT NULL DEFAULT 'starting',
             events_handled bigint NOT NULL DEFAULT 0,
             last_event_at timestamptz,
             error_position text,
             error_event_type text,
             error_reason text,
             updated_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE TABLE IF NOT EXISTS projector.log_head (
             singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
             commit_position bigint NOT NULL,
             prepare_position bigint NOT NULL,
             seen_at timestamptz NOT NULL DEFAULT now()
         );
         ALTER TABLE projector.consumers
             ADD COLUMN IF NOT EXISTS store_id text,
             ADD COLUMN IF NOT EXISTS backlog_events bigint,
             ADD COLUMN IF NOT EXISTS backlog_more boolean,
             ADD COLUMN IF NOT EXISTS backlog_oldest_at timestamptz,
             ADD COLUMN IF NOT EXISTS backlog_commit bigint,
             ADD COLUMN IF NOT EXISTS backlog_prepare bigint;
         ALTER TABLE projector.consumers
             ADD COLUMN IF NOT EXISTS last_stream text,
             ADD COLUMN IF NOT EXISTS last_event_id uuid;",
    )
    .await
}

/// The suffix of `replay verify`'s scratch consumer (`members__verify`).
pub const VERIFY_SUFFIX: &str = "__verify";

/// The suffix of `replay rebuild`'s shadow consumer (`members__rebuild`).
pub const REBUILD_SUFFIX: &str = "__rebuild";

/// A consumer's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    /// Last event handled; `None` before the first.
    pub checkpoint: Option<Position>,
    /// `running`, `stopped` (at a poison event) or `starting`.
    pub state: String,
    /// Events handled so far (including ones it ignores).
    pub events_handled: i64,
    /// When the last handled event was recorded.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Where it stopped, what and why, when stopped.
    pub error: Option<(String, String, String)>,
    /// The store its checkpoint belongs to (see `EventStore::identity`).
    pub store_id: Option<String>,
    /// What the projector last measured it had still to read, and from
    /// which checkpoint.
    pub backlog: Option<Measured>,
}

impl Status {
    /// Whether this is a copy replay runs beside a live consumer (verify's
    /// scratch, rebuild's shadow): behind by design while it runs, gone
    /// when it ends, so not something to alert on.
    pub fn is_scratch(&self) -> bool {
        self.name.ends_with(VERIFY_SUFFIX) || self.name.ends_with(REBUILD_SUFFIX)
    }
}

/// A consumer's backlog as the projector measured it (every second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// The checkpoint it was measured from.
    pub from: Option<Position>,
    /// Events after it (up to the measuring limit).
    pub events: u64,
    /// Whether there were more than `events`.
    pub more: bool,
    /// When the first of them was recorded.
    pub oldest: Option<DateTime<Utc>>,
}

/// Whose positions a consumer's checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The configured store's (or it has no checkpoint yet, and now is).
    Ours,
    /// Another store's: reading on from it would skip or repeat events.
    Other(String),
}

/// Claims `name`'s checkpoint for the store `store_id`: a checkpoint
/// without a store (none yet, or one written before stores were recorded)
/// becomes this store's; one of another store is refused.
pub async fn claim(
    client: &impl GenericClient,
    name: &str,
    store_id: &str,
) -> Result<Claim, tokio_postgres::Error> {
    ensure_row(client, name).await?;
    let row = client
        .query_one(
            "UPDATE projector.consumers
                SET store_id = CASE WHEN store_id IS NULL OR commit_position IS NULL
                                    THEN $2 ELSE store_id END
              WHERE name = $1
          RETURNING store_id",
            &[&name, &store_id],
        )
        .await?;
    let owner: String = row.get(0);
    Ok(if owner == store_id {
        Claim::Ours
    } else {
        Claim::Other(owner)
    })
}

/// Records that `name` refused to run (its checkpoint is another store's).
pub async fn mark_refused(
    client: &impl GenericClient,
    name: &str,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE projector.consumers
                SET state = 'stopped', error_position = '-', error_event_type = '-',
                    error_reason = $2, updated_at = now()
              WHERE name = $1",
            &[&name, &reason],
        )
        .await
        .map(drop)
}

/// Records what `name` had still to read, measured from `from`.
pub async fn record_backlog(
    client: &impl GenericClient,
    name: &str,
    measured: &Measured,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE projector.consumers
                SET backlog_events = $2, backlog_more = $3, backlog_oldest_at = $4,
                    backlog_commit = $5, backlog_prepare = $6
              WHERE name = $1",
            &[
                &name,
                &to_i64(measured.events),
                &measured.more,
                &measured.oldest,
                &measured.from.map(|p| to_i64(p.commit)),
                &measured.from.map(|p| to_i64(p.prepare)),
            ],
        )
        .await
        .map(drop)
}

/// Creates `name`'s row (at the start of the log) unless it exists.
async fn ensure_row(client: &impl GenericClient, name: &str) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO projector.consumers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )
        .await
        .map(drop)
}

/// The checkpoint of `name`, creating its row at the start of the log.
pub async fn checkpoint(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<Position>, tokio_postgres::Error> {
    ensure_row(client, name).await?;
    let row = client
        .query_one(
            "SELECT commit_position, prepare_position FROM projector.consumers WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(position(row.get(0), row.get(1)))
}

/// The checkpoint of `name`, `None` when it has none (yet).
pub async fn position_of(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<Position>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT commit_position, prepare_position FROM projector.consumers WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(row.and_then(|row| position(row.get(0), row.get(1))))
}

fn position(commit: Option<i64>, prepare: Option<i64>) -> Option<Position> {
    Some(Position {
        commit: u64::try_from(commit?).ok()?,
        prepare: u64::try_from(prepare?).ok()?,
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Moves the checkpoint from `from` to `last`'s position (the last of
/// `handled` events) if nobody else moved it: `false` means another replica
/// is (or was) active and this one must stand down. The last event's
/// stream and id are kept with it, so a move to another event store can
/// find the same place there (`replay adopt`). Notifies [`CHANNEL`] on
/// commit.
pub async fn advance(
    client: &impl GenericClient,
    name: &str,
    from: Option<Position>,
    last: &RecordedEvent,
    handled: usize,
) -> Result<bool, tokio_postgres::Error> {
    let to = last.position;
    let updated = client
        .execute(
            "UPDATE projector.consumers
                SET commit_position = $2, prepare_position = $3,
                    events_handled = events_handled + $4, last_event_at = $5,
                    last_stream = $8, last_event_id = $9,
                    state = 'running', error_position = NULL, error_event_type = NULL,
                    error_reason = NULL, updated_at = now()
              WHERE name = $1
                AND commit_position IS NOT DISTINCT FROM $6
                AND prepare_position IS NOT DISTINCT FROM $7",
            &[
                &name,
                &to_i64(to.commit),
                &to_i64(to.prepare),
                &i64::try_from(handled).unwrap_or(i64::MAX),
                &last.metadata.recorded_at,
                &from.map(|p| to_i64(p.commit)),
                &from.map(|p| to_i64(p.prepare)),
                &last.stream,
                &last.event_id,
            ],
        )
        .await?;
    if updated == 1 {
        client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &format!("{name} {to}")],
            )
            .await?;
    }
    Ok(updated == 1)
}

/// Marks `name` as running (it took the lock).
pub async fn mark_running(
    client: &impl GenericClient,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE projector.consumers SET state = 'running', updated_at = now() WHERE name = $1",
            &[&name],
        )
        .await
        .map(drop)
}

/// Records that the consumer stopped at a poison event, if its checkpoint is
/// still `at` (the position it handled up to); `false` when another replica
/// or a rebuild's swap moved it, so the stop is not this session's to record.
pub async fn mark_stopped(
    client: &impl GenericClient,
    name: &str,
    at: Option<Position>,
    position: Position,
    event_type: &str,
    reason: &str,
) -> Result<bool, tokio_postgres::Error> {
    let updated = client
        .execute(
            "UPDATE projector.consumers
                SET state = 'stopped', error_position = $2, error_event_type = $3,
                    error_reason = $4, updated_at = now()
              WHERE name = $1
                AND commit_position IS NOT DISTINCT FROM $5
                AND prepare_position IS NOT DISTINCT FROM $6",
            &[
                &name,
                &position.to_string(),
                &event_type,
                &reason,
                &at.map(|p| to_i64(p.commit)),
                &at.map(|p| to_i64(p.prepare)),
            ],
        )
        .await?;
    Ok(updated == 1)
}

/// Every consumer's row, by name.
pub async fn statuses(client: &impl GenericClient) -> Result<Vec<Status>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT name, commit_position, prepare_position, state, events_handled, last_event_at,
                    error_position, error_event_type, error_reason, store_id,
                    backlog_events, backlog_more, backlog_oldest_at, backlog_commit, backlog_prepare
               FROM projector.consumers ORDER BY name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Status {
            name: row.get(0),
            checkpoint: position(row.get(1), row.get(2)),
            state: row.get(3),
            events_handled: row.get(4),
            last_event_at: row.get(5),
            error: match (row.get(6), row.get(7), row.get(8)) {
                (Some(p), Some(t), Some(r)) => Some((p, t, r)),
                _ => None,
            },
            store_id: row.get(9),
            backlog: row.get::<_, Option<i64>>(10).map(|events| Measured {
                from: position(row.get(13), row.get(14)),
                events: u64::try_from(events).unwrap_or(0),
                more: row.get::<_, Option<bool>>(11).unwrap_or(false),
                oldest: row.get(12),
            }),
        })
        .collect())
}

/// Records `head` as the log's head (the projector does, every second), so
/// readers of the read side can tell the lag without an event store.
pub async fn record_head(
    client: &impl GenericClient,
    head: Position,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO projector.log_head (singleton, commit_position, prepare_position, seen_at)
             VALUES (true, $1, $2, now())
             ON CONFLICT (singleton) DO UPDATE SET
                 commit_position = EXCLUDED.commit_position,
                 prepare_position = EXCLUDED.prepare_position,
                 seen_at = EXCLUDED.seen_at",
            &[&to_i64(head.commit), &to_i64(head.prepare)],
        )
        .await
        .map(drop)
}

/// The log's head as last recorded, and when; `None` before the first.
pub async fn head(
    client: &impl GenericClient,
) -> Result<Option<(Position, DateTime<Utc>)>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT commit_position, prepare_position, seen_at FROM projector.log_head",
            &[],
        )
        .await?;
    Ok(row.and_then(|row| Some((position(row.get(0), row.get(1))?, row.get(2)))))
}

/// How far a consumer is behind the log's head, in the terms operators
/// read on every store: events, and seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Events of the log it has still to handle (never position units, never
    /// the store's own system events), as last measured.
    pub events: u64,
    /// How long the oldest of them has waited; 0 when caught up.
    pub seconds: f64,
}

impl Lag {
    /// The lag of a consumer at `checkpoint` against `head` (the last event
    /// of the log, system events excluded) at `now`, given what was last
    /// measured for it. At or past the head it is zero whatever was
    /// measured; otherwise the measurement counts, and a consumer never
    /// measured yet counts as one event behind (at least), waiting since
    /// the head was seen.
    pub fn of(
        head: Option<(Position, DateTime<Utc>)>,
        checkpoint: Option<Position>,
        measured: Option<&Measured>,
        now: DateTime<Utc>,
    ) -> Self {
        let Some((head, seen_at)) = head else {
            return Self::zero();
        };
        if checkpoint.is_some_and(|at| at >= head) {
            return Self::zero();
        }
        let (events, oldest) = match measured {
            Some(m) if m.events > 0 => (m.events, m.oldest.unwrap_or(seen_at)),
            _ => (1, seen_at),
        };
        let seconds = (now - oldest).to_std().map_or(0.0, |d| d.as_secs_f64());
        Self { events, seconds }
    }

    /// Caught up.
    pub fn zero() -> Self {
        Self {
            events: 0,
            seconds: 0.0,
        }
    }
}

/// How many events `name` has handled (0 for a consumer never run): the
/// progress of a rebuild or a verification.
pub async fn events_handled(
    client: &impl GenericClient,
    name: &str,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT events_handled FROM projector.consumers WHERE name = $1",
            &[&name],
        )
        .await?
        .map_or(0, |row| row.get(0)))
}

/// Forgets `name`'s row (a scratch or shadow consumer done with, or
/// discarded).
pub async fn forget(client: &impl GenericClient, name: &str) -> Result<(), tokio_postgres::Error> {
    client
        .execute("DELETE FROM projector.consumers WHERE name = $1", &[&name])
        .await
        .map(drop)
}

/// Inside a swap's transaction: `live`'s row made to exist, both rows
/// locked until the transaction ends, and the event store each row there
/// is belongs to (`live`'s first).
pub async fn lock_for_swap(
    tx: &impl GenericClient,
    live: &str,
    shadow: &str,
) -> Result<Vec<Option<String>>, tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO projector.consumers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        &[&live],
    )
    .await?;
    tx.query(
        "SELECT name FROM projector.consumers WHERE name IN ($1, $2) FOR UPDATE",
        &[&live, &shadow],
    )
    .await?;
    Ok(tx
        .query(
            "SELECT store_id FROM projector.consumers WHERE name IN ($1, $2) ORDER BY name = $2",
            &[&live, &shadow],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Inside a swap's transaction: `live` takes `shadow`'s checkpoint, store
/// and count (running, no error), and `shadow`'s row goes.
pub async fn take_over(
    tx: &impl GenericClient,
    live: &str,
    shadow: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "UPDATE projector.consumers AS live
            SET commit_position = shadow.commit_position,
                prepare_position = shadow.prepare_position,
                store_id = shadow.store_id,
                events_handled = shadow.events_handled,
                last_event_at = shadow.last_event_at,
                last_stream = shadow.last_stream,
                last_event_id = shadow.last_event_id,
                state = 'running', error_position = NULL, error_event_type = NULL,
                error_reason = NULL, updated_at = now()
           FROM projector.consumers AS shadow
          WHERE live.name = $1 AND shadow.name = $2",
        &[&live, &shadow],
    )
    .await?;
    forget(tx, shadow).await
}

/// The last event `name` handled (its stream and id), as its checkpoint
/// recorded it; `None` before the first, or for a checkpoint written
/// before events were recorded with it.
pub async fn last_handled(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<(String, uuid::Uuid)>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT last_stream, last_event_id FROM projector.consumers WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(row.and_then(|row| {
        Some((
            row.get::<_, Option<String>>(0)?,
            row.get::<_, Option<uuid::Uuid>>(1)?,
        ))
    }))
}

/// Inside a transaction: the event store `name`'s checkpoint belongs to,
/// its row locked until the transaction ends; `None` when there is no such
/// consumer.
pub async fn lock_owner(
    tx: &impl GenericClient,
    name: &str,
) -> Result<Option<Option<String>>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT store_id FROM projector.consumers WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?
        .map(|row| row.get(0)))
}

/// Moves `name`'s checkpoint to `position` of the store `store_id` (an
/// adoption: the consumer carries on there), clearing any error.
pub async fn adopt(
    tx: &impl GenericClient,
    name: &str,
    position: Option<Position>,
    store_id: &str,
) -> Result<(), tokio_postgres::Error> {
    let part =
        |part: fn(&Position) -> u64| position.map(|p| i64::try_from(part(&p)).unwrap_or(i64::MAX));
    tx.execute(
        "UPDATE projector.consumers
            SET commit_position = $2, prepare_position = $3, store_id = $4,
                state = 'starting', error_position = NULL, error_event_type = NULL,
                error_reason = NULL, backlog_events = NULL, updated_at = now()
          WHERE name = $1",
        &[&name, &part(|p| p.commit), &part(|p| p.prepare), &store_id],
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use mileage_store::Position;

    use super::{Lag, Measured};

    fn at(n: u64) -> Position {
        Position {
            commit: n,
            prepare: n,
        }
    }

    #[test]
    fn lag_is_zero_at_the_head_or_on_an_empty_log_whatever_was_measured() {
        let now = Utc::now();
        let stale = Measured {
            from: Some(at(100)),
            events: 7,
            more: false,
            oldest: Some(now - Duration::seconds(30)),
        };
        assert_eq!(
            Lag::of(Some((at(900), now)), Some(at(900)), Some(&stale), now),
            Lag::zero()
        );
        assert_eq!(Lag::of(None, None, Some(&stale), now), Lag::zero());
    }

    #[test]
    fn lag_is_the_measured_events_and_the_age_of_the_oldest() {
        let now = Utc::now();
        let measured = Measured {
            from: Some(at(400)),
            events: 6,
            more: false,
            oldest: Some(now - Duration::seconds(30)),
        };
        // Positions 400 and 1000 are 600 apart (byte offsets on
        // EventStoreDB); the lag is the 6 events measured between them.
        let lag = Lag::of(Some((at(1000), now)), Some(at(400)), Some(&measured), now);
        assert_eq!(lag.events, 6);
        assert!((lag.seconds - 30.0).abs() < 1e-6, "{lag:?}");
    }

    #[test]
    fn a_consumer_behind_the_head_but_not_measured_yet_is_at_least_one_event_behind() {
        let now = Utc::now();
        let seen = now - Duration::seconds(5);
        let lag = Lag::of(Some((at(10), seen)), None, None, now);
        assert_eq!(lag.events, 1);
        assert!((lag.seconds - 5.0).abs() < 1e-6, "{lag:?}");
        let measured_empty = Measured {
            from: Some(at(4)),
            events: 0,
            more: false,
            oldest: None,
        };
        let lag = Lag::of(
            Some((at(10), seen)),
            Some(at(4)),
            Some(&measured_empty),
            now,
        );
        assert_eq!(lag.events, 1);
    }
}
