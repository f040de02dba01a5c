//! `phones`: who holds each phone number, by the number's keyed index (the
//! HMAC that names its `memberPhone-{index}` stream), never by the number.
//! The holder is kept as the claim names them: sealed under the claim's own
//! key, so once that key goes with the person the number leads to no one.
//! The projector writes it with [`PhonesTable`]; the query API's search by
//! number reads it with [`holder`].

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use tokio_postgres::{Row, Transaction};

use crate::Table;

/// The projection's name, and its live schema's.
pub const NAME: &str = "phones";
/// The columns [`phone`] reads, in its order.
const COLUMNS: &str = "phone_index, holder, updated_at, last_position";

/// The columns [`PhonesTable::save`] writes, in its parameters' order.
const UPSERT: &[(&str, &str)] = &[
    ("phone_index", "text"),
    ("holder", "text"),
    ("updated_at", "timestamptz"),
    ("last_position", "text"),
];

/// Its tables and their key columns.
pub const TABLES: &[(&str, &str)] = &[("phones", "phone_index")];

/// One number's holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneRow {
    /// The number's keyed index (its claim stream's id).
    pub phone_index: String,
    /// The member holding it as the claim names them: a sealed member id
    /// ([`crate::people::stored`]), or the id itself for claims from before
    /// holders were sealed; `None` while nobody holds it.
    pub holder: Option<String>,
    /// When it was last claimed or given back.
    pub updated_at: DateTime<Utc>,
    /// The last event applied.
    pub last_position: String,
}

/// The phones read model's storage.
pub struct PhonesTable;

#[async_trait]
impl Table for PhonesTable {
    const NAME: &'static str = NAME;
    const TABLES: &'static [(&'static str, &'static str)] = TABLES;
    type Row = PhoneRow;

    /// Creates the tables in `schema` (idempotent).
    fn ddl(schema: &str) -> String {
        format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.phones (
                 phone_index text PRIMARY KEY,
                 holder text,
                 updated_at timestamptz NOT NULL,
                 last_position text NOT NULL
             );"
        )
    }

    /// The existing rows among `ids`.
    async fn load(
        tx: &Transaction<'_>,
        schema: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Self::Row>, tokio_postgres::Error> {
        crate::batch::load(
            tx,
            (schema, "phones", "phone_index"),
            (COLUMNS, ids),
            phone,
            |row| row.phone_index.clone(),
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
        let (mut index, mut holder) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut updated, mut last) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for row in rows {
            index.push(row.phone_index);
            holder.push(row.holder);
            updated.push(row.updated_at);
            last.push(row.last_position);
        }
        tx.execute(
            &crate::batch::upsert_sql(schema, "phones", "phone_index", UPSERT),
            &[&index, &holder, &updated, &last],
        )
        .await
        .map(drop)
    }
}

/// A row read with [`COLUMNS`].
fn phone(row: &Row) -> PhoneRow {
    PhoneRow {
        phone_index: row.get(0),
        holder: row.get(1),
        updated_at: row.get(2),
        last_position: row.get(3),
    }
}

/// Who holds the number whose keyed index is `phone_index`, as the claim
/// names them; `None` when nobody does.
pub async fn holder(
    client: &Client,
    phone_index: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached("SELECT holder FROM phones.phones WHERE phone_index = $1")
        .await?;
    let row = client.query_opt(&statement, &[&phone_index]).await?;
    Ok(row.and_then(|row| row.get(0)))
}
