//! What happened to a notice. Names follow the source document.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::domain_events;
use crate::ids::{DormantMemberId, MemberId};
use crate::pii::Sealed;

/// The gateway accepted the dormant notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageSent {
    /// The dormant target notified.
    pub target_id: DormantMemberId,
    /// The member behind the target.
    pub member_id: MemberId,
    /// Destination, sealed under the target's key.
    pub phone_no: Sealed,
    /// The notice text.
    pub content: String,
    /// Delivery attempts made.
    pub attempts: u32,
    pub at: DateTime<Utc>,
}

/// The gateway could not deliver the dormant notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageFailed {
    /// The dormant target notified.
    pub target_id: DormantMemberId,
    /// The member behind the target.
    pub member_id: MemberId,
    /// Destination, sealed under the target's key.
    pub phone_no: Sealed,
    /// The notice text.
    pub content: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// What the gateway said last.
    pub reason: String,
    pub at: DateTime<Utc>,
}

domain_events! {
    /// Every event of the notice stream.
    pub enum ManagerMessageEvent {
        /// See [`MessageSent`].
        MessageSent = 1,
        /// See [`MessageFailed`].
        MessageFailed = 1,
    }
}
