//! Commands, events, errors and the decide/evolve pair of the uniqueness
//! stream; small enough to keep together.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::{DomainError, ErrorKind};
use crate::event::domain_events;
use crate::ids::MemberId;

/// Who holds one phone number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PhoneRegistry {
    /// Nobody: the number may be claimed.
    #[default]
    Free,
    /// An active member holds the number.
    Held { member_id: MemberId },
}

/// A command on a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneRegistryCommand {
    /// A joining member claims the number.
    Claim {
        /// The joining member.
        member_id: MemberId,
        at: DateTime<Utc>,
    },
    /// A withdrawn member gives the number back.
    Release {
        /// The member giving it back.
        member_id: MemberId,
        at: DateTime<Utc>,
    },
}

/// A member claimed the phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneClaimed {
    pub member_id: MemberId,
    pub at: DateTime<Utc>,
}

/// The holder released the phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneReleased {
    /// The former holder.
    pub member_id: MemberId,
    pub at: DateTime<Utc>,
}

domain_events! {
    /// Every event of a phone-number stream.
    pub enum PhoneRegistryEvent {
        /// See [`PhoneClaimed`].
        PhoneClaimed = 1,
        /// See [`PhoneReleased`].
        PhoneReleased = 1,
    }
}

/// A refused phone-number command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneRegistryError {
    /// Another active member holds the number. Who is not said.
    #[error("the phone number is already used by an active member")]
    Taken,
    /// Only the holder can release a number.
    #[error("the phone number is not held by this member")]
    NotHolder,
}

impl DomainError for PhoneRegistryError {
    fn code(&self) -> &'static str {
        match self {
            Self::Taken => "member.phone_taken",
            Self::NotHolder => "member.phone_not_held",
        }
    }

    fn kind(&self) -> ErrorKind {
        ErrorKind::Conflict
    }
}

impl Aggregate for PhoneRegistry {
    type Command = PhoneRegistryCommand;
    type Event = PhoneRegistryEvent;
    type Error = PhoneRegistryError;

    const CATEGORY: &'static str = "memberPhone";

    fn decide(
        &self,
        command: PhoneRegistryCommand,
    ) -> Result<Vec<PhoneRegistryEvent>, PhoneRegistryError> {
        match (self, command) {
            (Self::Free, PhoneRegistryCommand::Claim { member_id, at }) => {
                Ok(vec![PhoneClaimed { member_id, at }.into()])
            }
            (Self::Held { member_id: holder }, PhoneRegistryCommand::Claim { member_id, .. }) => {
                if *holder == member_id {
                    Ok(vec![])
                } else {
                    Err(PhoneRegistryError::Taken)
                }
            }
            (Self::Free, PhoneRegistryCommand::Release { .. }) => Ok(vec![]),
            (Self::Held { member_id: holder }, PhoneRegistryCommand::Release { member_id, at }) => {
                if *holder == member_id {
                    Ok(vec![PhoneReleased { member_id, at }.into()])
                } else {
                    Err(PhoneRegistryError::NotHolder)
                }
            }
        }
    }

    fn evolve(self, event: &PhoneRegistryEvent) -> Self {
        match event {
            PhoneRegistryEvent::PhoneClaimed(e) => Self::Held {
                member_id: e.member_id.clone(),
            },
            PhoneRegistryEvent::PhoneReleased(_) => Self::Free,
        }
    }
}
