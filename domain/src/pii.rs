//! Personal data in an immutable log: sealed with a per-person key, erased by
//! deleting that key ("crypto-shredding").
//!
//! Events carry [`Sealed`] values only. Sealing and opening are pure: the key
//! and the nonce are passed in. The key store itself is a port at the edge
//! (`mileage_store::keys`); when it no longer holds a key, [`reveal`] answers
//! [`Revealed::Erased`] and the event still decodes.

use std::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::DormantMemberId;
use crate::values::PhoneNumber;

/// Bytes in a person key (XChaCha20-Poly1305 uses 256-bit keys).
pub const KEY_LEN: usize = 32;
/// Bytes in a nonce. 192-bit nonces may be drawn at random without tracking.
pub const NONCE_LEN: usize = 24;

/// The secret that seals one person's data. Its `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonKey {
    key_id: String,
    secret: [u8; KEY_LEN],
}

impl PersonKey {
    /// A key with the given id (by convention the stream name of the person's
    /// record, e.g. `member-42`) and secret bytes.
    pub fn new(key_id: impl Into<String>, secret: [u8; KEY_LEN]) -> Self {
        Self {
            key_id: key_id.into(),
            secret,
        }
    }

    /// The id under which the key is stored and deleted.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The secret bytes, for the key store adapter only.
    pub fn secret(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    /// Seals `plaintext` as the value of `field`. The key id and field name are
    /// bound as associated data, so a sealed phone number cannot be passed off
    /// as a nickname or as another person's data.
    pub fn seal(&self, field: &str, plaintext: &str, nonce: [u8; NONCE_LEN]) -> Sealed {
        let cipher = XChaCha20Poly1305::new((&self.secret).into());
        let aad = associated_data(&self.key_id, field);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        Sealed {
            key_id: self.key_id.clone(),
            field: field.to_owned(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        }
    }

    /// Seals `plaintext` with a nonce derived from the key, the field and
    /// the plaintext: the same value sealed twice under one key is the same
    /// [`Sealed`], so sealed values can be compared for equality without
    /// the key (a phone claim's holder), and nothing more is revealed.
    /// Under another key, or once the key is deleted, it says nothing.
    pub fn seal_comparable(&self, field: &str, plaintext: &str) -> Sealed {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        mac.update(&associated_data(&self.key_id, field));
        mac.update(&[0]);
        mac.update(plaintext.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        self.seal(field, plaintext, nonce)
    }

    /// Opens a sealed value. Fails when the value was sealed under another key
    /// or was tampered with.
    pub fn open(&self, sealed: &Sealed) -> Result<String, PiiError> {
        if sealed.key_id != self.key_id {
            return Err(PiiError::WrongKey {
                expected: sealed.key_id.clone(),
                got: self.key_id.clone(),
            });
        }
        let nonce = B64
            .decode(&sealed.nonce)
            .ok()
            .filter(|n| n.len() == NONCE_LEN)
            .ok_or(PiiError::Malformed { what: "nonce" })?;
        let ciphertext = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| PiiError::Malformed { what: "ciphertext" })?;
        let cipher = XChaCha20Poly1305::new((&self.secret).into());
        let aad = associated_data(&self.key_id, &sealed.field);
        let plain = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| PiiError::Tampered {
                key_id: sealed.key_id.clone(),
                field: sealed.field.clone(),
            })?;
        String::from_utf8(plain).map_err(|_| PiiError::Malformed { what: "plaintext" })
    }
}

impl fmt::Debug for PersonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn associated_data(key_id: &str, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(key_id.len() + field.len() + 1);
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(field.as_bytes());
    aad
}

/// A personal-data value as it is stored in an event: opaque without its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sealed {
    /// Id of the person key that sealed it.
    pub key_id: String,
    /// The field it holds (`phoneNo`, `nickname`), bound into the ciphertext.
    pub field: String,
    /// Base64 (no padding) 24-byte nonce.
    pub nonce: String,
    /// Base64 (no padding) ciphertext with its 16-byte tag.
    pub ciphertext: String,
}

/// A personal-data value as shown to a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revealed {
    /// The key still exists; here is the value.
    Clear(String),
    /// The key was deleted: the person withdrew or their data was destroyed.
    Erased,
}

impl Revealed {
    /// The clear value, if not erased.
    pub fn as_clear(&self) -> Option<&str> {
        match self {
            Self::Clear(value) => Some(value),
            Self::Erased => None,
        }
    }
}

impl fmt::Display for Revealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clear(value) => f.write_str(value),
            Self::Erased => f.write_str("(erased)"),
        }
    }
}

/// Opens `sealed` with the key the key store returned, or reports it erased
/// when the key store has none.
pub fn reveal(sealed: &Sealed, key: Option<&PersonKey>) -> Result<Revealed, PiiError> {
    match key {
        Some(key) => key.open(sealed).map(Revealed::Clear),
        None => Ok(Revealed::Erased),
    }
}

/// Why a sealed value could not be opened although its key exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    /// The value names a different key than the one given.
    #[error("sealed value belongs to key {expected}, not {got}")]
    WrongKey {
        /// The key the value was sealed with.
        expected: String,
        /// The key that was offered.
        got: String,
    },
    /// The ciphertext fails authentication.
    #[error("sealed {field} under key {key_id} fails authentication")]
    Tampered {
        /// Key id of the value.
        key_id: String,
        /// Field of the value.
        field: String,
    },
    /// Not valid base64 or not valid UTF-8.
    #[error("sealed value has a malformed {what}")]
    Malformed {
        /// Which part is malformed.
        what: &'static str,
    },
}

