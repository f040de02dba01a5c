//! Sealing and opening personal data with the person's key from the key store.

use mileage_domain::pii::{NONCE_LEN, PersonKey, Sealed};
use rand::RngCore;

/// Seals `value` as `field` under `key` with a fresh random nonce.
pub(crate) fn seal(key: &PersonKey, field: &str, value: &str) -> Sealed {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    key.seal(field, value, nonce)
}
