//! `timeline`: every event of a dormant target (its own stream and its
//! notice's) and of a member, one row each, with its time, type, actor,
//! correlation id and data (personal fields sealed, as the event holds
//! them: opened when read, see [`crate::people`]). So the console shows who
//! did what to whom, and a member's points history, without reading the
//! log. The projector writes it with [`TimelineTable`]; the query API reads
//! one subject's entries with [`of`].

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use crate::Table;

/// The projection's name, and its live schema's.
pub const NAME: &str = "timeline";
/// The columns [`entry`] reads, in its order.
const COLUMNS: &str = "event_id, subject, stream, commit_pos, prepare_pos, at, event_type, \
                       actor, correlation_id, data";

/// The columns [`TimelineTable::save`] writes, in its parameters' order.
const UPSERT: &[(&str, &str)] = &[
    ("event_id", "text"),
    ("subject", "text"),
    ("stream", "text"),
    ("commit_pos", "int8"),
    ("prepare_pos", "int8"),
    ("at", "timestamptz"),
    ("event_type", "text"),
    ("actor", "text"),
    ("correlation_id", "uuid"),
    ("data", "text"),
    ("last_position", "text"),
];

/// Its tables and their key columns. Like every read model's table, it
/// has `last_position` (here the entry's own), which `replay verify` reads.
pub const TABLES: &[(&str, &str)] = &[("entries", "event_id")];

/// One event of a subject's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The event's id: an event is one entry, however often it is applied.
    pub event_id: String,
    /// Whose timeline: `dormantMember-{id}` (a target: its events and its
    /// notice's) or `member-{id}`.
    pub subject: String,
    /// The stream the event is on.
    pub stream: String,
    /// Its place in the log, as two numbers (entries are listed in it).
    pub position: (i64, i64),
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// Its type, e.g. `DormantMemberChanged`.
    pub event_type: String,
    /// Who caused it (`manager:kim`, `system:notices`); `None` for events
    /// from before actors were recorded.
    pub actor: Option<String>,
    /// Shared by every event of one operator action.
    pub correlation_id: Uuid,
    /// The event's data in its current schema version, as JSON text, with
    /// its personal fields sealed.
    pub data: String,
}

/// The timeline read model's storage.
pub struct TimelineTable;

#[async_trait]
impl Table for TimelineTable {
    const NAME: &'static str = NAME;
    const TABLES: &'static [(&'static str, &'static str)] = TABLES;
    type Row = Entry;

    /// Creates the tables in `schema` (idempotent).
    fn ddl(schema: &str) -> String {
        format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.entries (
                 event_id text PRIMARY KEY,
                 subject text NOT NULL,
                 stream text NOT NULL,
                 commit_pos bigint NOT NULL,
                 prepare_pos bigint NOT NULL,
                 at timestamptz NOT NULL,
                 event_type text NOT NULL,
                 actor text,
                 correlation_id uuid NOT NULL,
                 data text NOT NULL,
                 last_position text NOT NULL
             );
             CREATE INDEX IF NOT EXISTS entries_by_subject
                 ON {schema}.entries (subject, commit_pos, prepare_pos);"
        )
    }

    /// Nothing: an entry never changes once written, and writing it again
    /// (the same event applied twice) writes the same row.
    async fn load(
        _tx: &Transaction<'_>,
        _schema: &str,
        _ids: &[String],
    ) -> Result<HashMap<String, Self::Row>, tokio_postgres::Error> {
        Ok(HashMap::new())
    }

    /// Inserts or replaces `rows`.
    async fn save(
        tx: &Transaction<'_>,
        schema: &str,
        rows: Vec<Self::Row>,
    ) -> Result<(), tokio_postgres::Error> {
        let n = rows.len();
        let mut ids = Vec::with_capacity(n);
        let mut subjects = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        let mut commits = Vec::with_capacity(n);
        let mut prepares = Vec::with_capacity(n);
        let mut ats = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut actors = Vec::with_capacity(n);
        let mut correlations = Vec::with_capacity(n);
        let mut data = Vec::with_capacity(n);
        let mut last = Vec::with_capacity(n);
        for row in rows {
            last.push(format!("{}-{}", row.position.0, row.position.1));
            ids.push(row.event_id);
            subjects.push(row.subject);
            streams.push(row.stream);
            commits.push(row.position.0);
            prepares.push(row.position.1);
            ats.push(row.at);
            types.push(row.event_type);
            actors.push(row.actor);
            correlations.push(row.correlation_id);
            data.push(row.data);
        }
        tx.execute(
            &crate::batch::upsert_sql(schema, "entries", "event_id", UPSERT),
            &[
                &ids,
                &subjects,
                &streams,
                &commits,
                &prepares,
                &ats,
                &types,
                &actors,
                &correlations,
                &data,
                &last,
            ],
        )
        .await
        .map(drop)
    }
}

/// A row read with [`COLUMNS`].
fn entry(row: &Row) -> Entry {
    Entry {
        event_id: row.get(0),
        subject: row.get(1),
        stream: row.get(2),
        position: (row.get(3), row.get(4)),
        at: row.get(5),
        event_type: row.get(6),
        actor: row.get(7),
        correlation_id: row.get(8),
        data: row.get(9),
    }
}

/// Up to `limit` entries of `subject` in the live read model, in log order,
/// after the position `after` when given.
pub async fn of(
    client: &Client,
    subject: &str,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<Entry>, tokio_postgres::Error> {
    let (commit, prepare) = after.unwrap_or((-1, -1));
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM timeline.entries \
             WHERE subject = $1 AND (commit_pos, prepare_pos) > ($2, $3) \
             ORDER BY commit_pos, prepare_pos LIMIT $4"
        ))
        .await?;
    let rows = client
        .query(&statement, &[&subject, &commit, &prepare, &limit])
        .await?;
    Ok(rows.iter().map(entry).collect())
}
