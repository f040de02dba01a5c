//! Why recording a notice outcome is refused.

use crate::error::{DomainError, ErrorKind};

use super::state::MessageStatus;

/// A refused notice command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagerMessageError {
    /// The other outcome is already recorded; an outcome never changes.
    #[error("the notice is already recorded as {recorded:?}")]
    OutcomeAlreadyRecorded {
        /// What was recorded.
        recorded: MessageStatus,
    },
    /// The notice has no text.
    #[error("a notice needs content")]
    EmptyContent,
    /// An outcome without a delivery attempt.
    #[error("a notice outcome needs at least one attempt")]
    NoAttempt,
}

impl DomainError for ManagerMessageError {
    fn code(&self) -> &'static str {
        match self {
            Self::OutcomeAlreadyRecorded { .. } => "manager_message.outcome_already_recorded",
            Self::EmptyContent => "manager_message.empty_content",
            Self::NoAttempt => "manager_message.no_attempt",
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::OutcomeAlreadyRecorded { .. } => ErrorKind::Conflict,
            Self::EmptyContent | Self::NoAttempt => ErrorKind::Invalid,
        }
    }
}
