//! The store's own schema, applied by the code at connect time. Idempotent and
//! safe when several processes start at once (an advisory lock serialises them).

use deadpool_postgres::Client;

use super::pg_error;
use crate::StoreError;

/// Numbered migrations, applied in order, each once.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "events", include_str!("migrations/0001_events.sql")),
    (
        2,
        "person_key_check",
        include_str!("migrations/0002_person_key_check.sql"),
    ),
    (
        3,
        "store_identity",
        include_str!("migrations/0003_store_identity.sql"),
    ),
    (
        4,
        "trace_parent",
        include_str!("migrations/0004_trace_parent.sql"),
    ),
    (
        5,
        "person_key_tombstones",
        include_str!("migrations/0005_person_key_tombstones.sql"),
    ),
    (6, "actor", include_str!("migrations/0006_actor.sql")),
    (
        7,
        "request_keys",
        include_str!("migrations/0007_request_keys.sql"),
    ),
];

/// Arbitrary constant identifying the migration lock.
const MIGRATION_LOCK: i64 = 0x6d69_6c65_6167_6501;

/// Runs `ddl` in one transaction holding the advisory lock named `lock` (a
/// constant of the caller's), so processes starting together on a new
/// database create the same tables one after another instead of racing on
/// the catalog. The lock is the transaction's, released only at the commit,
/// so the next holder sees what this one created (a session lock released
/// before the commit let a second `CREATE SCHEMA IF NOT EXISTS` fail). The
/// "already exists, skipping" notices of every later start are not logged.
pub async fn create_under_lock(
    client: &tokio_postgres::Client,
    lock: &'static str,
    ddl: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN;
             SET LOCAL client_min_messages = warning;
             SELECT pg_advisory_xact_lock(hashtext('{lock}'));
             {ddl}
             COMMIT;"
        ))
        .await
}

/// Applies every migration not applied yet.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS store_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(pg_error)?;
    for (version, name, sql) in MIGRATIONS {
        let applied = tx
            .query_opt(
                "SELECT 1 FROM store_migrations WHERE version = $1",
                &[version],
            )
            .await
            .map_err(pg_error)?
            .is_some();
        if !applied {
            tracing::info!(version, name, "applying event store migration");
            tx.batch_execute(sql).await.map_err(pg_error)?;
            tx.execute(
                "INSERT INTO store_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(pg_error)?;
        }
    }
    tx.commit().await.map_err(pg_error)
}
