//! A notice's state and its decide/evolve pair.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;

use super::command::{ManagerMessageCommand, Notice};
use super::error::ManagerMessageError;
use super::event::{ManagerMessageEvent, MessageFailed, MessageSent};

/// The recorded outcome of a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageStatus {
    /// Delivered to the gateway.
    Sent,
    /// Not deliverable.
    Failed,
}

/// A notice, as folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ManagerMessage {
    /// No outcome recorded yet.
    #[default]
    Pending,
    /// The outcome is recorded. Terminal.
    Recorded(MessageOutcome),
}

/// A recorded outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOutcome {
    /// Sent or failed.
    pub status: MessageStatus,
    /// Delivery attempts made.
    pub attempts: u32,
}

impl ManagerMessage {
    /// Records `status` unless an outcome exists: the same outcome again is a
    /// no-op (at-least-once delivery of the trigger), the other one a conflict.
    fn record(
        &self,
        status: MessageStatus,
        notice: &Notice,
        event: impl FnOnce() -> ManagerMessageEvent,
    ) -> Result<Vec<ManagerMessageEvent>, ManagerMessageError> {
        match self {
            Self::Recorded(outcome) if outcome.status == status => Ok(vec![]),
            Self::Recorded(outcome) => Err(ManagerMessageError::OutcomeAlreadyRecorded {
                recorded: outcome.status,
            }),
            Self::Pending if notice.content.trim().is_empty() => {
                Err(ManagerMessageError::EmptyContent)
            }
            Self::Pending if notice.attempts == 0 => Err(ManagerMessageError::NoAttempt),
            Self::Pending => Ok(vec![event()]),
        }
    }
}

impl Aggregate for ManagerMessage {
    type Command = ManagerMessageCommand;
    type Event = ManagerMessageEvent;
    type Error = ManagerMessageError;

    const CATEGORY: &'static str = "managerMessage";

    fn decide(
        &self,
        command: ManagerMessageCommand,
    ) -> Result<Vec<ManagerMessageEvent>, ManagerMessageError> {
        match command {
            ManagerMessageCommand::RecordSent(notice) => {
                self.record(MessageStatus::Sent, &notice, || {
                    MessageSent {
                        target_id: notice.target_id.clone(),
                        member_id: notice.member_id.clone(),
                        phone_no: notice.phone_no.clone(),
                        content: notice.content.clone(),
                        attempts: notice.attempts,
                        at: notice.at,
                    }
                    .into()
                })
            }
            ManagerMessageCommand::RecordFailed { notice, reason } => {
                self.record(MessageStatus::Failed, &notice, || {
                    MessageFailed {
                        target_id: notice.target_id.clone(),
                        member_id: notice.member_id.clone(),
                        phone_no: notice.phone_no.clone(),
                        content: notice.content.clone(),
                        attempts: notice.attempts,
                        reason,
                        at: notice.at,
                    }
                    .into()
                })
            }
        }
    }

    fn evolve(self, event: &ManagerMessageEvent) -> Self {
        match (self, event) {
            (Self::Pending, ManagerMessageEvent::MessageSent(e)) => {
                Self::Recorded(MessageOutcome {
                    status: MessageStatus::Sent,
                    attempts: e.attempts,
                })
            }
            (Self::Pending, ManagerMessageEvent::MessageFailed(e)) => {
                Self::Recorded(MessageOutcome {
                    status: MessageStatus::Failed,
                    attempts: e.attempts,
                })
            }
            (state, _) => state,
        }
    }
}
