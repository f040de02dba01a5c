//! `managerpage`: one row per dormant target, as operators see it (phone
//! number and nickname sealed, opened when read: see [`crate::people`];
//! status, the notice's status, times). The
//! projector writes it with [`ManagerpageTable`] a batch at a time; the
//! query API reads it with [`page`], [`counts`] and [`by_id`], borrowing the
//! rows' text instead of copying it.

use std::collections::HashMap;

use async_trait::async_trait;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use tokio_postgres::{Row, Transaction};

use crate::Table;

/// The projection's name, and its live schema's.
pub const NAME: &str = "managerpage";
/// Its tables and their key columns.
pub const TABLES: &[(&str, &str)] = &[("targets", "id")];
/// Statuses a target can have, in lifecycle order.
pub const STATUSES: [&str; 4] = ["PRE_DORMANT", "DORMANT", "DESTRUCTION", "CLEARED"];

/// A dormant target's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    /// The member it was registered for.
    pub member_id: String,
    /// The phone number, sealed ([`crate::people::stored`]).
    pub phone_sealed: Option<String>,
    pub nickname_sealed: Option<String>,
    /// `PRE_DORMANT`, `DORMANT`, `DESTRUCTION` or `CLEARED`.
    pub status: String,
    /// `PENDING` once dormant, then `SENT` or `FAILED`.
    pub message_status: Option<String>,
    /// The member the person re-joined as, once `CLEARED`.
    pub rejoined_member_id: Option<String>,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The registration's place in the log: the list's stable order.
    pub registered_position: (i64, i64),
    /// The last event applied to it.
    pub last_position: String,
}

/// The managerpage read model's storage.
pub struct ManagerpageTable;

#[async_trait]
impl Table for ManagerpageTable {
    const NAME: &'static str = NAME;
    const TABLES: &'static [(&'static str, &'static str)] = TABLES;
    type Row = Target;

    /// Creates the tables in `schema` (idempotent).
    fn ddl(schema: &str) -> String {
        format!(
            "{}
             CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.targets (
                 id text PRIMARY KEY,
                 member_id text NOT NULL,
                 phone_sealed text,
                 nickname_sealed text,
                 status text NOT NULL,
                 message_status text,
                 registered_at timestamptz NOT NULL,
                 updated_at timestamptz NOT NULL,
                 registered_commit bigint NOT NULL,
                 registered_prepare bigint NOT NULL,
                 last_position text NOT NULL
             );
             CREATE INDEX IF NOT EXISTS targets_order
                 ON {schema}.targets (registered_commit, registered_prepare);
             CREATE INDEX IF NOT EXISTS targets_status_order
                 ON {schema}.targets (status, registered_commit, registered_prepare);
             CREATE INDEX IF NOT EXISTS targets_member ON {schema}.targets (member_id);
             ALTER TABLE {schema}.targets ADD COLUMN IF NOT EXISTS rejoined_member_id text;
             {}",
            crate::drop_older_layout(schema, "targets", "phone_masked"),
            status_counts_ddl(schema)
        ) + &crate::history_ddl(schema, HISTORY, "targets")
    }

    /// The existing rows among `ids`.
    async fn load(
        tx: &Transaction<'_>,
        schema: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Self::Row>, tokio_postgres::Error> {
        crate::batch::load(
            tx,
            (schema, "targets", "id"),
            (COLUMNS, ids),
            |row| Target::from(view(row)),
            |target| target.id.clone(),
        )
        .await
    }

    /// Inserts or replaces `rows`.
    async fn save(
        tx: &Transaction<'_>,
        schema: &str,
        rows: Vec<Self::Row>,
    ) -> Result<(), tokio_postgres::Error> {
        let mut columns = Columns::default();
        for row in rows {
            columns.push(row);
        }
        let c = &columns;
        tx.execute(
            &crate::batch::upsert_sql(schema, "targets", "id", UPSERT),
            &[
                &c.id,
                &c.member_id,
                &c.phone_sealed,
                &c.nickname_sealed,
                &c.status,
                &c.message_status,
                &c.registered_at,
                &c.updated_at,
                &c.registered_commit,
                &c.registered_prepare,
                &c.last_position,
                &c.rejoined_member_id,
            ],
        )
        .await
        .map(drop)
    }

    /// Its status: the counts [`counts`] reads.
    fn tally(row: &Self::Row) -> Option<&'static str> {
        STATUSES.iter().copied().find(|s| *s == row.status)
    }

