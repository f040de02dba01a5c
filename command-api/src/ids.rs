//! Hands out sequential numeric ids from blocks reserved on the log
//! (`mileage_domain::id_sequence`), so ids read like the source document's
//! (`/dormantMembers/1`) on either store, without a database sequence.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use mileage_domain::aggregate::stream_name;
use mileage_domain::envelope::Causation;
use mileage_domain::id_sequence::{IdSequence, IdSequenceCommand};
use mileage_store::executor::Executor;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::handle::{Origin, handle};
use mileage_service::ApiError;

/// Ids reserved per append: more means fewer appends and larger gaps after a
/// restart.
const BLOCK: u64 = 50;

/// The id allocator of one process.
pub(crate) struct IdAllocator {
    executor: Arc<Executor>,
    /// Per kind: the next id to hand out and the last of the block.
    blocks: Mutex<HashMap<&'static str, (u64, u64)>>,
}

impl IdAllocator {
    /// An allocator reserving blocks through `executor`.
    pub(crate) fn new(executor: Arc<Executor>) -> Self {
        Self {
            executor,
            blocks: Mutex::new(HashMap::new()),
        }
    }

    /// The next id of `kind` (`member`, `dormantMember`).
    pub(crate) async fn next(&self, kind: &'static str) -> Result<u64, ApiError> {
        let mut blocks = self.blocks.lock().await;
        if let Some((next, last)) = blocks.get_mut(kind)
            && *next <= *last
        {
            let id = *next;
            *next += 1;
            return Ok(id);
        }
        let reserved = handle::<IdSequence>(
            &self.executor,
            &stream_name::<IdSequence>(&kind),
            IdSequenceCommand {
                size: BLOCK,
                at: Utc::now(),
            },
            Origin::fresh(Causation::root(Uuid::now_v7())),
        )
        .await?;
        let last = reserved.state.next - 1;
        let first = last + 1 - BLOCK;
        blocks.insert(kind, (first + 1, last));
        Ok(first)
    }
}
