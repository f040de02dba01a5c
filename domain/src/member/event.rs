//! What happened to a member.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::domain_events;
use crate::ids::{DormantMemberId, MemberId};
use crate::pii::Sealed;
use crate::values::Points;

/// A member joined the programme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberJoined {
    pub member_id: MemberId,
    /// Phone number, sealed under the member's key.
    pub phone_no: Sealed,
    /// Nickname, sealed under the member's key.
    pub nickname: Sealed,
    pub joined_at: DateTime<Utc>,
    /// The dormant target this join releases, when it is a release's
    /// re-join: the release process manager clears the target from here
    /// (or, should the target have been destroyed meanwhile, withdraws this
    /// member again), so a release stopped after its join still completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejoining: Option<DormantMemberId>,
}

/// Points were added to the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointsEarned {
    pub member_id: MemberId,
    /// Points added (positive).
    pub amount: Points,
    /// Balance after the event.
    pub balance: Points,
    pub at: DateTime<Utc>,
    /// When these points lapse if unused (version 2: points carry their
    /// expiry, fixed when they are earned, so a later change of the policy
    /// never shortens points already held).
    pub expires_at: DateTime<Utc>,
}

/// How long earned points stay valid; version-1 events were written under
/// this same policy, so their upcaster applies it.
pub const POINTS_VALID_FOR: chrono::TimeDelta = chrono::TimeDelta::days(365);

/// `PointsEarned` as version 1 stored it: without `expiresAt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    title = "PointsEarned",
    description = "Points were added to the balance."
)]
pub struct PointsEarnedV1 {
    pub member_id: MemberId,
    /// Points added (positive).
    pub amount: Points,
    /// Balance after the event.
    pub balance: Points,
    pub at: DateTime<Utc>,
}

/// The upcaster v1 -> v2: the expiry the policy gave points earned at `at`.
impl From<PointsEarnedV1> for PointsEarned {
    fn from(v1: PointsEarnedV1) -> Self {
        Self {
            member_id: v1.member_id,
            amount: v1.amount,
            balance: v1.balance,
            at: v1.at,
            expires_at: v1.at + POINTS_VALID_FOR,
        }
    }
}

/// Points were spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointsUsed {
    pub member_id: MemberId,
    /// Points spent (positive).
    pub amount: Points,
    /// Balance after the event.
    pub balance: Points,
    pub at: DateTime<Utc>,
}

/// The whole remaining balance was forfeited on withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointsForfeited {
    pub member_id: MemberId,
    /// Points forfeited: exactly the balance before it.
    pub amount: Points,
    pub at: DateTime<Utc>,
}

/// The member left; their person key is to be deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberWithdrawn {
    pub member_id: MemberId,
    pub at: DateTime<Utc>,
}

/// An operator took the member out of the dormancy policy: the scheduler
/// makes no target of them, and lifts the one it made and is still
/// `PRE_DORMANT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExcludedFromDormancy {
    pub member_id: MemberId,
    /// The operator's reason (operator text, not personal data).
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// An operator put the member back under the dormancy policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncludedInDormancy {
    pub member_id: MemberId,
    pub at: DateTime<Utc>,
}

impl MemberEvent {
    /// The member the event is about.
    pub fn member_id(&self) -> &MemberId {
        match self {
            Self::MemberJoined(e) => &e.member_id,
            Self::PointsEarned(e) => &e.member_id,
            Self::PointsUsed(e) => &e.member_id,
            Self::PointsForfeited(e) => &e.member_id,
            Self::MemberWithdrawn(e) => &e.member_id,
            Self::ExcludedFromDormancy(e) => &e.member_id,
            Self::IncludedInDormancy(e) => &e.member_id,
        }
    }

    /// When the member was active, if this event is activity: joining
    /// (a release's re-join too), earning and using points. A forfeiture,
    /// a withdrawal or an operator's act is not the member's activity.
    pub fn activity_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::MemberJoined(e) => Some(e.joined_at),
            Self::PointsEarned(e) => Some(e.at),
            Self::PointsUsed(e) => Some(e.at),
            Self::PointsForfeited(_)
            | Self::MemberWithdrawn(_)
            | Self::ExcludedFromDormancy(_)
            | Self::IncludedInDormancy(_) => None,
        }
    }
}

domain_events! {
    /// Every event of the member stream.
    pub enum MemberEvent {
        /// See [`MemberJoined`].
        MemberJoined = 1,
        /// See [`PointsEarned`].
        PointsEarned = 2 { 1 => PointsEarnedV1 },
        /// See [`PointsUsed`].
        PointsUsed = 1,
        /// See [`PointsForfeited`].
        PointsForfeited = 1,
        /// See [`MemberWithdrawn`].
        MemberWithdrawn = 1,
        /// See [`ExcludedFromDormancy`].
        ExcludedFromDormancy = 1,
        /// See [`IncludedInDormancy`].
        IncludedInDormancy = 1,
    }
}
