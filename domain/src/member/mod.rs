//! A member of the mileage programme: joins with a phone number, earns and
//! uses points, and may withdraw (remaining points are forfeited first, then
//! the person key is deleted by the caller).
//!
//! Stream: `member-{id}`. Phone-number uniqueness is a separate stream, see
//! [`crate::phone_registry`].

mod command;
mod error;
mod event;
mod limits;
mod state;
#[cfg(test)]
mod tests;

pub use command::MemberCommand;
pub use error::MemberError;
pub use event::{
    ExcludedFromDormancy, IncludedInDormancy, MemberEvent, MemberJoined, MemberWithdrawn,
    POINTS_VALID_FOR, PointsEarned, PointsEarnedV1, PointsForfeited, PointsUsed,
};
pub use limits::{InvalidLimits, POINTS_CEILING, PointLimits};
pub use state::{ActiveMember, Member};
