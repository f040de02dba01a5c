//! Why a dormant-target command is refused.

use crate::error::{DomainError, ErrorKind};

use super::state::DormantStatus;

/// A refused dormant-target command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DormantMemberError {
    /// No target is registered under this id.
    #[error("dormant target not found")]
    NotFound,
    /// A target with this id is already registered.
    #[error("dormant target already registered")]
    AlreadyRegistered,
    /// The target came off the list while `PRE_DORMANT`: the member is
    /// active, and there is nothing to release or mark.
    #[error("the target was lifted: the member is active again or excluded from the policy")]
    Lifted,
    /// The lifecycle does not allow moving from `from` to `to`.
    #[error("cannot change a {from} target to {to}")]
    InvalidTransition {
        /// Current status.
        from: DormantStatus,
        /// Requested status.
        to: DormantStatus,
    },
}

impl DomainError for DormantMemberError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "dormant_member.not_found",
            Self::AlreadyRegistered => "dormant_member.already_registered",
            Self::Lifted => "dormant_member.lifted",
            Self::InvalidTransition { .. } => "dormant_member.invalid_transition",
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyRegistered | Self::Lifted | Self::InvalidTransition { .. } => {
                ErrorKind::Conflict
            }
        }
    }
}
