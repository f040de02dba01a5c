//! What happened to a dormant target. Names follow the source document.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::domain_events;
use crate::ids::{DormantMemberId, MemberId};
use crate::pii::Sealed;

/// An operator registered a dormant target (`PRE_DORMANT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DormantMemberRegistered {
    pub id: DormantMemberId,
    /// The member who went quiet.
    pub member_id: MemberId,
    /// Phone number, sealed under the target's key.
    pub phone_no: Sealed,
    /// Nickname, sealed under the target's key.
    pub nickname: Sealed,
    pub at: DateTime<Utc>,
    /// Set when the dormancy policy registered the target: the member's
    /// last activity, which began the quiet period the target is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_since: Option<DateTime<Utc>>,
}

/// The target became `DORMANT`. Carries the sealed contact data so that the
/// notification process needs nothing but this event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DormantMemberChanged {
    pub id: DormantMemberId,
    /// The member who went quiet.
    pub member_id: MemberId,
    /// Phone number, sealed under the target's key.
    pub phone_no: Sealed,
    /// Nickname, sealed under the target's key.
    pub nickname: Sealed,
    pub at: DateTime<Utc>,
}

/// The notice failed; the target is `DESTRUCTION` and its key is to be deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DormantMemberDestroyed {
    pub id: DormantMemberId,
    /// The member who went quiet.
    pub member_id: MemberId,
    /// Why the notice failed.
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The person came back as a new member; the target is `CLEARED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DormantMemberCleared {
    pub id: DormantMemberId,
    /// The member who went quiet.
    pub member_id: MemberId,
    /// The new member they were re-joined as.
    pub rejoined_member_id: MemberId,
    pub at: DateTime<Utc>,
}

/// The target came off the list while `PRE_DORMANT` (the member was active
/// again, or was excluded from the policy); it is `CLEARED` with no re-join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DormantMemberLifted {
    pub id: DormantMemberId,
    /// The member who went quiet.
    pub member_id: MemberId,
    /// Why, for the operators.
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl DormantMemberEvent {
    /// The target the event is about.
    pub fn target_id(&self) -> &DormantMemberId {
        match self {
            Self::DormantMemberRegistered(e) => &e.id,
            Self::DormantMemberChanged(e) => &e.id,
            Self::DormantMemberDestroyed(e) => &e.id,
            Self::DormantMemberCleared(e) => &e.id,
            Self::DormantMemberLifted(e) => &e.id,
        }
    }

    /// The member the target is for.
    pub fn member_id(&self) -> &MemberId {
        match self {
            Self::DormantMemberRegistered(e) => &e.member_id,
            Self::DormantMemberChanged(e) => &e.member_id,
            Self::DormantMemberDestroyed(e) => &e.member_id,
            Self::DormantMemberCleared(e) => &e.member_id,
            Self::DormantMemberLifted(e) => &e.member_id,
        }
    }
}

domain_events! {
    /// Every event of the dormant-target stream.
    pub enum DormantMemberEvent {
        /// See [`DormantMemberRegistered`].
        DormantMemberRegistered = 1,
        /// See [`DormantMemberChanged`].
        DormantMemberChanged = 1,
        /// See [`DormantMemberDestroyed`].
        DormantMemberDestroyed = 1,
        /// See [`DormantMemberCleared`].
        DormantMemberCleared = 1,
        /// See [`DormantMemberLifted`].
        DormantMemberLifted = 1,
    }
}
