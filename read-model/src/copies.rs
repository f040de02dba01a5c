//! Copies of a read model beside the live one (a rebuild's shadow, a
//! verification's scratch): who may make one, how one is thrown away, and
//! how a finished rebuild replaces the live schema. `replay` drives them;
//! the schemas and their names are this crate's, so their SQL is here.

use tokio_postgres::{GenericClient, Transaction};

use crate::bookkeeping;

/// What a copy is for: each holds its own lock per read model, so one
/// rebuild and one verification of a read model can run at once, never two
/// of either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A shadow copy that replaces the live one when it catches up.
    Rebuild,
    /// A scratch copy compared with the live one, then dropped.
    Verify,
}

impl Purpose {
    fn lock_name(self) -> &'static str {
        match self {
            Self::Rebuild => "mileage.rebuild.",
            Self::Verify => "mileage.verify.",
        }
    }
}

/// Takes the session's lock on making a `purpose` copy of `name`: `false`
/// when another session holds it. Held until [`unlock`] or the session ends
/// (a killed `replay` leaves nothing behind).
pub async fn try_lock(
    client: &impl GenericClient,
    purpose: Purpose,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext($1 || $2))",
            &[&purpose.lock_name(), &name],
        )
        .await?
        .get(0))
}

/// Gives back what [`try_lock`] took.
pub async fn unlock(
    client: &impl GenericClient,
    purpose: Purpose,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT pg_advisory_unlock(hashtext($1 || $2))",
            &[&purpose.lock_name(), &name],
        )
        .await
        .map(drop)
}

/// Drops the copy in schema `copy` (a plain identifier) and its checkpoint.
pub async fn discard(client: &impl GenericClient, copy: &str) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {copy} CASCADE"))
        .await?;
    bookkeeping::forget(client, copy).await
}

/// Inside a swap's transaction: waits at most ten seconds for the live
/// `tables` of `live` (names within its schema), then holds them so no
/// batch writes while the schemas are swapped.
pub async fn lock_live(
    tx: &Transaction<'_>,
    live: &str,
    tables: &[&str],
) -> Result<(), tokio_postgres::Error> {
    let tables: Vec<String> = tables.iter().map(|t| format!("{live}.{t}")).collect();
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '10s';
         LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        tables.join(", ")
    ))
    .await
}

/// Inside a swap's transaction, with the live tables locked: the `shadow`
/// schema becomes `live` (the old one dropped), `live` takes the shadow's
/// checkpoint, and the live consumer is told where its copy now stands.
pub async fn replace(
    tx: &Transaction<'_>,
    live: &str,
    shadow: &str,
    reached: Option<mileage_store::Position>,
) -> Result<(), tokio_postgres::Error> {
    let old = format!("{live}__replaced");
    tx.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {old} CASCADE;
         ALTER SCHEMA {live} RENAME TO {old};
         ALTER SCHEMA {shadow} RENAME TO {live};
         DROP SCHEMA {old} CASCADE;"
    ))
    .await?;
    bookkeeping::take_over(tx, live, shadow).await?;
    if let Some(at) = reached {
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&bookkeeping::CHANNEL, &format!("{live} {at}")],
        )
        .await?;
    }
    Ok(())
}
