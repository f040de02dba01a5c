//! `rebuild <projection>`: a fresh copy from position zero in a shadow
//! schema while the live one keeps serving, caught up to the head, then
//! swapped in atomically. Interruptible and resumable (the shadow keeps its
//! checkpoint); one rebuild per projection at a time (an advisory lock).

use std::future::Future;
use std::time::Instant;

use anyhow::Context as _;
use mileage_store::Position;
use serde::Serialize;
use tokio::sync::watch;

use super::{Context, identifier};
use mileage_projector::projections::{Blueprint, by_name};
use mileage_projector::runner::{Exit, Runner};
use mileage_read_model::bookkeeping::{self, Claim, position_of};
use mileage_read_model::copies::{self, Purpose};

/// What a finished rebuild did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rebuilt {
    pub projection: String,
    /// It continued an interrupted rebuild.
    pub resumed: bool,
    /// Events the shadow handled in all.
    pub events: i64,
    /// Seconds this run took.
    pub seconds: f64,
    /// The position the swapped-in copy had reached.
    pub position: Option<String>,
}

/// How `rebuild` ended.
#[derive(Debug)]
pub enum Outcome {
    /// Swapped in.
    Done(Rebuilt),
    /// Stopped by the operator; run again to resume from `position`.
    Interrupted {
        /// Where the shadow stopped.
        position: Option<Position>,
    },
}

/// The shadow's schema and consumer name.
pub fn shadow_of(projection: &str) -> String {
    format!(
        "{projection}{}",
        mileage_read_model::bookkeeping::REBUILD_SUFFIX
    )
}

/// Rebuilds `projection`; `interrupt` resolving stops it resumably.
pub async fn rebuild(
    ctx: &Context,
    projection: &str,
    batch: usize,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    let blueprint = by_name(projection).map_err(anyhow::Error::msg)?;
    let mut client = ctx.read_client().await?;
    let locked = copies::try_lock(&client, Purpose::Rebuild, blueprint.name).await?;
    anyhow::ensure!(locked, "a rebuild of {} is already running", blueprint.name);
    let outcome = rebuild_locked(ctx, &blueprint, &mut client, batch, interrupt).await;
    copies::unlock(&client, Purpose::Rebuild, blueprint.name).await?;
    outcome
}

/// The rebuild itself, under the projection's rebuild lock.
async fn rebuild_locked(
    ctx: &Context,
    blueprint: &Blueprint,
    client: &mut tokio_postgres::Client,
    batch: usize,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    let shadow = shadow_of(identifier(blueprint.name)?);
    discard_another_stores(ctx, client, &shadow).await?;
    let resumed = position_of(&*client, &shadow).await?.is_some();
    let started = Instant::now();
    let total = ctx.log_size().await;
    let bar = ctx.bar(&format!("rebuild {}", blueprint.name), total);
    tokio::pin!(interrupt);
    loop {
        let head = loop {
            match ctx.store.head_position().await? {
                // Events committed but not readable yet: PostgreSQL shows a
                // commit to readers only once every transaction older than
                // it has ended, anywhere on the server. Wait for them, not
                // call a log that holds events empty.
                None if ctx.log_size().await.is_some_and(|n| n > 0) => {
                    tokio::select! {
                        () = &mut interrupt => {
                            bar.abandon();
                            return Ok(Outcome::Interrupted { position: None });
                        }
                        () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    }
                }
                head => break head,
            }
        };
        let Some(head) = head else {
            break;
        };
        let (stop, stopped) = watch::channel(false);
        let runner = Runner::new(ctx.store.clone(), &ctx.read_url, batch, stopped)?
            .until(head)
            .fail_fast();
        let consumer = (blueprint.build)(&shadow, &shadow);
        let run = tokio::spawn(async move { runner.run(consumer).await });
        tokio::pin!(run);
        let exit = loop {
            tokio::select! {
                exit = &mut run => break exit?,
                () = &mut interrupt => {
                    let _ = stop.send(true);
                    let _ = (&mut run).await;
                    bar.abandon();
                    return Ok(Outcome::Interrupted { position: position_of(&*client, &shadow).await? });
                }
                () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                    bar.set_position(handled(&*client, &shadow).await);
                }
            }
        };
        reached(exit, client, blueprint.name, &shadow).await?;
        if swap(client, blueprint, &shadow).await? {
            break;
        }
    }
    bar.finish_and_clear();
    let position = position_of(&*client, blueprint.name).await?;
    let events = bookkeeping::events_handled(&*client, blueprint.name)
        .await
        .unwrap_or(0);
    Ok(Outcome::Done(Rebuilt {
        projection: blueprint.name.to_owned(),
        resumed,
        events,
        seconds: started.elapsed().as_secs_f64(),
        position: position.map(|p| p.to_string()),
    }))
}

