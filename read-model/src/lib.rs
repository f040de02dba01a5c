//! The read side's tables, in one place: for each read model its schema, its
//! row type, the projector's batch load and upsert, and the query API's
//! typed queries ([`managerpage`], [`members`], [`messages`]); and the
//! [`bookkeeping`] every consumer shares (checkpoints, status, the log's
//! head, lag). The projector writes through this crate and the query API
//! reads through it, so no SQL or column position lives in either.
//!
//! Each read model lives in its own PostgreSQL schema, named after it, so a
//! rebuild can fill a fresh schema (`{name}__rebuild`) and swap it in.

mod batch;
pub mod bookkeeping;
pub mod compare;
pub mod copies;
pub mod erasure;
pub mod managerpage;
pub mod members;
pub mod messages;
pub mod people;
pub mod phones;
pub mod timeline;

use std::collections::HashMap;

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
) -> Result<(), tokio_postgres::Error> {
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
