//! A dormant target: a member an operator registered as gone quiet. It moves
//! `PRE_DORMANT -> DORMANT -> DESTRUCTION | CLEARED`; the last two are
//! terminal. Becoming dormant triggers a notice (see
//! [`crate::manager_message`]); a failed notice destroys the target's personal
//! data; a release re-joins the person as a new member and clears the target.
//!
//! Stream: `dormantMember-{id}`.

mod command;
mod error;
mod event;
mod state;
#[cfg(test)]
mod tests;

pub use command::DormantMemberCommand;
pub use error::DormantMemberError;
pub use event::{
    DormantMemberChanged, DormantMemberCleared, DormantMemberDestroyed, DormantMemberEvent,
    DormantMemberLifted, DormantMemberRegistered,
};
pub use state::{DormantMember, DormantStatus, DormantTarget};
