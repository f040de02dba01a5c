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
    /// One command may not move this many points.
    #[error("at most {max} points per command")]
    AmountTooLarge {
        /// The per-command limit.
        max: Points,
    },
    /// Earning would take the balance past its cap.
    #[error("a balance holds at most {max} points")]
    BalanceLimit {
        /// The balance cap.
        max: Points,
    },
}

impl DomainError for MemberError {
    fn code(&self) -> &'static str {
        match self {
            Self::Invalid(e) => e.code(),
            Self::NotFound => "member.not_found",
            Self::AlreadyJoined => "member.already_joined",
            Self::Withdrawn => "member.withdrawn",
            Self::InsufficientPoints { .. } => "member.insufficient_points",
            Self::AmountTooLarge { .. } => "member.amount_too_large",
            Self::BalanceLimit { .. } => "member.balance_limit",
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyJoined | Self::Withdrawn => ErrorKind::Conflict,
            Self::InsufficientPoints { .. }
            | Self::AmountTooLarge { .. }
            | Self::BalanceLimit { .. } => ErrorKind::Rule,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(e) => e.field(),
            Self::InsufficientPoints { .. }
            | Self::AmountTooLarge { .. }
            | Self::BalanceLimit { .. } => Some("amount"),
            _ => None,
        }
    }
}
