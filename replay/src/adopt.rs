//! `adopt <consumer>`: after a move to another event store (export,
//! import, switch), moves a consumer whose checkpoint belongs to the old
//! store to the head of the configured one. For the process managers, which
//! cannot be rebuilt (their work is notices sent and keys deleted): once the
//! old store's log was handled to its end, the same events are in the new
//! store up to its head, so nothing is skipped and nothing repeated.
//! Projections are better rebuilt (`replay rebuild`).

use serde::Serialize;

use super::{Context, identifier};

/// What `adopt` did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Adopted {
    pub consumer: String,
    /// The store its checkpoint belonged to.
    pub from_store: String,
    /// The configured store.
    pub to_store: String,
    /// Its new checkpoint (the configured store's head), if the log has any.
    pub position: Option<String>,
}

/// Moves `name` to the configured store's head, if its checkpoint is
/// another store's and no projector runs it now.
pub async fn adopt(ctx: &Context, name: &str) -> anyhow::Result<Adopted> {
    let name = identifier(name)?;
    let store_id = ctx.store.identity().await?;
    let head = ctx.store.head_position().await?;
    // The consumer's own lock, held until this session ends with the
    // function: no projector runs it meanwhile.
    let mut client = ctx.read_client().await?;
    let locked = mileage_projector::runner::try_lock(&client, name).await?;
    anyhow::ensure!(
        locked,
        "{name} is running in a projector; stop the projector first"
    );
    let tx = client.transaction().await?;
    let owner = mileage_read_model::bookkeeping::lock_owner(&tx, name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no consumer named {name:?} (see `replay status`)"))?;
    let from_store = match owner {
        Some(owner) if owner != store_id => owner,
        _ => anyhow::bail!(
            "the checkpoint of {name} already belongs to the configured store {store_id}; \
             nothing to adopt"
        ),
    };
    mileage_read_model::bookkeeping::adopt(&tx, name, head, &store_id).await?;
    tx.commit().await?;
    Ok(Adopted {
        consumer: name.to_owned(),
        from_store,
        to_store: store_id,
        position: head.map(|p| p.to_string()),
    })
}
