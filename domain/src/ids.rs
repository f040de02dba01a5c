//! Identifiers of aggregates. Opaque, validated strings so that the command
//! side may allocate numbers (as the source document shows) or UUIDs.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::ValidationError;

/// Longest identifier accepted; stream names stay short.
pub const MAX_ID_LEN: usize = 64;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(
            #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] String,
        );

        impl $name {
            /// Parses an id: 1 to 64 characters of ASCII letters, digits, `_` or `-`.
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                let valid = !raw.is_empty()
                    && raw.len() <= MAX_ID_LEN
                    && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if valid {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(ValidationError::InvalidId { field: $field })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a member (`member-{id}` stream).
    MemberId,
    "memberId"
);
id_type!(
    /// Identifies a dormant target (`dormantMember-{id}` and `managerMessage-{id}` streams).
    DormantMemberId,
    "dormantMemberId"
);
