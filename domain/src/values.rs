//! Validated value types: once constructed, a value is known to be well formed.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, ErrorKind};

/// Malformed input, named by the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Not a phone number: 7 to 15 digits, optionally with a leading `+` and
    /// `-` or space separators.
    #[error("phoneNo must be 7 to 15 digits, optionally with a leading '+'")]
    InvalidPhoneNumber,
    /// Empty, too long or containing control characters.
    #[error("nickname must be 1 to {max} characters without control characters")]
    InvalidNickname {
        /// The longest nickname accepted.
        max: usize,
    },
    /// An id with characters outside `[A-Za-z0-9_-]` or of the wrong length.
    #[error("{field} must be 1 to 64 characters of letters, digits, '_' or '-'")]
    InvalidId {
        /// The field that held the id.
        field: &'static str,
    },
    /// An operator's reason: empty, too long or with control characters.
    #[error("reason must be 1 to {max} characters without control characters")]
    InvalidReason {
        /// The longest reason accepted.
        max: usize,
    },
    /// Zero or a negative amount of points.
    #[error("amount must be a positive whole number of points, got {amount}")]
    AmountNotPositive {
        /// The amount given.
        amount: i64,
    },
}

impl ValidationError {
    /// The request field the error is about.
    fn field_name(&self) -> &'static str {
        match self {
            Self::InvalidPhoneNumber => "phoneNo",
            Self::InvalidNickname { .. } => "nickname",
            Self::InvalidId { field } => field,
            Self::InvalidReason { .. } => "reason",
            Self::AmountNotPositive { .. } => "amount",
        }
    }
}

impl DomainError for ValidationError {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidPhoneNumber => "validation.phone_number",
            Self::InvalidNickname { .. } => "validation.nickname",
            Self::InvalidId { .. } => "validation.id",
            Self::InvalidReason { .. } => "validation.reason",
            Self::AmountNotPositive { .. } => "validation.amount_not_positive",
        }
    }

    fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }

    fn field(&self) -> Option<&'static str> {
        Some(self.field_name())
    }
}

/// A phone number in canonical form: digits only, with an optional leading `+`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a phone number, dropping `-` and space separators. 7 to 15 digits
    /// (E.164's maximum) after an optional leading `+`; the source document's
    /// `1234567` and `01085581234` pass. Exactly what the OpenAPI pattern
    /// `^ *\+?[ -]*(?:[0-9][ -]*){7,15}$` says.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim_start_matches(' ');
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => ("+", rest),
            None => ("", trimmed),
        };
        let mut digits = String::with_capacity(rest.len() + 1);
        digits.push_str(plus);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                '-' | ' ' => {}
                _ => return Err(ValidationError::InvalidPhoneNumber),
            }
        }
        let count = digits.len() - plus.len();
        if (7..=15).contains(&count) {
            Ok(Self(digits))
        } else {
            Err(ValidationError::InvalidPhoneNumber)
        }
    }

    /// The canonical text, used as the plaintext that gets sealed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but the last four digits hidden, for operator views.
    pub fn masked(&self) -> String {
        let visible = 4.min(self.0.len());
        let hidden = self.0.len() - visible;
        format!("{}{}", "*".repeat(hidden), &self.0[hidden..])
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

/// Why an operator did something, kept in the log with the act (an
/// exclusion from the dormancy policy): operator text, not personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// The longest reason accepted, in characters.
    pub const MAX_CHARS: usize = 200;

    /// Parses a reason: spaces around dropped, then 1 to 200 characters, no
    /// control characters.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim_matches(' ');
        let chars = trimmed.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS || trimmed.chars().any(char::is_control) {
            return Err(ValidationError::InvalidReason {
                max: Self::MAX_CHARS,
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The reason as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A member's display name.
#[derive(Clone, PartialEq, Eq)]
pub struct Nickname(String);

impl Nickname {
    /// The longest nickname accepted, in characters.
    pub const MAX_CHARS: usize = 50;

    /// Parses a nickname: spaces around dropped, then 1 to 50 characters, no
    /// control characters (what the OpenAPI pattern says).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim_matches(' ');
        let chars = trimmed.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS || trimmed.chars().any(char::is_control) {
            return Err(ValidationError::InvalidNickname {
                max: Self::MAX_CHARS,
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The nickname as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Nickname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Nickname(..)")
    }
}

/// A non-negative number of points. Integer, never floating point.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(transparent)]
pub struct Points(pub u64);

impl Points {
    /// No points.
    pub const ZERO: Self = Self(0);

    /// Validates a command amount: strictly positive.
    pub fn positive(amount: i64) -> Result<Self, ValidationError> {
        u64::try_from(amount)
            .ok()
            .filter(|&a| a > 0)
            .map(Self)
            .ok_or(ValidationError::AmountNotPositive { amount })
    }

    /// The sum, or `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// The difference, or `None` when it would go below zero.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }
}

impl fmt::Display for Points {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_from_the_source_document_parse() {
        assert_eq!(
            PhoneNumber::parse("01085581234").unwrap().as_str(),
            "01085581234"
        );
        assert_eq!(PhoneNumber::parse("1234567").unwrap().as_str(), "1234567");
        assert_eq!(
            PhoneNumber::parse(" 010-8558-1234 ").unwrap().as_str(),
            "01085581234"
        );
        assert_eq!(
            PhoneNumber::parse("+82 10 8558 1234").unwrap().as_str(),
            "+821085581234"
        );
    }

    #[test]
    fn malformed_phone_numbers_are_refused() {
        for raw in [
            "",
            "123456",
            "1234567890123456",
            "010-abcd-1234",
            "++8210",
            "+",
            "12 34 5",
        ] {
            assert_eq!(
                PhoneNumber::parse(raw),
                Err(ValidationError::InvalidPhoneNumber),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn masked_phone_shows_only_last_four_digits() {
        assert_eq!(
            PhoneNumber::parse("01085581234").unwrap().masked(),
            "*******1234"
        );
    }

    #[test]
    fn nicknames_are_trimmed_and_bounded() {
        assert_eq!(Nickname::parse("  DOR1 ").unwrap().as_str(), "DOR1");
        assert_eq!(Nickname::parse("휴면회원").unwrap().as_str(), "휴면회원");
        let too_long = "가".repeat(Nickname::MAX_CHARS + 1);
        for raw in ["", "   ", "a\u{0}b", too_long.as_str()] {
            assert!(Nickname::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn amounts_must_be_positive() {
        assert_eq!(Points::positive(5), Ok(Points(5)));
        assert_eq!(
            Points::positive(0),
            Err(ValidationError::AmountNotPositive { amount: 0 })
        );
        assert_eq!(
            Points::positive(-3),
            Err(ValidationError::AmountNotPositive { amount: -3 })
        );
    }
}
