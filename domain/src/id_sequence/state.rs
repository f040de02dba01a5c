//! Command, event, error and the decide/evolve pair of an id sequence.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::{DomainError, ErrorKind};
use crate::event::domain_events;

/// The next id a sequence will hand out. Ids start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSequence {
    /// The first id of the next block.
    pub next: u64,
}

impl Default for IdSequence {
    fn default() -> Self {
        Self { next: 1 }
    }
}

/// Reserve the next `size` ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSequenceCommand {
    /// How many ids.
    pub size: u64,
    pub at: DateTime<Utc>,
}

/// Ids `first..=last` belong to the process that appended this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdBlockReserved {
    /// First id of the block.
    pub first: u64,
    /// Last id of the block.
    pub last: u64,
    pub at: DateTime<Utc>,
}

domain_events! {
    /// Every event of an id-sequence stream.
    pub enum IdSequenceEvent {
        /// See [`IdBlockReserved`].
        IdBlockReserved = 1,
    }
}

/// A refused reservation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdSequenceError {
    /// A block must hold at least one id.
    #[error("an id block needs at least one id")]
    EmptyBlock,
    /// The sequence would pass the largest id.
    #[error("the id sequence is exhausted")]
    Exhausted,
}

impl DomainError for IdSequenceError {
    fn code(&self) -> &'static str {
        match self {
            Self::EmptyBlock => "id_sequence.empty_block",
            Self::Exhausted => "id_sequence.exhausted",
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::EmptyBlock => ErrorKind::Invalid,
            Self::Exhausted => ErrorKind::Rule,
        }
    }
}

impl Aggregate for IdSequence {
    type Command = IdSequenceCommand;
    type Event = IdSequenceEvent;
    type Error = IdSequenceError;

    const CATEGORY: &'static str = "idSequence";

    fn decide(&self, command: IdSequenceCommand) -> Result<Vec<IdSequenceEvent>, IdSequenceError> {
        if command.size == 0 {
            return Err(IdSequenceError::EmptyBlock);
        }
        let last = self
            .next
            .checked_add(command.size - 1)
            .ok_or(IdSequenceError::Exhausted)?;
        Ok(vec![
            IdBlockReserved {
                first: self.next,
                last,
                at: command.at,
            }
            .into(),
        ])
    }

    fn evolve(self, event: &IdSequenceEvent) -> Self {
        match event {
            IdSequenceEvent::IdBlockReserved(block) => Self {
                next: block.last.saturating_add(1).max(self.next),
            },
        }
    }
}