    /// Targets entering and leaving each status, per hour: the counts over
    /// time ([`history`]).
    fn history_table() -> Option<&'static str> {
        Some(HISTORY)
    }

    /// Moves the per-status counts.
    async fn recount(
        tx: &Transaction<'_>,
        schema: &str,
        moved: &[(&'static str, i64)],
    ) -> Result<(), tokio_postgres::Error> {
        let (statuses, changes): (Vec<&str>, Vec<i64>) = moved.iter().copied().unzip();
        tx.execute(
            &format!(
                "INSERT INTO {schema}.status_counts AS counts (status, targets)
                      SELECT * FROM UNNEST($1::text[], $2::int8[])
                 ON CONFLICT (status) DO UPDATE SET targets = counts.targets + EXCLUDED.targets"
            ),
            &[&statuses, &changes],
        )
        .await
        .map(drop)
    }
}

/// The targets per status, kept beside the rows in the same transaction
/// ([`crate::write`], [`ManagerpageTable::recount`]), so reading them
/// ([`counts`]) costs the same at a million targets as at ten. Created filled from the rows the first time
/// (a schema from before it), with the rows locked meanwhile.
fn status_counts_ddl(schema: &str) -> String {
    format!(
        "DO $$ BEGIN
             IF to_regclass('{schema}.status_counts') IS NULL THEN
                 CREATE TABLE {schema}.status_counts (
                     status text PRIMARY KEY,
                     targets bigint NOT NULL
                 );
                 LOCK TABLE {schema}.targets IN SHARE MODE;
                 INSERT INTO {schema}.status_counts
                      SELECT status, count(*) FROM {schema}.targets GROUP BY status;
             END IF;
         END $$;"
    )
}

/// The table of targets entering and leaving each status per hour.
pub const HISTORY: &str = "status_history";

/// The columns [`ManagerpageTable::save`] writes, in its parameters' order.
const UPSERT: &[(&str, &str)] = &[
    ("id", "text"),
    ("member_id", "text"),
    ("phone_sealed", "text"),
    ("nickname_sealed", "text"),
    ("status", "text"),
    ("message_status", "text"),
    ("registered_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("registered_commit", "int8"),
    ("registered_prepare", "int8"),
    ("last_position", "text"),
    ("rejoined_member_id", "text"),
];

/// Rows turned into one array per column, for `UNNEST`.
#[derive(Default)]
struct Columns {
    id: Vec<String>,
    member_id: Vec<String>,
    phone_sealed: Vec<Option<String>>,
    nickname_sealed: Vec<Option<String>>,
    status: Vec<String>,
    message_status: Vec<Option<String>>,
    registered_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    registered_commit: Vec<i64>,
    registered_prepare: Vec<i64>,
    last_position: Vec<String>,
    rejoined_member_id: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, row: Target) {
        self.id.push(row.id);
        self.member_id.push(row.member_id);
        self.phone_sealed.push(row.phone_sealed);
        self.nickname_sealed.push(row.nickname_sealed);
        self.status.push(row.status);
        self.message_status.push(row.message_status);
        self.registered_at.push(row.registered_at);
        self.updated_at.push(row.updated_at);
        self.registered_commit.push(row.registered_position.0);
        self.registered_prepare.push(row.registered_position.1);
        self.last_position.push(row.last_position);
        self.rejoined_member_id.push(row.rejoined_member_id);
    }
}

const COLUMNS: &str = "id, member_id, phone_sealed, nickname_sealed, status, message_status, \
                       registered_at, updated_at, registered_commit, registered_prepare, last_position, \
                       rejoined_member_id";

/// The list's four statements: (descending, ascending) x (all, one status).
static LIST_SQL: LazyLock<[String; 4]> = LazyLock::new(|| {
    let list = |ascending: bool, filtered: bool| {
        let (op, direction) = if ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        let filter = if filtered { "status = $4 AND" } else { "" };
        format!(
            "SELECT {COLUMNS} FROM managerpage.targets
              WHERE {filter} (registered_commit, registered_prepare) {op} ($1, $2)
              ORDER BY registered_commit {direction}, registered_prepare {direction}
              LIMIT $3"
        )
    };
    [
        list(false, false),
        list(false, true),
        list(true, false),
        list(true, true),
    ]
});

/// One target by id.
static BY_ID_SQL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM managerpage.targets WHERE id = $1"));

static OF_MEMBER_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM managerpage.targets WHERE member_id = $1 \
         ORDER BY registered_commit DESC, registered_prepare DESC LIMIT $2"
    )
});

/// A target as read, borrowing the database row's text.
#[derive(Debug, Clone, Copy)]
pub struct TargetView<'a> {
    pub id: &'a str,
    pub member_id: &'a str,
    /// Sealed ([`crate::people`]).
    pub phone_sealed: Option<&'a str>,
    /// Sealed.
    pub nickname_sealed: Option<&'a str>,
    pub status: &'a str,
    pub message_status: Option<&'a str>,
    /// The member the person re-joined as, once `CLEARED`.
    pub rejoined_member_id: Option<&'a str>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Where the registration stands in the log: the list's order and cursor.
    pub registered_position: (i64, i64),
    pub last_position: &'a str,
}

