//! Whether what a stream holds under an append's ids is what was sent:
//! the one way to tell a first write from a retry on a store that answers
//! both alike (EventStoreDB answers a recognised retry with the stored
//! events' position, as if it had just written them).

use crate::{AppendOutcome, EventStore, NewEvent, StoreError};

/// Whether the events `outcome` answers for (the last `events.len()`
/// versions up to its `last_version`) carry `events`' ids and data, and
/// not another attempt's data under the same ids. Data is compared as
/// JSON values, so a store that re-encodes JSON still matches.
pub async fn stored_as_sent(
    store: &dyn EventStore,
    stream: &str,
    events: &[NewEvent],
    outcome: &AppendOutcome,
) -> Result<bool, StoreError> {
    let count = events.len() as u64;
    let first = (outcome.last_version + 1).saturating_sub(count);
    let stored = store.read_stream(stream, first, events.len()).await?;
    let json = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).ok();
    Ok(stored.len() == events.len()
        && stored.iter().zip(events).all(|(stored, sent)| {
            stored.event_id == sent.event_id && json(&stored.data) == json(&sent.data)
        }))
}
