//! The read side's tables, in one place: for each read model its schema, its
//! row type, the projector's batch load and upsert, and the query API's
//! typed queries ([`managerpage`], [`members`], [`messages`], [`phones`],
//! [`timeline`]); the [`bookkeeping`] every consumer shares (checkpoints,
//! status, the log's head, lag); and what the dormancy policy's scheduler
//! keeps ([`dormancy`]). The projector writes through this crate and the query API
//! reads through it, so no SQL or column position lives in either.
//!
//! Each read model lives in its own PostgreSQL schema, named after it, so a
//! rebuild can fill a fresh schema (`{name}__rebuild`) and swap it in.

mod batch;
pub mod bookkeeping;
pub mod compare;
pub mod copies;
pub mod dormancy;
pub mod erasure;
pub mod managerpage;
pub mod members;
pub mod messages;
pub mod people;
pub mod phones;
pub mod timeline;

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use async_trait::async_trait;
use tokio_postgres::{Client, Transaction};

/// One read model's storage, implemented once per read model: its name,
/// tables, DDL, and the projector's batch load and upsert. The projector's
/// models name theirs (`Model::Table`); tooling reaches it as [`Storage`].
#[async_trait]
pub trait Table: Send + Sync + 'static {
    /// The read model's name, and its live schema's.
    const NAME: &'static str;
    /// Its tables in the schema, each with its key column.
    const TABLES: &'static [(&'static str, &'static str)];
    /// A row, keyed by one id.
    type Row: Send + Sync;

    /// Creates the tables in `schema` (idempotent).
    fn ddl(schema: &str) -> String;

    /// The existing rows among `ids`.
    async fn load(
        tx: &Transaction<'_>,
        schema: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Self::Row>, tokio_postgres::Error>;

    /// Inserts or replaces `rows`.
    async fn save(
        tx: &Transaction<'_>,
        schema: &str,
        rows: Vec<Self::Row>,
    ) -> Result<(), tokio_postgres::Error>;

    /// What of a row the table counts beside the rows (managerpage: its
    /// status); `None` for tables that keep no count.
    fn tally(_row: &Self::Row) -> Option<&'static str> {
        None
    }

    /// Moves the kept counts by `moved` (a value, and how many more or
    /// fewer rows have it), in the batch's transaction.
    async fn recount(
        _tx: &Transaction<'_>,
        _schema: &str,
        _moved: &[(&'static str, i64)],
    ) -> Result<(), tokio_postgres::Error> {
        Ok(())
    }

    /// Adds a batch's [`Moves`] (per hour, how many rows took each tally
    /// and how many left it) to the kept history, in the batch's
    /// transaction; `None` for tables that keep none.
    fn history_table() -> Option<&'static str> {
        None
    }
}

/// How a batch moved a table's tallies over time: per hour (UTC) of the
/// events' recorded times and per value, how many rows took the value
/// (`entered`) and how many left it. Kept per hour beside the rows
/// ([`Table::history_table`]), so counts over time are read from a few
/// rows per hour, never from the rows or the log; a rebuild writes the same
/// history, since the hours are the events' own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moves(HashMap<(DateTime<Utc>, &'static str), (i64, i64)>);

impl Moves {
    /// One row went from tally `from` to `to` (either `None`: no tally) by
    /// an event recorded `at`.
    pub fn record(
        &mut self,
        at: DateTime<Utc>,
        from: Option<&'static str>,
        to: Option<&'static str>,
    ) {
        if from == to {
            return;
        }
        let hour = at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at);
        if let Some(from) = from {
            self.0.entry((hour, from)).or_default().1 += 1;
        }
        if let Some(to) = to {
            self.0.entry((hour, to)).or_default().0 += 1;
        }
    }

    /// Nothing moved.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Adds `moves` to `{schema}.{table}` and to its daily roll-up
/// `{schema}.{table}_daily` in one statement (see [`history_ddl`]).
async fn add_history(
    tx: &Transaction<'_>,
    schema: &str,
    table: &str,
    moves: &Moves,
) -> Result<(), tokio_postgres::Error> {
    let n = moves.0.len();
    let (mut hours, mut values) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut entered, mut left) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for ((hour, value), (took, went)) in &moves.0 {
        hours.push(*hour);
        values.push(*value);
        entered.push(*took);
        left.push(*went);
    }
    tx.execute(
        &format!(
            "WITH moved AS (
                  SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::int8[], $4::int8[])
                      AS m(hour, status, entered, gone)),
              hourly AS (
                  INSERT INTO {schema}.{table} AS h (hour, status, entered, \"left\")
                       SELECT hour, status, entered, gone FROM moved
                  ON CONFLICT (hour, status) DO UPDATE
                     SET entered = h.entered + EXCLUDED.entered,
                         \"left\" = h.\"left\" + EXCLUDED.\"left\")
             INSERT INTO {schema}.{table}_daily AS d (day, status, entered, \"left\")
                  SELECT date_trunc('day', hour, 'UTC'), status, sum(entered)::int8, sum(gone)::int8
                    FROM moved GROUP BY 1, 2
             ON CONFLICT (day, status) DO UPDATE
                SET entered = d.entered + EXCLUDED.entered, \"left\" = d.\"left\" + EXCLUDED.\"left\""
        ),
        &[&hours, &values, &entered, &left],
    )
    .await
    .map(drop)
}