/// The id of a phone number's uniqueness stream: a keyed hash (HMAC-SHA-256
/// with a server-side secret), so the log does not reveal phone numbers to
/// anyone who can enumerate the small space of numbers.
pub fn phone_index(secret: &[u8], phone: &PhoneNumber) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(phone.as_str().as_bytes());
    let digest = mac.finalize().into_bytes();
    digest[..16]
        .iter()
        .fold(String::with_capacity(32), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// The `Idempotency-Key` of a release's join of `target` as it stands at
/// `version`: `release-{target}-{version}-{mac}`, the mac an HMAC with the
/// same server-side secret. Every attempt of one release derives the same
/// key (so its join applies once), and no client can: nobody else can claim
/// it, block it with a stored refusal, or pass a join off as a release.
pub fn release_key(secret: &[u8], target: &DormantMemberId, version: u64) -> String {
    format!(
        "release-{target}-{version}-{}",
        release_mac(secret, target.as_str(), version)
    )
}

/// The target whose release's join `key` is, when it is a release key made
/// with `secret` (see [`release_key`]); `None` for any other key.
pub fn release_target(secret: &[u8], key: &str) -> Option<DormantMemberId> {
    let rest = key.strip_prefix("release-")?;
    let (rest, mac) = rest.rsplit_once('-')?;
    let (target, version) = rest.rsplit_once('-')?;
    let version: u64 = version.parse().ok()?;
    let expected = release_mac(secret, target, version);
    // Equal length and content, compared in full whatever differs first.
    let same = mac.len() == expected.len()
        && mac
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0;
    same.then(|| DormantMemberId::parse(target).ok()).flatten()
}

fn release_mac(secret: &[u8], target: &str, version: u64) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(b"mileage release\0");
    mac.update(target.as_bytes());
    mac.update(b"\0");
    mac.update(&version.to_be_bytes());
    mac.finalize().into_bytes()[..16]
        .iter()
        .fold(String::with_capacity(32), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> PersonKey {
        PersonKey::new(id, [byte; KEY_LEN])
    }

    #[test]
    fn sealed_value_opens_with_its_key() {
        let k = key("member-1", 7);
        let sealed = k.seal("phoneNo", "01085581234", [1; NONCE_LEN]);
        assert_ne!(sealed.ciphertext, "01085581234");
        assert_eq!(k.open(&sealed), Ok("01085581234".to_owned()));
    }

    #[test]
    fn a_field_cannot_be_passed_off_as_another() {
        let k = key("member-1", 7);
        let mut sealed = k.seal("phoneNo", "01085581234", [1; NONCE_LEN]);
        sealed.field = "nickname".into();
        assert!(matches!(k.open(&sealed), Err(PiiError::Tampered { .. })));
    }

    #[test]
    fn another_persons_key_cannot_open_it() {
        let sealed = key("member-1", 7).seal("phoneNo", "010", [1; NONCE_LEN]);
        assert!(matches!(
            key("member-2", 7).open(&sealed),
            Err(PiiError::WrongKey { .. })
        ));
        let forged = PersonKey::new("member-1", [8; KEY_LEN]);
        assert!(matches!(
            forged.open(&sealed),
            Err(PiiError::Tampered { .. })
        ));
    }

    #[test]
    fn comparable_sealing_is_equal_for_equal_values_and_opens() {
        let k = key("phoneClaim", 4);
        let once = k.seal_comparable("memberId", "42");
        assert_eq!(once, k.seal_comparable("memberId", "42"));
        assert_ne!(once, k.seal_comparable("memberId", "43"));
        assert_ne!(once, k.seal_comparable("holder", "42"));
        assert_ne!(once, key("phoneClaim", 5).seal_comparable("memberId", "42"));
        assert_eq!(k.open(&once).unwrap(), "42");
    }

    #[test]
    fn a_deleted_key_reveals_erased() {
        let sealed = key("member-1", 7).seal("nickname", "DOR1", [2; NONCE_LEN]);
        assert_eq!(reveal(&sealed, None), Ok(Revealed::Erased));
        assert_eq!(reveal(&sealed, None).unwrap().to_string(), "(erased)");
    }

    #[test]
    fn key_debug_hides_the_secret() {
        let shown = format!("{:?}", key("member-1", 0xAB));
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab,"),
            "{shown}"
        );
    }

    #[test]
    fn a_release_key_is_recognised_only_with_its_secret_and_unchanged() {
        let target = DormantMemberId::parse("7").unwrap();
        let key = release_key(b"secret", &target, 3);
        assert!(key.starts_with("release-7-3-"));
        assert_eq!(release_target(b"secret", &key), Some(target.clone()));
        assert_eq!(release_target(b"other", &key), None);
        assert_eq!(release_target(b"secret", "release-7-3"), None);
        assert_eq!(
            release_target(b"secret", &key.replace("release-7-3-", "release-8-3-")),
            None
        );
        assert_eq!(
            release_target(b"secret", &key.replace("release-7-3-", "release-7-4-")),
            None
        );
        let mut forged = key.clone();
        forged.pop();
        forged.push('0');
        forged.push('0');
        assert_eq!(release_target(b"secret", &forged), None);
    }

    #[test]
    fn phone_index_depends_on_the_secret_and_not_on_formatting() {
        let a = PhoneNumber::parse("010-8558-1234").unwrap();
        let b = PhoneNumber::parse("01085581234").unwrap();
        assert_eq!(phone_index(b"s1", &a), phone_index(b"s1", &b));
        assert_ne!(phone_index(b"s1", &a), phone_index(b"s2", &a));
        assert_eq!(phone_index(b"s1", &a).len(), 32);
    }
}
