//! Phone-number uniqueness: one stream per number (`memberPhone-{keyed hash}`,
//! see [`crate::pii::phone_index`]) records which member holds it. Appending
//! with an expected version makes two concurrent joins with one number
//! collide in the store, on either store, instead of both succeeding.
//!
//! A join claims the number before appending `MemberJoined`; a withdrawal
//! releases it afterwards, so the number can be used again.

mod state;
#[cfg(test)]
mod tests;

pub use state::{
    PhoneClaimed, PhoneRegistry, PhoneRegistryCommand, PhoneRegistryError, PhoneRegistryEvent,
    PhoneReleased,
};