/// How long a bucket of [`history`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// An hour (UTC).
    Hour,
    /// A day (UTC).
    Day,
}

/// One bucket of one status in [`history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The bucket's start.
    pub at: DateTime<Utc>,
    /// The status (or outcome).
    pub status: String,
    /// Rows that took it during the bucket.
    pub entered: i64,
    /// Rows that left it during the bucket.
    pub left: i64,
    /// Rows with it at the bucket's end.
    pub total: i64,
}

/// The kept history ([`Moves`]) of `{schema}.{table}` in buckets from
/// `from` to before `to`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// How many rows had each status when `from` began.
    pub before: HashMap<String, i64>,
    /// Per bucket that saw a move and status, in time order: what entered
    /// and left and how many there were at its end.
    pub buckets: Vec<Counted>,
}

/// The [`History`] of `{schema}.{table}` from `from` (the start of a
/// bucket) to before `to`, in buckets, its totals counted back from `now`
/// (the counts kept beside the rows, read in the same snapshot): reads only
/// the history's rows from `from` on (per hour, or from the daily roll-up
/// per day: a few rows per bucket, by its key), never the rows before or
/// the read model's own.
pub async fn history<S: std::hash::BuildHasher>(
    client: &impl tokio_postgres::GenericClient,
    (schema, table): (&str, &str),
    bucket: Bucket,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    now: &HashMap<String, i64, S>,
) -> Result<History, tokio_postgres::Error> {
    let (table, at) = match bucket {
        Bucket::Hour => (table.to_owned(), "hour"),
        Bucket::Day => (format!("{table}_daily"), "day"),
    };
    let rows = client
        .query(
            &format!(
                "SELECT {at}, status, entered, \"left\" FROM {schema}.{table}
                  WHERE {at} >= $1 ORDER BY 1 DESC, 2"
            ),
            &[&from],
        )
        .await?;
    // Back from now: each bucket's total is what there is now less what
    // moved after it.
    let mut running: HashMap<String, i64> =
        now.iter().map(|(status, n)| (status.clone(), *n)).collect();
    let mut buckets = Vec::new();
    for row in &rows {
        let (at, status): (DateTime<Utc>, String) = (row.get(0), row.get(1));
        let (entered, left): (i64, i64) = (row.get(2), row.get(3));
        let total = running.entry(status.clone()).or_default();
        if at < to {
            buckets.push(Counted {
                at,
                status,
                entered,
                left,
                total: *total,
            });
        }
        *total -= entered - left;
    }
    buckets.reverse();
    Ok(History {
        before: running,
        buckets,
    })
}

/// A history of tallies ([`Moves`]) per hour and status, and its daily
/// roll-up (`{table}_daily`). Created on a schema that already has rows,
/// it starts with each status's rows as entered in the hour of its creation
/// (the rows locked meanwhile): the counts over time are right from then
/// on, and `replay rebuild` fills the hours before from the log. A roll-up
/// created after its history is summed from it.
pub(crate) fn history_ddl(schema: &str, table: &str, rows: &str) -> String {
    format!(
        "DO $$ BEGIN
             IF to_regclass('{schema}.{table}') IS NULL THEN
                 CREATE TABLE {schema}.{table} (
                     hour timestamptz NOT NULL,
                     status text NOT NULL,
                     entered bigint NOT NULL,
                     \"left\" bigint NOT NULL,
                     PRIMARY KEY (hour, status)
                 );
                 LOCK TABLE {schema}.{rows} IN SHARE MODE;
                 INSERT INTO {schema}.{table}
                      SELECT date_trunc('hour', now(), 'UTC'), status, count(*), 0
                        FROM {schema}.{rows} GROUP BY status;
             END IF;
             IF to_regclass('{schema}.{table}_daily') IS NULL THEN
                 CREATE TABLE {schema}.{table}_daily (
                     day timestamptz NOT NULL,
                     status text NOT NULL,
                     entered bigint NOT NULL,
                     \"left\" bigint NOT NULL,
                     PRIMARY KEY (day, status)
                 );
                 LOCK TABLE {schema}.{table} IN SHARE MODE;
                 INSERT INTO {schema}.{table}_daily
                      SELECT date_trunc('day', hour, 'UTC'), status, sum(entered), sum(\"left\")
                        FROM {schema}.{table} GROUP BY 1, 2;
             END IF;
         END $$;"
    )
}

/// The tallies ([`Table::tally`]) of rows as loaded, before a batch
/// changes them: what [`write`] takes away from the counts.
pub fn tallies<T: Table, S: std::hash::BuildHasher>(
    rows: &HashMap<String, T::Row, S>,
) -> Vec<&'static str> {
    rows.values().filter_map(T::tally).collect()
}

