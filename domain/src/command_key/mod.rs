//! What a keyed command created: one stream per scoped `Idempotency-Key`
//! (`commandKey-{key id}`) records the id a command that creates something
//! (a dormant target under a sequential id) gave it. The record is appended
//! in the same append as the creation, with "no stream" expected, so of all
//! attempts of one key (one after another or at the same time, on any
//! instance) exactly one creates, and every other reads back the id the
//! first one gave instead of drawing a new one.
//!
//! The log, not the key table, decides: a key forgotten by the table still
//! names its stream, and a different request with a forgotten key is refused
//! here ([`CommandKeyError::Reused`]) rather than applied.

mod state;
#[cfg(test)]
mod tests;

pub use state::{CommandKey, CommandKeyCommand, CommandKeyError, CommandKeyEvent, KeyAssigned};
