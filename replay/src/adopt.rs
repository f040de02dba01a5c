//! `adopt <consumer>`: after a move to another event store (export,
//! import, switch), moves a consumer whose checkpoint belongs to the old
//! store to the same place in the configured one. For the process
//! managers, which cannot be rebuilt (their work is notices sent and keys
//! deleted): the import keeps every event's id and the log's order, so the
//! last event the consumer handled in the old store is found in the new one
//! by its id, and the consumer resumes right after it: what it had not yet
//! handled (pending notices, erasures, releases) is handled there, once.
//! A checkpoint that does not say which event it is at (written before
//! checkpoints named it) is moved only on `--at-head`, the operator's word
//! that it had reached the old store's head. Projections are better
//! rebuilt (`replay rebuild`).

use mileage_store::{Position, RecordedEvent};
use serde::Serialize;

use super::{Context, identifier};

/// How many pending events an adoption counts before it says "more".
const COUNT_UP_TO: u64 = 100_000;

/// What `adopt` did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Adopted {
    pub consumer: String,
    /// The store its checkpoint belonged to.
    pub from_store: String,
    /// The configured store.
    pub to_store: String,
    /// Its new checkpoint in the configured store (`None`: the start).
    pub position: Option<String>,
    /// The configured store's events after it, which it will handle next:
    /// the work it had not done on the old store, and any written since.
    pub pending_events: u64,
    /// Whether there are more than `pending_events` (counted up to 100,000).
    pub pending_more: bool,
}

/// Why a consumer was not adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The event it last handled is not in the configured store.
    #[error(
        "{consumer} last handled event {event_id} of {stream} in the old store, which the \
         configured store does not hold: import the old store's archive first (`replay import`), \
         then adopt again; nothing changed"
    )]
    NotImported {
        consumer: String,
        stream: String,
        event_id: uuid::Uuid,
    },
    /// Its checkpoint does not say which event it is at.
    #[error(
        "{consumer} handled the old store up to {position}, but its checkpoint does not say \
         which event that was (written before checkpoints named it), so its place in the \
         configured store cannot be found: run the projector on the old store until \
         `replay status` shows {consumer} with no lag, then `replay adopt {consumer} --at-head`; \
         nothing changed"
    )]
    PlaceUnknown {
        consumer: String,
        position: Position,
    },
}

/// Moves `name` to its place in the configured store: right after the
/// event it last handled (found by id), at the start if it handled
/// nothing, or at the head when `at_head` (the operator's word that it had
/// reached the old store's head; needed only when its checkpoint does not
/// name its event). Refuses while a projector runs it, or when its
/// checkpoint already belongs to the configured store.
pub async fn adopt(ctx: &Context, name: &str, at_head: bool) -> anyhow::Result<Adopted> {
    let name = identifier(name)?;
    let store_id = ctx.store.identity().await?;
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
    let position = place(ctx, &tx, name, at_head).await?;
    let backlog = ctx.store.backlog(position, COUNT_UP_TO).await?;
    mileage_read_model::bookkeeping::adopt(&tx, name, position, &store_id).await?;
    tx.commit().await?;
    Ok(Adopted {
        consumer: name.to_owned(),
        from_store,
        to_store: store_id,
        position: position.map(|p| p.to_string()),
        pending_events: backlog.events,
        pending_more: backlog.more,
    })
}

/// Where `name` resumes in the configured store.
async fn place(
    ctx: &Context,
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    at_head: bool,
) -> anyhow::Result<Option<Position>> {
    let Some(old) = mileage_read_model::bookkeeping::position_of(tx, name).await? else {
        // Nothing handled yet: everything is still to do.
        return Ok(None);
    };
    match mileage_read_model::bookkeeping::last_handled(tx, name).await? {
        Some((stream, event_id)) => {
            let found: Option<RecordedEvent> = ctx.store.find_in_stream(&stream, event_id).await?;
            match found {
                Some(event) => Ok(Some(event.position)),
                None => Err(AdoptError::NotImported {
                    consumer: name.to_owned(),
                    stream,
                    event_id,
                }
                .into()),
            }
        }
        None if at_head => Ok(ctx.store.head_position().await?),
        None => Err(AdoptError::PlaceUnknown {
            consumer: name.to_owned(),
            position: old,
        }
        .into()),
    }
}
