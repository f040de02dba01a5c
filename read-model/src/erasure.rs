//! What the erasure process manager remembers between batches: which
//! dormant targets were registered for which member, and which members
//! withdrew, so a withdrawal deletes the person's copies under every key
//! (theirs and their targets'), even a target registered after it.

use tokio_postgres::GenericClient;

/// Creates the tables (idempotent).
pub async fn migrate(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    crate::create_tables(
        client,
        "CREATE SCHEMA IF NOT EXISTS projector;
         CREATE TABLE IF NOT EXISTS projector.erasure_targets (
             member_id text NOT NULL,
             target_id text NOT NULL,
             PRIMARY KEY (member_id, target_id)
         );
         CREATE TABLE IF NOT EXISTS projector.erasure_withdrawn (
             member_id text PRIMARY KEY
         );",
    )
    .await
}

/// Remembers that `target_id` was registered for `member_id`; says whether
/// that member has withdrawn already.
pub async fn target_registered(
    client: &impl GenericClient,
    member_id: &str,
    target_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO projector.erasure_targets (member_id, target_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&member_id, &target_id],
        )
        .await?;
    Ok(client
        .query_opt(
            "SELECT 1 FROM projector.erasure_withdrawn WHERE member_id = $1",
            &[&member_id],
        )
        .await?
        .is_some())
}

/// Remembers that `member_id` withdrew; the targets registered for them.
pub async fn member_withdrew(
    client: &impl GenericClient,
    member_id: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO projector.erasure_withdrawn (member_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&member_id],
        )
        .await?;
    let rows = client
        .query(
            "SELECT target_id FROM projector.erasure_targets WHERE member_id = $1 ORDER BY target_id",
            &[&member_id],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
