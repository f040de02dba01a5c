//! A dormant target's state and its decide/evolve pair.

use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::ids::{DormantMemberId, MemberId};
use crate::pii::Sealed;

use super::command::DormantMemberCommand;
use super::error::DormantMemberError;
use super::event::{
    DormantMemberChanged, DormantMemberCleared, DormantMemberDestroyed, DormantMemberEvent,
    DormantMemberLifted, DormantMemberRegistered,
};

/// Where a target is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DormantStatus {
    /// Registered as a target, not yet dormant.
    PreDormant,
    /// Dormant; a notice has been or is being sent.
    Dormant,
    /// The notice failed; personal data destroyed. Terminal.
    Destruction,
    /// Re-joined as a new member. Terminal.
    Cleared,
}

impl DormantStatus {
    /// The status as the API and read models spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreDormant => "PRE_DORMANT",
            Self::Dormant => "DORMANT",
            Self::Destruction => "DESTRUCTION",
            Self::Cleared => "CLEARED",
        }
    }

    /// Whether nothing can follow this status.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Destruction | Self::Cleared)
    }

    /// Whether the lifecycle allows moving from `self` to `to`.
    pub fn can_become(self, to: Self) -> bool {
        matches!(
            (self, to),
            (Self::PreDormant, Self::Dormant) | (Self::Dormant, Self::Destruction | Self::Cleared)
        )
    }
}

impl fmt::Display for DormantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dormant target, as folded from the `dormantMember-{id}` stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DormantMember {
    /// Nothing registered under this id.
    #[default]
    Unregistered,
    /// A registered target.
    Registered(DormantTarget),
}

/// What a registered target holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DormantTarget {
    pub id: DormantMemberId,
    /// The member who went quiet.
    pub member_id: MemberId,
    /// Sealed phone number.
    pub phone_no: Sealed,
    /// Sealed nickname.
    pub nickname: Sealed,
    /// Lifecycle status.
    pub status: DormantStatus,
    /// Set once cleared by a release.
    pub rejoined_member_id: Option<MemberId>,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
    /// Set for the dormancy policy's targets: the last activity that began
    /// the quiet period.
    pub quiet_since: Option<DateTime<Utc>>,
    /// Why it was lifted, once lifted.
    pub lifted: Option<String>,
}

impl DormantMember {
    /// The status, if registered.
    pub fn status(&self) -> Option<DormantStatus> {
        match self {
            Self::Unregistered => None,
            Self::Registered(target) => Some(target.status),
        }
    }

    /// What a release would do now: `Ok(Some(target))` when the target can
    /// be released, `Ok(None)` when it already is (a repeated release is a
    /// no-op), the refusal otherwise. A release asks before it joins
    /// anyone, so nothing is joined for a target that cannot be released.
    pub fn releasable(&self) -> Result<Option<&DormantTarget>, DormantMemberError> {
        self.transition(DormantStatus::Cleared)
    }

    /// Checks a move to `to`. `Ok(None)` when the target is already there (a
    /// repeated command is a no-op, so at-least-once callers are safe).
    fn transition(&self, to: DormantStatus) -> Result<Option<&DormantTarget>, DormantMemberError> {
        let Self::Registered(target) = self else {
            return Err(DormantMemberError::NotFound);
        };
        if target.lifted.is_some() {
            return Err(DormantMemberError::Lifted);
        }
        if target.status == to {
            Ok(None)
        } else if target.status.can_become(to) {
            Ok(Some(target))
        } else {
            Err(DormantMemberError::InvalidTransition {
                from: target.status,
                to,
            })
        }
    }
}

impl Aggregate for DormantMember {
    type Command = DormantMemberCommand;
    type Event = DormantMemberEvent;
    type Error = DormantMemberError;

    const CATEGORY: &'static str = "dormantMember";

    fn decide(
        &self,
        command: DormantMemberCommand,
    ) -> Result<Vec<DormantMemberEvent>, DormantMemberError> {
        match command {
            DormantMemberCommand::Register {
                id,
                member_id,
                phone,
                nickname,
                at,
                quiet_since,
            } => match self {
                Self::Unregistered => Ok(vec![
                    DormantMemberRegistered {
                        id,
                        member_id,
                        phone_no: phone,
                        nickname,
                        at,
                        quiet_since,
                    }
                    .into(),
                ]),
                Self::Registered(_) => Err(DormantMemberError::AlreadyRegistered),
            },
            DormantMemberCommand::MarkDormant { at } => Ok(self
                .transition(DormantStatus::Dormant)?
                .map(|t| {
                    DormantMemberChanged {
                        id: t.id.clone(),
                        member_id: t.member_id.clone(),
                        phone_no: t.phone_no.clone(),
                        nickname: t.nickname.clone(),
                        at,
                    }
                    .into()
                })
                .into_iter()
                .collect()),
            DormantMemberCommand::Destroy { reason, at } => Ok(self
                .transition(DormantStatus::Destruction)?
                .map(|t| {
                    DormantMemberDestroyed {
                        id: t.id.clone(),
                        member_id: t.member_id.clone(),
                        reason,
                        at,
                    }
                    .into()
                })
                .into_iter()
                .collect()),
            DormantMemberCommand::Lift { reason, at } => {
                let Self::Registered(target) = self else {
                    return Err(DormantMemberError::NotFound);
                };
                match target.status {
                    DormantStatus::PreDormant => Ok(vec![
                        DormantMemberLifted {
                            id: target.id.clone(),
                            member_id: target.member_id.clone(),
                            reason,
                            at,
                        }
                        .into(),
                    ]),
                    DormantStatus::Cleared if target.lifted.is_some() => Ok(vec![]),
                    from => Err(DormantMemberError::InvalidTransition {
                        from,
                        to: DormantStatus::Cleared,
                    }),
                }
            }
            DormantMemberCommand::Clear {
                rejoined_member_id,
                at,
            } => Ok(self
                .transition(DormantStatus::Cleared)?
                .map(|t| {
                    DormantMemberCleared {
                        id: t.id.clone(),
                        member_id: t.member_id.clone(),
                        rejoined_member_id,
                        at,
                    }
                    .into()
                })
                .into_iter()
                .collect()),
        }
    }

    fn evolve(self, event: &DormantMemberEvent) -> Self {
        match (self, event) {
            (Self::Unregistered, DormantMemberEvent::DormantMemberRegistered(e)) => {
                Self::Registered(DormantTarget {
                    id: e.id.clone(),
                    member_id: e.member_id.clone(),
                    phone_no: e.phone_no.clone(),
                    nickname: e.nickname.clone(),
                    status: DormantStatus::PreDormant,
                    rejoined_member_id: None,
                    registered_at: e.at,
                    quiet_since: e.quiet_since,
                    lifted: None,
                })
            }
            (Self::Registered(mut t), DormantMemberEvent::DormantMemberChanged(_)) => {
                t.status = DormantStatus::Dormant;
                Self::Registered(t)
            }
            (Self::Registered(mut t), DormantMemberEvent::DormantMemberDestroyed(_)) => {
                t.status = DormantStatus::Destruction;
                Self::Registered(t)
            }
            (Self::Registered(mut t), DormantMemberEvent::DormantMemberCleared(e)) => {
                t.status = DormantStatus::Cleared;
                t.rejoined_member_id = Some(e.rejoined_member_id.clone());
                Self::Registered(t)
            }
            (Self::Registered(mut t), DormantMemberEvent::DormantMemberLifted(e)) => {
                t.status = DormantStatus::Cleared;
                t.lifted = Some(e.reason.clone());
                Self::Registered(t)
            }
            (state, _) => state,
        }
    }
}
