//! `verify <projection>`: rebuilds into a scratch schema up to the live
//! copy's checkpoint and compares the two, row by row. Rows the live copy
//! changed after that checkpoint are left out (they moved on, rightly).

use mileage_store::Position;
use serde::Serialize;
use tokio::sync::watch;

use super::{Context, identifier};
use mileage_projector::projections::{Blueprint, by_name};
use mileage_projector::runner::{Exit, Runner};
use mileage_read_model::bookkeeping::position_of;
use mileage_read_model::copies::{self, Purpose};

/// One row that differs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    pub table: String,
    pub key: String,
    /// The live row (JSON), `None` when missing.
    pub live: Option<String>,
    /// The rebuilt row (JSON), `None` when the live copy has a row the log
    /// does not explain.
    pub rebuilt: Option<String>,
}

/// A table's comparison.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableReport {
    pub table: String,
    /// Rows in the live copy.
    pub live_rows: i64,
    /// Rows in the rebuilt copy.
    pub rebuilt_rows: i64,
    /// Live rows changed after the compared position (not compared).
    pub changed_since: i64,
    pub differences: i64,
}

/// What `verify` found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub projection: String,
    /// The position both copies were compared at.
    pub position: Option<String>,
    /// Per table.
    pub tables: Vec<TableReport>,
    /// The first differences (up to `--show`).
    pub first_differences: Vec<Difference>,
}

impl Verified {
    /// Whether the live copy equals the rebuild.
    pub fn equal(&self) -> bool {
        self.tables.iter().all(|t| t.differences == 0)
    }
}

/// Verifies `projection`, listing up to `show` differences.
pub async fn verify(
    ctx: &Context,
    projection: &str,
    batch: usize,
    show: i64,
) -> anyhow::Result<Verified> {
    let blueprint = by_name(projection).map_err(anyhow::Error::msg)?;
    let live = identifier(blueprint.name)?;
    let client = ctx.read_client().await?;
    let locked = copies::try_lock(&client, Purpose::Verify, live).await?;
    anyhow::ensure!(locked, "a verification of {live} is already running");
    let verified = verify_locked(ctx, &blueprint, &client, batch, show).await;
    copies::unlock(&client, Purpose::Verify, live).await?;
    verified
}

/// The verification itself, under the projection's verification lock.
async fn verify_locked(
    ctx: &Context,
    blueprint: &Blueprint,
    client: &tokio_postgres::Client,
    batch: usize,
    show: i64,
) -> anyhow::Result<Verified> {
    let live = blueprint.name;
    let scratch = format!("{live}{}", mileage_read_model::bookkeeping::VERIFY_SUFFIX);
    mileage_read_model::create_tables(client, &(blueprint.ddl)(live)).await?;
    copies::discard(client, &scratch).await?;
    let target = position_of(client, live).await?;
    rebuild_scratch(ctx, blueprint, client, &scratch, target, batch).await?;
    let (commit, prepare) = target.map_or((i64::MAX, i64::MAX), |p: Position| {
        (
            i64::try_from(p.commit).unwrap_or(i64::MAX),
            i64::try_from(p.prepare).unwrap_or(i64::MAX),
        )
    });
    let mut tables = Vec::new();
    let mut first_differences = Vec::new();
    for (table, key) in blueprint.tables {
        let compared = mileage_read_model::compare::compare(
            client,
            (live, &scratch),
            (table, key),
            (commit, prepare),
            show,
        )
        .await?;
        for (key, live, rebuilt) in compared.first {
            first_differences.push(Difference {
                table: (*table).to_owned(),
                key,
                live,
                rebuilt,
            });
        }
        tables.push(TableReport {
            table: (*table).to_owned(),
            live_rows: compared.live_rows,
            rebuilt_rows: compared.rebuilt_rows,
            changed_since: compared.changed_since,
            differences: compared.differences,
        });
    }
    copies::discard(client, &scratch).await?;
    Ok(Verified {
        projection: live.to_owned(),
        position: target.map(|p| p.to_string()),
        tables,
        first_differences,
    })
}

/// Replays the log into `scratch` up to `target`, the position the live copy
/// had reached, or creates empty tables when it has seen nothing.
async fn rebuild_scratch(
    ctx: &Context,
    blueprint: &Blueprint,
    client: &tokio_postgres::Client,
    scratch: &str,
    target: Option<Position>,
    batch: usize,
) -> anyhow::Result<()> {
    if let Some(target) = target {
        let (_stop, stopped) = watch::channel(false);
        let runner = Runner::new(ctx.store.clone(), &ctx.read_url, batch, stopped)?
            .until(target)
            .fail_fast();
        let consumer = (blueprint.build)(scratch, scratch);
        let bar = ctx.bar(&format!("verify {}", blueprint.name), ctx.log_size().await);
        let run = tokio::spawn(async move { runner.run(consumer).await });
        tokio::pin!(run);
        let exit = loop {
            tokio::select! {
                exit = &mut run => break exit?,
                () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                    let handled = mileage_read_model::bookkeeping::events_handled(client, scratch).await?;
                    bar.set_position(u64::try_from(handled).unwrap_or(0));
                }
            }
        };
        bar.finish_and_clear();
        match exit {
            Exit::Stopped(error) => {
                copies::discard(client, scratch).await?;
                anyhow::bail!("the log does not rebuild {}: {error}", blueprint.name);
            }
            Exit::Failed(reason) => anyhow::bail!("the verification was cut off: {reason}"),
            Exit::Refused(reason) => {
                copies::discard(client, scratch).await?;
                anyhow::bail!("{reason}");
            }
            Exit::Reached | Exit::Shutdown => {}
        }
    } else {
        mileage_read_model::create_tables(client, &(blueprint.ddl)(scratch)).await?;
    }
    Ok(())
}
