//! Sequential ids, as the source document's API shows them
//! (`/dormantMembers/1`), without a database sequence: a process reserves a
//! block of ids with one append to `idSequence-{kind}` and hands them out from
//! memory (hi/lo). Concurrent reservations collide on the expected version,
//! so no id is handed out twice, on either store. Ids of a block a process
//! did not use before it stopped are skipped, never reused.

mod state;
#[cfg(test)]
mod tests;

pub use state::{IdBlockReserved, IdSequence, IdSequenceCommand, IdSequenceError, IdSequenceEvent};
