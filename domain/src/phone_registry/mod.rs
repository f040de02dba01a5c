//! Phone-number uniqueness: one stream per number (`memberPhone-{keyed hash}`,
//! see [`crate::pii::phone_index`]) records which member holds it, the
//! member id sealed under a key of the claim ([`Holder`]), so that once the
//! holder is erased the number leads to nobody. Appending
//! with an expected version makes two concurrent joins with one number
//! collide in the store, on either store, instead of both succeeding.
//!
//! A join claims the number before appending `MemberJoined`; a withdrawal
//! releases it afterwards, so the number can be used again.

mod state;
#[cfg(test)]
mod tests;

pub use state::{
    Holder, PhoneClaimed, PhoneClaimedV1, PhoneRegistry, PhoneRegistryCommand, PhoneRegistryError,
    PhoneRegistryEvent, PhoneReleased, PhoneReleasedV1,
};
