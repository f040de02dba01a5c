//! The `projector` schema's bookkeeping: each consumer's checkpoint and
//! status (one row per consumer, written in the same transaction as its
//! batch), the log's head as the projector last saw it, and how far behind
//! a consumer is ([`Lag`]), computed here and nowhere else.

use chrono::{DateTime, Utc};
use mileage_store::Position;
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
         );",
    )
    .await
}

/// A consumer's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The consumer.
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
}

/// The checkpoint of `name`, creating its row at the start of the log.
pub async fn checkpoint(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<Position>, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO projector.consumers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )
        .await?;
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

/// Moves the checkpoint from `from` to `to` if nobody else moved it: `false`
/// means another replica is (or was) active and this one must stand down.
/// Notifies [`CHANNEL`] on commit.
pub async fn advance(
    client: &impl GenericClient,
    name: &str,
    from: Option<Position>,
    to: Position,
    handled: usize,
    last_event_at: DateTime<Utc>,
) -> Result<bool, tokio_postgres::Error> {
    let updated = client
        .execute(
            "UPDATE projector.consumers
                SET commit_position = $2, prepare_position = $3,
                    events_handled = events_handled + $4, last_event_at = $5,
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
                &last_event_at,
                &from.map(|p| to_i64(p.commit)),
                &from.map(|p| to_i64(p.prepare)),
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
                    error_position, error_event_type, error_reason
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

/// How far a consumer is behind the log's head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Between the checkpoint and the head, in the store's position units.
    pub events: u64,
    /// Since the last event it handled was recorded; 0 when caught up.
    pub seconds: f64,
}

impl Lag {
    /// The lag of a consumer at `checkpoint`, whose last handled event was
    /// recorded at `last_event_at`, against `head` at `now`. An empty log
    /// (no head) has no lag.
    pub fn of(
        head: Option<Position>,
        checkpoint: Option<Position>,
        last_event_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let events = match (head, checkpoint) {
            (Some(head), Some(at)) => head.prepare.saturating_sub(at.prepare),
            (Some(head), None) => head.prepare,
            (None, _) => 0,
        };
        let seconds = match (events, last_event_at) {
            (0, _) | (_, None) => 0.0,
            (_, Some(at)) => (now - at).to_std().map_or(0.0, |d| d.as_secs_f64()),
        };
        Self { events, seconds }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use mileage_store::Position;

    use super::Lag;

    fn at(n: u64) -> Position {
        Position {
            commit: n,
            prepare: n,
        }
    }

    #[test]
    fn lag_is_zero_when_caught_up_or_the_log_is_empty() {
        let now = Utc::now();
        let earlier = Some(now - Duration::seconds(30));
        assert_eq!(
            Lag::of(Some(at(9)), Some(at(9)), earlier, now),
            Lag {
                events: 0,
                seconds: 0.0
            }
        );
        assert_eq!(Lag::of(None, None, None, now).events, 0);
    }

    #[test]
    fn lag_counts_from_the_checkpoint_and_the_last_event_time() {
        let now = Utc::now();
        let lag = Lag::of(
            Some(at(10)),
            Some(at(4)),
            Some(now - Duration::seconds(30)),
            now,
        );
        assert_eq!(lag.events, 6);
        assert!((lag.seconds - 30.0).abs() < 1e-6, "{lag:?}");
        assert_eq!(Lag::of(Some(at(10)), None, None, now).events, 10);
    }
}
