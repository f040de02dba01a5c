//! Why a member command is refused.

use crate::error::{DomainError, ErrorKind};
use crate::values::{Points, ValidationError};

/// A refused member command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// The command's input is malformed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No member has joined under this id.
    #[error("member not found")]
    NotFound,
    /// A member with this id has already joined.
    #[error("member already joined")]
    AlreadyJoined,
    /// The member has withdrawn; nothing more can happen to them.
    #[error("member has withdrawn")]
    Withdrawn,
    /// Using more points than the balance holds.
    #[error("insufficient points: balance {balance}, requested {requested}")]
    InsufficientPoints {
        /// Current balance.
        balance: Points,
        /// Points asked for.
        requested: Points,
    },
    /// Earning would overflow the balance.
    #[error("balance would overflow")]
    BalanceOverflow,
}

impl DomainError for MemberError {
    fn code(&self) -> &'static str {
        match self {
            Self::Invalid(e) => e.code(),
            Self::NotFound => "member.not_found",
            Self::AlreadyJoined => "member.already_joined",
            Self::Withdrawn => "member.withdrawn",
            Self::InsufficientPoints { .. } => "member.insufficient_points",
            Self::BalanceOverflow => "member.balance_overflow",
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyJoined | Self::Withdrawn => ErrorKind::Conflict,
            Self::InsufficientPoints { .. } | Self::BalanceOverflow => ErrorKind::Rule,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(e) => e.field(),
            Self::InsufficientPoints { .. } | Self::BalanceOverflow => Some("amount"),
            _ => None,
        }
    }
}
