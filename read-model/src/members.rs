//! `members`: each member's status and points balance, with their phone
//! number and nickname sealed (opened when read: see [`crate::people`]). The projector writes it
//! with [`MembersTable`]; the query API reads it with [`by_id`].

use std::collections::HashMap;

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use tokio_postgres::{Row, Transaction};

use crate::Table;

/// The projection's name, and its live schema's.
pub const NAME: &str = "members";
/// The columns [`member`] reads, in its order.
const COLUMNS: &str = "id, status, balance, phone_sealed, nickname_sealed, joined_at, updated_at, \
                       last_position, last_active_at, dormancy_exclusion";

/// The columns [`MembersTable::save`] writes, in its parameters' order.
const UPSERT: &[(&str, &str)] = &[
    ("id", "text"),
    ("status", "text"),
    ("balance", "int8"),
    ("phone_sealed", "text"),
    ("nickname_sealed", "text"),
    ("joined_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("last_position", "text"),
    ("last_active_at", "timestamptz"),
    ("dormancy_exclusion", "text"),
];

/// Its tables and their key columns.
pub const TABLES: &[(&str, &str)] = &[("members", "id")];

/// A member's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub id: String,
    /// `READY` or `WITHDRAWN` (`ACTIVE` in rows written before 2026-12).
    pub status: String,
    /// Points.
    pub balance: i64,
    /// Their phone number, sealed ([`crate::people::stored`]).
    pub phone_sealed: Option<String>,
    /// Their nickname, sealed.
    pub nickname_sealed: Option<String>,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// The last event applied.
    pub last_position: String,
    /// Their last activity: when they joined (a release's re-join too),
    /// last earned or last used points. What the dormancy policy measures
    /// quiet from (the events' own times, as the policy reads them from
    /// the log).
    pub last_active_at: DateTime<Utc>,
    /// Why an operator took them out of the dormancy policy, while out.
    pub dormancy_exclusion: Option<String>,
}

/// The members read model's storage.
pub struct MembersTable;

#[async_trait]
impl Table for MembersTable {
    const NAME: &'static str = NAME;
    const TABLES: &'static [(&'static str, &'static str)] = TABLES;
    type Row = MemberRow;

    /// Creates the tables in `schema` (idempotent).
    fn ddl(schema: &str) -> String {
        format!(
            "{}
             CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.members (
                 id text PRIMARY KEY,
                 status text NOT NULL,
                 balance bigint NOT NULL,
                 phone_sealed text,
                 nickname_sealed text,
                 joined_at timestamptz NOT NULL,
                 updated_at timestamptz NOT NULL,
                 last_position text NOT NULL
             );",
            crate::drop_older_layout(schema, "members", "phone_masked")
        ) + &last_active_ddl(schema)
    }

    /// The existing rows among `ids`.
    async fn load(
        tx: &Transaction<'_>,
        schema: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Self::Row>, tokio_postgres::Error> {
        crate::batch::load(
            tx,
            (schema, "members", "id"),
            (COLUMNS, ids),
            member,
            |member| member.id.clone(),
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
        let (mut id, mut status, mut balance) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut phone, mut nickname) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut joined, mut updated, mut last) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut active, mut excluded) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for row in rows {
            active.push(row.last_active_at);
            excluded.push(row.dormancy_exclusion);
            id.push(row.id);
            status.push(row.status);
            balance.push(row.balance);
            phone.push(row.phone_sealed);
            nickname.push(row.nickname_sealed);
            joined.push(row.joined_at);
            updated.push(row.updated_at);
            last.push(row.last_position);
        }
        tx.execute(
            &crate::batch::upsert_sql(schema, "members", "id", UPSERT),
            &[
                &id, &status, &balance, &phone, &nickname, &joined, &updated, &last, &active,
                &excluded,
            ],
        )
        .await
        .map(drop)
    }
}

/// A row read with [`COLUMNS`].
fn member(row: &Row) -> MemberRow {
    MemberRow {
        id: row.get(0),
        status: row.get(1),
        balance: row.get(2),
        phone_sealed: row.get(3),
        nickname_sealed: row.get(4),
        joined_at: row.get(5),
        updated_at: row.get(6),
        last_position: row.get(7),
        last_active_at: row.get(8),
        dormancy_exclusion: row.get(9),
    }
}

/// Each member's last activity, and the index the dormancy policy scans
/// quiet members by (in order of last activity, then id, so a scan can
/// resume after the last member it handled). Added to a schema from before it from the rows: a
/// member still `READY` has had no event but their join, earns and uses,
/// so their last change is their last activity.
fn last_active_ddl(schema: &str) -> String {
    format!(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                             WHERE table_schema = '{schema}' AND table_name = 'members'
                               AND column_name = 'last_active_at') THEN
                 ALTER TABLE {schema}.members ADD COLUMN last_active_at timestamptz;
                 UPDATE {schema}.members SET last_active_at = updated_at;
                 ALTER TABLE {schema}.members ALTER COLUMN last_active_at SET NOT NULL;
             END IF;
         END $$;
         ALTER TABLE {schema}.members ADD COLUMN IF NOT EXISTS dormancy_exclusion text;
         DROP INDEX IF EXISTS {schema}.members_quiet;
         CREATE INDEX IF NOT EXISTS members_quiet_since
             ON {schema}.members (last_active_at, id) WHERE status = 'READY';"
    )
}

/// The member `id` in the live read model.
pub async fn by_id(client: &Client, id: &str) -> Result<Option<MemberRow>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM members.members WHERE id = $1"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&id]).await?;
    Ok(row.as_ref().map(member))
}
