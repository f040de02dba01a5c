//! The dormant notice sent to one target: its outcome is recorded once, as
//! `MessageSent` or `MessageFailed`. A failure starts the destruction saga.
//!
//! Stream: `managerMessage-{dormant target id}` (one notice per target, since
//! a target becomes dormant once).

mod command;
mod error;
mod event;
mod state;
#[cfg(test)]
mod tests;

pub use command::{ManagerMessageCommand, Notice};
pub use error::ManagerMessageError;
pub use event::{ManagerMessageEvent, MessageFailed, MessageSent};
pub use state::{ManagerMessage, MessageOutcome, MessageStatus};
