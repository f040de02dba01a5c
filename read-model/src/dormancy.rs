//! `dormancy`: what the dormancy policy's scheduler works from, beside the
//! members read model it scans. `dormancy.pending` holds the policy's
//! targets still `PRE_DORMANT`, kept by the `dormancy` process manager in
//! the transaction of each batch it handles, so it is exactly as far along
//! the log as that consumer's checkpoint. `dormancy.scheduler` (one row)
//! holds where the scan of quiet members has got to and what the passes
//! did. `dormancy.revisit` holds members put back under the policy after
//! the scan passed them, for the next pass to look at again. None holds
//! personal data: ids and times.
//!
//! Neither is what makes the scheduler exactly-once (the ids it derives
//! are): they make it cheap. A lost or stale row costs a look at the log,
//! never a second target or notice.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient};

/// The schema.
pub const SCHEMA: &str = "dormancy";

/// Its tables, for the erasure search and the docs.
pub const TABLES: &[&str] = &["pending", "scheduler", "revisit"];

/// Creates the tables (idempotent, safe to race).
pub async fn migrate(client: &Client) -> Result<(), tokio_postgres::Error> {
    crate::create_tables(
        client,
        "CREATE SCHEMA IF NOT EXISTS dormancy;
         CREATE TABLE IF NOT EXISTS dormancy.pending (
             id text PRIMARY KEY,
             member_id text NOT NULL,
             registered_at timestamptz NOT NULL,
             quiet_since timestamptz NOT NULL
         );
         CREATE INDEX IF NOT EXISTS pending_due ON dormancy.pending (registered_at, id);
         CREATE INDEX IF NOT EXISTS pending_member ON dormancy.pending (member_id);
         CREATE TABLE IF NOT EXISTS dormancy.scheduler (
             singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
             cursor_at timestamptz,
             cursor_id text,
             passes bigint NOT NULL DEFAULT 0,
             registered bigint NOT NULL DEFAULT 0,
             marked bigint NOT NULL DEFAULT 0,
             lifted bigint NOT NULL DEFAULT 0,
             last_pass_started timestamptz,
             last_pass_finished timestamptz,
             last_pass_now timestamptz
         );
         INSERT INTO dormancy.scheduler (singleton) VALUES (true) ON CONFLICT DO NOTHING;
         CREATE TABLE IF NOT EXISTS dormancy.revisit (member_id text PRIMARY KEY);",
    )
    .await
}

/// A policy target still `PRE_DORMANT`, as `dormancy.pending` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The target.
    pub id: String,
    /// Its member.
    pub member_id: String,
    /// When the policy registered it (the event's own time).
    pub registered_at: DateTime<Utc>,
    /// The last activity that began its quiet period.
    pub quiet_since: DateTime<Utc>,
}

/// Keeps `target` as pending (a redelivery changes nothing).
pub async fn add(tx: &impl GenericClient, target: &Pending) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO dormancy.pending (id, member_id, registered_at, quiet_since)
         VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        &[
            &target.id,
            &target.member_id,
            &target.registered_at,
            &target.quiet_since,
        ],
    )
    .await
    .map(drop)
}

/// Forgets `target` (it is no longer `PRE_DORMANT`).
pub async fn close(tx: &impl GenericClient, target: &str) -> Result<(), tokio_postgres::Error> {
    tx.execute("DELETE FROM dormancy.pending WHERE id = $1", &[&target])
        .await
        .map(drop)
}

/// The pending targets of `members`, as `(target, member)`.
pub async fn pending_of(
    tx: &impl GenericClient,
    members: &[String],
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT id, member_id FROM dormancy.pending WHERE member_id = ANY($1)",
            &[&members],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Asks the next pass to look at `member` again (an operator put them back
/// under the policy: the scan may have passed them while they were out).
pub async fn revisit(tx: &impl GenericClient, member: &str) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO dormancy.revisit (member_id) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&member],
    )
    .await
    .map(drop)
}

/// Up to `limit` members to look at again.
pub async fn revisits(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT member_id FROM dormancy.revisit ORDER BY member_id LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Forgets `members`, looked at again.
pub async fn revisited(
    client: &impl GenericClient,
    members: &[String],
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM dormancy.revisit WHERE member_id = ANY($1)",
            &[&members],
        )
        .await
        .map(drop)
}

