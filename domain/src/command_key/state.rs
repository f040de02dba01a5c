//! Command, event, error and the decide/evolve pair of a command key; small
//! enough to keep together.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::{DomainError, ErrorKind};
use crate::event::domain_events;

/// What one key has created so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CommandKey {
    /// Nothing yet: the first attempt to append creates.
    #[default]
    Unused,
    /// The key's command created `id`.
    Assigned {
        /// The created aggregate's id (a dormant target's, say).
        id: String,
    },
}

/// Record that the key's command creates `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandKeyCommand {
    /// The id the attempt drew.
    pub id: String,
    pub at: DateTime<Utc>,
}

/// The key's command created `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyAssigned {
    /// The created aggregate's id.
    pub id: String,
    pub at: DateTime<Utc>,
}

domain_events! {
    /// Every event of a command-key stream.
    pub enum CommandKeyEvent {
        /// See [`KeyAssigned`].
        KeyAssigned = 1,
    }
}

/// A refused key record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandKeyError {
    /// The key already created something for another request: a retry
    /// finds its first attempt by the events that attempt appended, so an
    /// attempt that reaches this is a different request under the same key.
    #[error("this Idempotency-Key was used for a different request")]
    Reused,
}

impl DomainError for CommandKeyError {
    fn code(&self) -> &'static str {
        match self {
            Self::Reused => "idempotency.key_reused",
        }
    }

    fn kind(&self) -> ErrorKind {
        ErrorKind::Rule
    }
}

impl Aggregate for CommandKey {
    type Command = CommandKeyCommand;
    type Event = CommandKeyEvent;
    type Error = CommandKeyError;

    const CATEGORY: &'static str = "commandKey";

    fn decide(&self, command: CommandKeyCommand) -> Result<Vec<CommandKeyEvent>, CommandKeyError> {
        match self {
            Self::Unused => Ok(vec![
                KeyAssigned {
                    id: command.id,
                    at: command.at,
                }
                .into(),
            ]),
            Self::Assigned { .. } => Err(CommandKeyError::Reused),
        }
    }

    fn evolve(self, event: &CommandKeyEvent) -> Self {
        match (self, event) {
            (Self::Unused, CommandKeyEvent::KeyAssigned(e)) => Self::Assigned { id: e.id.clone() },
            // The first assignment stands; a second cannot be decided.
            (assigned @ Self::Assigned { .. }, CommandKeyEvent::KeyAssigned(_)) => assigned,
        }
    }
}
