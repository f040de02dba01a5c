//! Commands, events, errors and the decide/evolve pair of the uniqueness
//! stream; small enough to keep together.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::{DomainError, ErrorKind};
use crate::event::domain_events;
use crate::ids::MemberId;
use crate::pii::Sealed;

/// The member holding a number, as a claim names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Holder {
    /// The member id sealed under the claim's own key with
    /// [`PersonKey::seal_comparable`](crate::pii::PersonKey::seal_comparable)
    /// (claims since version 2): equal for one member, so the domain can
    /// compare holders, and unreadable once the key is erased with the
    /// person, so the number no longer leads to the member.
    Sealed(Sealed),
    /// The member id in clear (claims written before version 2).
    Named(MemberId),
}

/// Who holds one phone number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PhoneRegistry {
    /// Nobody: the number may be claimed.
    #[default]
    Free,
    /// An active member holds the number.
    Held {
        /// Who, as the claim names them.
        holder: Holder,
    },
}

/// A command on a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneRegistryCommand {
    /// A joining member claims the number.
    Claim {
        /// The joining member.
        holder: Holder,
        at: DateTime<Utc>,
    },
    /// A withdrawn member gives the number back.
    Release {
        /// The member giving it back, as their claim names them.
        holder: Holder,
        at: DateTime<Utc>,
    },
    /// A released dormant member's old membership gives the number to the
    /// member the release re-joins them as: released and claimed in one
    /// append, so the number is never free in between (nobody else can
    /// take it, and a release that stops half-way has moved nothing).
    HandOver {
        /// The old membership, as its claim names it.
        from: Holder,
        /// The new member.
        to: Holder,
        at: DateTime<Utc>,
    },
}

/// A member claimed the phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneClaimed {
    /// The member, sealed under the claim's key.
    pub holder: Holder,
    pub at: DateTime<Utc>,
}

/// The holder released the phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneReleased {
    /// The former holder, as their claim named them.
    pub holder: Holder,
    pub at: DateTime<Utc>,
}

/// [`PhoneClaimed`] version 1: the member id in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    title = "PhoneClaimed",
    description = "A member claimed the phone number."
)]
pub struct PhoneClaimedV1 {
    pub member_id: MemberId,
    pub at: DateTime<Utc>,
}

impl From<PhoneClaimedV1> for PhoneClaimed {
    fn from(v1: PhoneClaimedV1) -> Self {
        Self {
            holder: Holder::Named(v1.member_id),
            at: v1.at,
        }
    }
}

/// [`PhoneReleased`] version 1: the member id in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    title = "PhoneReleased",
    description = "The holder released the phone number."
)]
pub struct PhoneReleasedV1 {
    /// The former holder.
    pub member_id: MemberId,
    pub at: DateTime<Utc>,
}

impl From<PhoneReleasedV1> for PhoneReleased {
    fn from(v1: PhoneReleasedV1) -> Self {
        Self {
            holder: Holder::Named(v1.member_id),
            at: v1.at,
        }
    }
}

domain_events! {
    /// Every event of a phone-number stream.
    pub enum PhoneRegistryEvent {
        /// See [`PhoneClaimed`].
        PhoneClaimed = 2 { 1 => PhoneClaimedV1 },
        /// See [`PhoneReleased`].
        PhoneReleased = 2 { 1 => PhoneReleasedV1 },
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
            (Self::Free, PhoneRegistryCommand::Claim { holder, at }) => {
                Ok(vec![PhoneClaimed { holder, at }.into()])
            }
            (Self::Held { holder: current }, PhoneRegistryCommand::Claim { holder, .. }) => {
                if *current == holder {
                    Ok(vec![])
                } else {
                    Err(PhoneRegistryError::Taken)
                }
            }
            (Self::Free, PhoneRegistryCommand::Release { .. }) => Ok(vec![]),
            (Self::Free, PhoneRegistryCommand::HandOver { to, at, .. }) => {
                Ok(vec![PhoneClaimed { holder: to, at }.into()])
            }
            (Self::Held { holder: current }, PhoneRegistryCommand::HandOver { from, to, at }) => {
                if *current == to {
                    Ok(vec![])
                } else if *current == from {
                    Ok(vec![
                        PhoneReleased { holder: from, at }.into(),
                        PhoneClaimed { holder: to, at }.into(),
                    ])
                } else {
                    Err(PhoneRegistryError::Taken)
                }
            }
            (Self::Held { holder: current }, PhoneRegistryCommand::Release { holder, at }) => {
                if *current == holder {
                    Ok(vec![PhoneReleased { holder, at }.into()])
                } else {
                    Err(PhoneRegistryError::NotHolder)
                }
            }
        }
    }

    fn evolve(self, event: &PhoneRegistryEvent) -> Self {
        match event {
            PhoneRegistryEvent::PhoneClaimed(e) => Self::Held {
                holder: e.holder.clone(),
            },
            PhoneRegistryEvent::PhoneReleased(_) => Self::Free,
        }
    }
}
