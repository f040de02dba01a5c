//! What can be asked of a dormant target.

use chrono::{DateTime, Utc};

use crate::ids::{DormantMemberId, MemberId};
use crate::pii::Sealed;

/// A command addressed to one dormant target.
#[derive(Debug, Clone, PartialEq)]
pub enum DormantMemberCommand {
    /// An operator registers a member as a dormant target (`PRE_DORMANT`).
    Register {
        /// The target's id.
        id: DormantMemberId,
        /// The member who went quiet.
        member_id: MemberId,
        /// Phone number, validated and sealed under the target's key.
        phone: Sealed,
        /// Nickname, validated and sealed under the target's key.
        nickname: Sealed,
        at: DateTime<Utc>,
        /// Set when the dormancy policy registers the target: the member's
        /// last activity, which began the quiet period it is for.
        quiet_since: Option<DateTime<Utc>>,
    },
    /// An operator marks the target dormant; a notice follows.
    MarkDormant { at: DateTime<Utc> },
    /// The notice failed: destroy the target's personal data.
    Destroy {
        /// Why the notice failed.
        reason: String,
        at: DateTime<Utc>,
    },
    /// The member was active again, or was excluded from the policy, while
    /// the target was still `PRE_DORMANT`: it comes off the list without a
    /// release. Lifted already: nothing to do.
    Lift {
        /// Why, for the operators.
        reason: String,
        at: DateTime<Utc>,
    },
    /// The person asked to come back and has been re-joined as a new member.
    Clear {
        /// The member id they were re-joined under.
        rejoined_member_id: MemberId,
        at: DateTime<Utc>,
    },
}
