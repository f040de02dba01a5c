//! What the notification process records.

use chrono::{DateTime, Utc};

use crate::ids::{DormantMemberId, MemberId};
use crate::pii::Sealed;

/// The notice to one target and how it went, as the notifier reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The dormant target notified.
    pub target_id: DormantMemberId,
    /// The member behind the target.
    pub member_id: MemberId,
    /// Where it was sent: the target's sealed phone number.
    pub phone_no: Sealed,
    /// The text of the notice.
    pub content: String,
    /// Delivery attempts made, at least one.
    pub attempts: u32,
    /// When the outcome was known.
    pub at: DateTime<Utc>,
}

/// A command addressed to one target's notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerMessageCommand {
    /// The gateway accepted the notice.
    RecordSent(Notice),
    /// The gateway could not deliver the notice.
    RecordFailed {
        notice: Notice,
        /// What the gateway said.
        reason: String,
    },
}