/// Starts `shadow` over when it holds an interrupted rebuild from another
/// event store: its positions mean nothing on this one.
async fn discard_another_stores(
    ctx: &Context,
    client: &tokio_postgres::Client,
    shadow: &str,
) -> anyhow::Result<()> {
    let store_id = ctx.store.identity().await?;
    if let Claim::Other(owner) = bookkeeping::claim(client, shadow, &store_id).await? {
        tracing::warn!(%owner, configured = %store_id, "discarding a rebuild of another event store");
        copies::discard(client, shadow).await?;
    }
    Ok(())
}

/// Ok when a run of `shadow` reached its end; otherwise why the rebuild of
/// `live` stops, and how to go on.
async fn reached(
    exit: Exit,
    client: &tokio_postgres::Client,
    live: &str,
    shadow: &str,
) -> anyhow::Result<()> {
    match exit {
        Exit::Reached => Ok(()),
        Exit::Shutdown => anyhow::bail!("the rebuild was stopped"),
        Exit::Stopped(error) => anyhow::bail!(
            "the rebuild of {live} stopped: {error}; the live read model is untouched"
        ),
        Exit::Refused(reason) => anyhow::bail!("{reason}; run the rebuild again"),
        Exit::Failed(reason) => anyhow::bail!(
            "the rebuild of {live} was cut off ({reason}); the live read model is untouched; \
             run it again to resume from {}",
            position_of(client, shadow)
                .await
                .ok()
                .flatten()
                .map_or_else(|| "the start".to_owned(), |p| p.to_string())
        ),
    }
}

/// How many events `name` has handled, for the progress bar (0 when it
/// cannot be read).
async fn handled(client: &tokio_postgres::Client, name: &str) -> u64 {
    let handled = bookkeeping::events_handled(client, name).await.unwrap_or(0);
    u64::try_from(handled).unwrap_or(0)
}

/// In one transaction: lock the live tables (waiting out a live batch),
/// and if the shadow is at least as far as the live copy, put it in the live
/// schema's place with its checkpoint. `false` when the live copy got ahead
/// (catch up and try again).
async fn swap(
    client: &mut tokio_postgres::Client,
    blueprint: &Blueprint,
    shadow: &str,
) -> anyhow::Result<bool> {
    let live = blueprint.name;
    // The live tables must exist before the lock, and creating them (their
    // indexes) inside the swap would take a share lock first and deadlock
    // with a live batch waiting to write.
    mileage_read_model::create_tables(client, &(blueprint.ddl)(live)).await?;
    let tx = client.transaction().await?;
    let tables: Vec<&str> = blueprint.tables.iter().map(|(table, _)| *table).collect();
    copies::lock_live(&tx, live, &tables)
        .await
        .with_context(|| format!("could not lock the live {live} tables (a long batch?)"))?;
    let stores = bookkeeping::lock_for_swap(&tx, live, shadow).await?;
    let live_at = position_of(&tx, live).await?;
    let shadow_at = position_of(&tx, shadow).await?;
    // Positions compare only within one store: a live copy of another store
    // (a migration) is replaced whatever its checkpoint says.
    let same_store = matches!(stores.as_slice(), [Some(l), Some(s)] if l == s)
        || matches!(stores.as_slice(), [None, _]);
    if same_store && live_at > shadow_at {
        tx.rollback().await?;
        return Ok(false);
    }
    copies::replace(&tx, live, shadow, shadow_at).await?;
    tx.commit().await?;
    Ok(true)
}
