//! What happened to a member.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::domain_events;
use crate::ids::MemberId;
use crate::pii::Sealed;
use crate::values::Points;

/// A member joined the programme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberJoined {
    /// The member.
    pub member_id: MemberId,
    /// Phone number, sealed under the member's key.
    pub phone_no: Sealed,
    /// Nickname, sealed under the member's key.
    pub nickname: Sealed,
    /// When.
    pub joined_at: DateTime<Utc>,
}

/// Points were added to the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointsEarned {
    /// The member.
    pub member_id: MemberId,
    /// Points added (positive).
    pub amount: Points,
    /// Balance after the event.
    pub balance: Points,
    /// When.
    pub at: DateTime<Utc>,
}

/// Points were spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointsUsed {
    /// The member.
    pub member_id: MemberId,
    /// Points spent (positive).
    pub amount: Points,
    /// Balance after the event.
    pub balance: Points,
    /// When.
    pub at: DateTime<Utc>,
}

/// The whole remaining balance was forfeited on withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointsForfeited {
    /// The member.
    pub member_id: MemberId,
    /// Points forfeited: exactly the balance before it.
    pub amount: Points,
    /// When.
    pub at: DateTime<Utc>,
}

/// The member left; their person key is to be deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberWithdrawn {
    /// The member.
    pub member_id: MemberId,
    /// When.
    pub at: DateTime<Utc>,
}

domain_events! {
    /// Every event of the member stream.
    pub enum MemberEvent {
        /// See [`MemberJoined`].
        MemberJoined = 1,
        /// See [`PointsEarned`].
        PointsEarned = 1,
        /// See [`PointsUsed`].
        PointsUsed = 1,
        /// See [`PointsForfeited`].
        PointsForfeited = 1,
        /// See [`MemberWithdrawn`].
        MemberWithdrawn = 1,
    }
}