/// Up to `limit` pending targets registered at or before `before`, in
/// order of registration, after `after` (the last one a pass handled).
pub async fn due(
    client: &impl GenericClient,
    before: DateTime<Utc>,
    after: Option<&(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<Pending>, tokio_postgres::Error> {
    let (at, id) = after.map_or((None, ""), |(at, id)| (Some(*at), id.as_str()));
    let rows = client
        .query(
            "SELECT id, member_id, registered_at, quiet_since FROM dormancy.pending
              WHERE registered_at <= $1
                AND ($2::timestamptz IS NULL OR (registered_at, id) > ($2, $3))
              ORDER BY registered_at, id LIMIT $4",
            &[&before, &at, &id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Pending {
            id: r.get(0),
            member_id: r.get(1),
            registered_at: r.get(2),
            quiet_since: r.get(3),
        })
        .collect())
}

/// Up to `limit` members `READY` in the live members read model and last
/// active at or before `quiet_before`, in order of last activity then id,
/// after `after`: an index range (`members_quiet_since`), never the log.
pub async fn quiet_members(
    client: &impl GenericClient,
    quiet_before: DateTime<Utc>,
    after: Option<&(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<(DateTime<Utc>, String)>, tokio_postgres::Error> {
    let (at, id) = after.map_or((None, ""), |(at, id)| (Some(*at), id.as_str()));
    let rows = client
        .query(
            "SELECT last_active_at, id FROM members.members
              WHERE status = 'READY' AND last_active_at <= $1
                AND ($2::timestamptz IS NULL OR (last_active_at, id) > ($2, $3))
              ORDER BY last_active_at, id LIMIT $4",
            &[&quiet_before, &at, &id, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// How many of the policy's targets are pending.
pub async fn pending_count(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT count(*) FROM dormancy.pending", &[])
        .await?
        .get(0))
}

/// Whether member `member` has a target still open (`PRE_DORMANT` or
/// `DORMANT`) in the live managerpage other than `except`: an operator's,
/// or the policy's of an earlier quiet period not yet released. The policy
/// then makes no second one.
pub async fn other_target_open(
    client: &impl GenericClient,
    member: &str,
    except: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM managerpage.targets
                             WHERE member_id = $1 AND id <> $2
                               AND status IN ('PRE_DORMANT', 'DORMANT'))",
            &[&member, &except],
        )
        .await?;
    Ok(row.get(0))
}

/// What the scheduler keeps between passes and shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scheduler {
    /// The last member the scan handled (last activity, id): the next pass
    /// starts after it.
    pub cursor: Option<(DateTime<Utc>, String)>,
    /// Passes finished.
    pub passes: i64,
    /// Targets registered by every pass together.
    pub registered: i64,
    /// Targets marked dormant by every pass together.
    pub marked: i64,
    /// Targets lifted by every pass together (the process manager's lifts
    /// not counted).
    pub lifted: i64,
    /// When the last pass started (wall time).
    pub last_pass_started: Option<DateTime<Utc>>,
    /// When the last pass finished (wall time).
    pub last_pass_finished: Option<DateTime<Utc>>,
    /// The policy's time during the last pass (differs from wall time only
    /// when the clock is moved: `DORMANCY_CLOCK_OFFSET_SECONDS`).
    pub last_pass_now: Option<DateTime<Utc>>,
}

/// The scheduler's row.
pub async fn scheduler(client: &impl GenericClient) -> Result<Scheduler, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT cursor_at, cursor_id, passes, registered, marked, lifted,
                    last_pass_started, last_pass_finished, last_pass_now
               FROM dormancy.scheduler",
            &[],
        )
        .await?;
    let cursor_at: Option<DateTime<Utc>> = row.get(0);
    let cursor_id: Option<String> = row.get(1);
    Ok(Scheduler {
        cursor: cursor_at.zip(cursor_id),
        passes: row.get(2),
        registered: row.get(3),
        marked: row.get(4),
        lifted: row.get(5),
        last_pass_started: row.get(6),
        last_pass_finished: row.get(7),
        last_pass_now: row.get(8),
    })
}

/// What a stretch of a pass did, added to the row: its new cursor and
/// counts.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The last member the scan handled, when it moved.
    pub cursor: Option<(DateTime<Utc>, String)>,
    /// Targets registered.
    pub registered: i64,
    /// Targets marked dormant.
    pub marked: i64,
    /// Targets lifted.
    pub lifted: i64,
}

/// Records `progress`.
pub async fn advance(
    client: &impl GenericClient,
    progress: &Progress,
) -> Result<(), tokio_postgres::Error> {
    let (at, id) = progress
        .cursor
        .as_ref()
        .map_or((None, None), |(at, id)| (Some(*at), Some(id.as_str())));
    client
        .execute(
            "UPDATE dormancy.scheduler
                SET cursor_at = coalesce($1, cursor_at), cursor_id = coalesce($2, cursor_id),
                    registered = registered + $3, marked = marked + $4, lifted = lifted + $5",
            &[
                &at,
                &id,
                &progress.registered,
                &progress.marked,
                &progress.lifted,
            ],
        )
        .await
        .map(drop)
}

/// Records that a pass started at `started`, on the policy's time `now`.
pub async fn pass_started(
    client: &impl GenericClient,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE dormancy.scheduler SET last_pass_started = $1, last_pass_now = $2",
            &[&started, &now],
        )
        .await
        .map(drop)
}

/// Records that a pass finished at `finished`.
pub async fn pass_finished(
    client: &impl GenericClient,
    finished: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE dormancy.scheduler SET passes = passes + 1, last_pass_finished = $1",
            &[&finished],
        )
        .await
        .map(drop)
}

/// Starts the scan of quiet members from the beginning again (after an
/// import of history older than the cursor). Nothing is registered twice:
/// the members already handled are looked at again, and found done.
pub async fn rescan(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE dormancy.scheduler SET cursor_at = NULL, cursor_id = NULL",
            &[],
        )
        .await
        .map(drop)
}