/// Writes a batch's `rows` and moves the table's counts by what the batch
/// changed: one less for each value the rows had (`before`, their
/// [`tallies`] as loaded), one more for each they have now. In the batch's
/// transaction, so the counts and the rows never disagree.
pub async fn write<T: Table>(
    tx: &Transaction<'_>,
    schema: &str,
    before: &[&'static str],
    rows: Vec<T::Row>,
    over_time: &Moves,
) -> Result<(), tokio_postgres::Error> {
    if let Some(table) = T::history_table().filter(|_| !over_time.is_empty()) {
        add_history(tx, schema, table, over_time).await?;
    }
    let mut moved: HashMap<&'static str, i64> = HashMap::new();
    for value in before {
        *moved.entry(value).or_default() -= 1;
    }
    for value in rows.iter().filter_map(T::tally) {
        *moved.entry(value).or_default() += 1;
    }
    T::save(tx, schema, rows).await?;
    let moved: Vec<(&'static str, i64)> = moved.into_iter().filter(|(_, n)| *n != 0).collect();
    if moved.is_empty() {
        return Ok(());
    }
    T::recount(tx, schema, &moved).await
}

/// What tooling needs to know of a read model's storage, whatever its rows.
#[derive(Debug, Clone, Copy)]
pub struct Storage {
    /// Its name, and its live schema's.
    pub name: &'static str,
    /// Its tables and their key columns.
    pub tables: &'static [(&'static str, &'static str)],
    /// Its DDL for a schema.
    pub ddl: fn(&str) -> String,
}

impl Storage {
    /// The storage of `T`.
    pub const fn of<T: Table>() -> Self {
        Self {
            name: T::NAME,
            tables: T::TABLES,
            ddl: T::ddl,
        }
    }
}

/// The storage of every read model: the one list of them.
pub const STORAGE: [Storage; 5] = [
    Storage::of::<managerpage::ManagerpageTable>(),
    Storage::of::<members::MembersTable>(),
    Storage::of::<messages::MessagesTable>(),
    Storage::of::<phones::PhonesTable>(),
    Storage::of::<timeline::TimelineTable>(),
];

/// The read models there are, by name, in [`STORAGE`] order.
pub const NAMES: [&str; 5] = [
    STORAGE[0].name,
    STORAGE[1].name,
    STORAGE[2].name,
    STORAGE[3].name,
    STORAGE[4].name,
];

/// SQL that drops `schema` and forgets its consumer's checkpoint when its
/// `table` still has `column`: a layout from before personal data was
/// stored sealed ([`people`]). The projector then builds it again from the
/// log, so no clear value of an older version outlives the upgrade.
pub(crate) fn drop_older_layout(schema: &str, table: &str, column: &str) -> String {
    format!(
        "DO $$ BEGIN
             IF EXISTS (SELECT 1 FROM information_schema.columns
                         WHERE table_schema = '{schema}' AND table_name = '{table}'
                           AND column_name = '{column}') THEN
                 DROP SCHEMA {schema} CASCADE;
                 IF to_regclass('projector.consumers') IS NOT NULL THEN
                     DELETE FROM projector.consumers WHERE name = '{schema}';
                 END IF;
             END IF;
         END $$;"
    )
}

/// Runs read-side DDL under the read side's migration lock, so projector
/// replicas and the query API can create the same tables at once without
/// tripping over each other.
pub async fn create_tables(client: &Client, ddl: &str) -> Result<(), tokio_postgres::Error> {
    mileage_store::postgres::create_under_lock(client, "mileage.projector.migrate", ddl).await
}

/// Creates everything the read side needs (bookkeeping and every read
/// model's live tables), so a reader that starts before any projector finds
/// empty tables rather than missing ones. Safe to run from every service at
/// once.
pub async fn create_read_side(client: &Client) -> Result<(), tokio_postgres::Error> {
    bookkeeping::migrate(client).await?;
    for storage in STORAGE {
        create_tables(client, &(storage.ddl)(storage.name)).await?;
    }
    Ok(())
}

/// Whether `schema` is a plain lower-case identifier, safe to put in SQL.
pub fn is_plain_identifier(schema: &str) -> bool {
    !schema.is_empty()
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
