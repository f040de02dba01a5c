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
    }
}
