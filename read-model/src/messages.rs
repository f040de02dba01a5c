//! `messages`: the dormant notice of each target: content, outcome,
//! attempts, last error, and where it went (sealed, opened when read: see
//! [`crate::people`]). The projector writes it with [`MessagesTable`];
//! the query API reads it with [`by_target`].

use std::collections::HashMap;

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use tokio_postgres::{Row, Transaction};

use crate::Table;

/// The projection's name, and its live schema's.
pub const NAME: &str = "messages";
/// The columns [`message`] reads, in its order.
const COLUMNS: &str = "target_id, member_id, content, status, attempts, last_error, \
                       phone_sealed, updated_at, last_position";

/// The columns [`MessagesTable::save`] writes, in its parameters' order.
const UPSERT: &[(&str, &str)] = &[
    ("target_id", "text"),
    ("member_id", "text"),
    ("content", "text"),
    ("status", "text"),
    ("attempts", "int4"),
    ("last_error", "text"),
    ("phone_sealed", "text"),
    ("updated_at", "timestamptz"),
    ("last_position", "text"),
];

/// A notice's outcomes.
pub const OUTCOMES: [&str; 2] = ["SENT", "FAILED"];

/// The table of notices sent and failed per hour.
pub const HISTORY: &str = "outcome_history";

/// Its tables and their key columns.
pub const TABLES: &[(&str, &str)] = &[("messages", "target_id")];

/// A target's notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// The dormant target it was about.
    pub target_id: String,
    pub member_id: String,
    /// What was sent.
    pub content: String,
    /// `SENT` or `FAILED`.
    pub status: String,
    /// Delivery attempts made.
    pub attempts: i32,
    /// Why it failed, when it did.
    pub last_error: Option<String>,
    /// Where it went, sealed ([`crate::people::stored`]).
    pub phone_sealed: Option<String>,
    /// When the outcome was recorded (or last changed).
    pub updated_at: DateTime<Utc>,
    /// The last event applied.
    pub last_position: String,
}

/// The messages read model's storage.
pub struct MessagesTable;

#[async_trait]
impl Table for MessagesTable {
    const NAME: &'static str = NAME;
    const TABLES: &'static [(&'static str, &'static str)] = TABLES;
    type Row = MessageRow;

    /// Creates the tables in `schema` (idempotent).
    fn ddl(schema: &str) -> String {
        format!(
            "{}
             CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.messages (
                 target_id text PRIMARY KEY,
                 member_id text NOT NULL,
                 content text NOT NULL,
                 status text NOT NULL,
                 attempts integer NOT NULL,
                 last_error text,
                 phone_sealed text,
                 updated_at timestamptz NOT NULL,
                 last_position text NOT NULL
             );",
            crate::drop_older_layout(schema, "messages", "phone_masked")
        ) + &crate::history_ddl(schema, HISTORY, "messages")
    }

    /// Its outcome, `SENT` or `FAILED`: the notices over time.
    fn tally(row: &Self::Row) -> Option<&'static str> {
        OUTCOMES.iter().copied().find(|s| *s == row.status)
    }

    /// Notices sent and failed, per hour ([`crate::history`]).
    fn history_table() -> Option<&'static str> {
        Some(HISTORY)
    }

    /// The existing rows among `ids`.
    async fn load(
        tx: &Transaction<'_>,
        schema: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Self::Row>, tokio_postgres::Error> {
        crate::batch::load(
            tx,
            (schema, "messages", "target_id"),
            (COLUMNS, ids),
            message,
            |message| message.target_id.clone(),
        )
        .await
    }

    /// Inserts or replaces `rows`.
    async fn save(
        tx: &Transaction<'_>,
        schema: &str,
        rows: Vec<Self::Row>,
    ) -> Result<(), tokio_postgres::Error> {
        let n = rows.len();
        let (mut target, mut member, mut content) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut status, mut attempts, mut error) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut phone, mut updated, mut last) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for row in rows {
            target.push(row.target_id);
            member.push(row.member_id);
            content.push(row.content);
            status.push(row.status);
            attempts.push(row.attempts);
            error.push(row.last_error);
            phone.push(row.phone_sealed);
            updated.push(row.updated_at);
            last.push(row.last_position);
        }
        tx.execute(
            &crate::batch::upsert_sql(schema, "messages", "target_id", UPSERT),
            &[
                &target, &member, &content, &status, &attempts, &error, &phone, &updated, &last,
            ],
        )
        .await
        .map(drop)
    }
}

/// A row read with [`COLUMNS`].
fn message(row: &Row) -> MessageRow {
    MessageRow {
        target_id: row.get(0),
        member_id: row.get(1),
        content: row.get(2),
        status: row.get(3),
        attempts: row.get(4),
        last_error: row.get(5),
        phone_sealed: row.get(6),
        updated_at: row.get(7),
        last_position: row.get(8),
    }
}

/// The notice of dormant target `target_id` in the live read model.
pub async fn by_target(
    client: &Client,
    target_id: &str,
) -> Result<Option<MessageRow>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages.messages WHERE target_id = $1"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&target_id]).await?;
    Ok(row.as_ref().map(message))
}
