//! Hands out sequential numeric ids from blocks reserved on the log
//! (`mileage_domain::id_sequence`), so ids read like the source document's
//! (`/dormantMembers/1`) on either store, without a database sequence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use mileage_domain::aggregate::stream_name;
use mileage_domain::envelope::{Actor, Causation};
use mileage_domain::id_sequence::{IdSequence, IdSequenceCommand};
use mileage_store::executor::Executor;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::command::{Origin, run};
use crate::error::CommandError;

/// Ids reserved per append at first and when ids are asked for slowly: a
/// restart leaves a gap of at most this many.
const MIN_BLOCK: u64 = 50;

/// Ids reserved per append at most: under a burst of joins the block grows
/// (doubling whenever one lasted less than [`FAST`]), so reservations,
/// during which that kind's ids wait, stay a few per second.
const MAX_BLOCK: u64 = 1000;

/// A block used up faster than this was too small.
const FAST: Duration = Duration::from_secs(1);

/// A block lasting longer than this was larger than needed.
const SLOW: Duration = Duration::from_secs(10);

/// The ids of one kind reserved by this process.
struct Block {
    /// The next id to hand out.
    next: u64,
    /// The block's last id.
    last: u64,
    /// How many the next reservation takes.
    size: u64,
    /// When this block was reserved.
    reserved_at: Instant,
}

/// The id allocator of one process.
pub(crate) struct IdAllocator {
    executor: Arc<Executor>,
    blocks: Mutex<HashMap<&'static str, Block>>,
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
    pub(crate) async fn next(&self, kind: &'static str) -> Result<u64, CommandError> {
        let mut blocks = self.blocks.lock().await;
        let size = match blocks.get_mut(kind) {
            Some(block) if block.next <= block.last => {
                let id = block.next;
                block.next += 1;
                return Ok(id);
            }
            Some(block) => next_size(block.size, block.reserved_at.elapsed()),
            None => MIN_BLOCK,
        };
        let reserved = run::<IdSequence>(
            &self.executor,
            &stream_name::<IdSequence>(&kind),
            IdSequenceCommand {
                size,
                at: Utc::now(),
            },
            &Origin::fresh(Causation::root(Uuid::now_v7()).by(Actor::system("id-blocks"))),
        )
        .await?;
        let last = reserved.state.next - 1;
        let first = last + 1 - size;
        blocks.insert(
            kind,
            Block {
                next: first + 1,
                last,
                size,
                reserved_at: Instant::now(),
            },
        );
        Ok(first)
    }
}

/// The size of the block after one of `size` ids that lasted `lasted`.
fn next_size(size: u64, lasted: Duration) -> u64 {
    if lasted < FAST {
        (size * 2).min(MAX_BLOCK)
    } else if lasted > SLOW {
        (size / 2).max(MIN_BLOCK)
    } else {
        size
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{MAX_BLOCK, MIN_BLOCK, next_size};

    #[test]
    fn blocks_grow_under_a_burst_and_shrink_when_quiet_within_bounds() {
        assert_eq!(
            next_size(MIN_BLOCK, Duration::from_millis(200)),
            2 * MIN_BLOCK
        );
        assert_eq!(next_size(MAX_BLOCK, Duration::from_millis(1)), MAX_BLOCK);
        assert_eq!(next_size(400, Duration::from_secs(5)), 400);
        assert_eq!(next_size(400, Duration::from_secs(60)), 200);
        assert_eq!(next_size(MIN_BLOCK, Duration::from_secs(600)), MIN_BLOCK);
    }
}