impl From<TargetView<'_>> for Target {
    fn from(view: TargetView<'_>) -> Self {
        Self {
            id: view.id.to_owned(),
            member_id: view.member_id.to_owned(),
            phone_sealed: view.phone_sealed.map(str::to_owned),
            nickname_sealed: view.nickname_sealed.map(str::to_owned),
            status: view.status.to_owned(),
            message_status: view.message_status.map(str::to_owned),
            rejoined_member_id: view.rejoined_member_id.map(str::to_owned),
            registered_at: view.registered_at,
            updated_at: view.updated_at,
            registered_position: view.registered_position,
            last_position: view.last_position.to_owned(),
        }
    }
}

/// Targets read for the query API; [`Targets::views`] reads them in place.
#[derive(Default)]
pub struct Targets(Vec<Row>);

impl Targets {
    /// The rows in the order read.
    pub fn views(&self) -> impl Iterator<Item = TargetView<'_>> {
        self.0.iter().map(view)
    }

    /// The first row, if any.
    pub fn first(&self) -> Option<TargetView<'_>> {
        self.0.first().map(view)
    }
}

fn view(row: &Row) -> TargetView<'_> {
    TargetView {
        id: row.get(0),
        member_id: row.get(1),
        phone_sealed: row.get(2),
        nickname_sealed: row.get(3),
        status: row.get(4),
        message_status: row.get(5),
        rejoined_member_id: row.get(11),
        registered_at: row.get(6),
        updated_at: row.get(7),
        registered_position: (row.get(8), row.get(9)),
        last_position: row.get(10),
    }
}

/// Which way a page runs through the registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest registration first (the default).
    NewestFirst,
    /// Oldest registration first.
    OldestFirst,
}

/// Up to `limit` targets after the registration `after` (a previous page's
/// last), in `order`, only those with `status` when given.
pub async fn page(
    client: &Client,
    status: Option<&str>,
    order: Order,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Targets, tokio_postgres::Error> {
    let ascending = order == Order::OldestFirst;
    let start = if ascending {
        (i64::MIN, i64::MIN)
    } else {
        (i64::MAX, i64::MAX)
    };
    let sql = &LIST_SQL[usize::from(ascending) * 2 + usize::from(status.is_some())];
    let (commit, prepare) = after.unwrap_or(start);
    let statement = client.prepare_cached(sql).await?;
    let rows = match status {
        Some(status) => {
            client
                .query(&statement, &[&commit, &prepare, &limit, &status])
                .await?
        }
        None => {
            client
                .query(&statement, &[&commit, &prepare, &limit])
                .await?
        }
    };
    Ok(Targets(rows))
}

/// The number of targets per status (statuses with none left out).
pub async fn counts(client: &Client) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached("SELECT status, targets FROM managerpage.status_counts WHERE targets <> 0")
        .await?;
    let rows = client.query(&statement, &[]).await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Up to `limit` targets registered for member `member_id`, newest first.
pub async fn of_member(
    client: &Client,
    member_id: &str,
    limit: i64,
) -> Result<Targets, tokio_postgres::Error> {
    let statement = client.prepare_cached(&OF_MEMBER_SQL).await?;
    let rows = client.query(&statement, &[&member_id, &limit]).await?;
    Ok(Targets(rows))
}

/// Targets per status and notice outcomes from `from` to before `to`, in
/// buckets: both histories and the counts they are counted back from, read
/// in one snapshot so they agree.
pub async fn over_time(
    client: &mut Client,
    bucket: crate::Bucket,
    range: (DateTime<Utc>, DateTime<Utc>),
) -> Result<(crate::History, crate::History), tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let now: HashMap<String, i64> = tx
        .query("SELECT status, targets FROM managerpage.status_counts", &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let targets = crate::history(&*tx, (NAME, HISTORY), bucket, range, &now).await?;
    let notices = crate::history(
        &*tx,
        (crate::messages::NAME, crate::messages::HISTORY),
        bucket,
        range,
        &HashMap::new(),
    )
    .await?;
    tx.commit().await?;
    Ok((targets, notices))
}

/// The target `id`, as [`Targets`] of at most one row.
pub async fn by_id(client: &Client, id: &str) -> Result<Targets, tokio_postgres::Error> {
    let statement = client.prepare_cached(&BY_ID_SQL).await?;
    let row = client.query_opt(&statement, &[&id]).await?;
    Ok(Targets(row.into_iter().collect()))
}
