//! What can be asked of a member.

use chrono::{DateTime, Utc};

use crate::ids::{DormantMemberId, MemberId};
use crate::pii::Sealed;
use crate::values::Reason;

use super::PointLimits;

/// A command addressed to one member.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberCommand {
    /// Join the programme. Phone and nickname arrive validated and sealed under
    /// the member's key; uniqueness of the phone number is claimed beforehand
    /// on its own stream.
    Join {
        /// The new member's id.
        member_id: MemberId,
        /// Sealed phone number.
        phone: Sealed,
        /// Sealed nickname.
        nickname: Sealed,
        /// When the member joined.
        at: DateTime<Utc>,
        /// The dormant target a release re-joins them for, if any.
        rejoining: Option<DormantMemberId>,
    },
    /// Earn points; `amount` must be positive and within `limits`, and the
    /// balance stays within them.
    EarnPoints {
        /// Points to add, as given by the caller.
        amount: i64,
        at: DateTime<Utc>,
        /// The operator's limits in force.
        limits: PointLimits,
    },
    /// Use points; `amount` must be positive, within `limits` and at most
    /// the balance.
    UsePoints {
        /// Points to spend, as given by the caller.
        amount: i64,
        at: DateTime<Utc>,
        /// The operator's limits in force.
        limits: PointLimits,
    },
    /// Leave the programme, forfeiting the remaining balance.
    Withdraw { at: DateTime<Utc> },
    /// An operator takes the member out of the dormancy policy. Already
    /// out: nothing to do.
    ExcludeFromDormancy {
        /// Why, as the operator says.
        reason: Reason,
        at: DateTime<Utc>,
    },
    /// An operator puts the member back under the dormancy policy. Not
    /// out: nothing to do.
    IncludeInDormancy { at: DateTime<Utc> },
}
