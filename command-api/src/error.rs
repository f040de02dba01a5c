//! What a use case answers when its command does not go through: one type
//! for the command side, with the cases a caller (a route, the release's
//! join) tells apart, mapped to HTTP once ([`From<CommandError> for
//! ApiError`](CommandError)). Nothing here matches error-code strings.

use mileage_domain::error::{DomainError, ErrorKind};
use mileage_domain::values::ValidationError;
use mileage_service::ApiError;
use mileage_store::StoreError;

/// A refusal by a rule: its class, stable code, reason and the field at
/// fault, as the problem answer carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) kind: ErrorKind,
    pub(crate) code: &'static str,
    pub(crate) detail: String,
    pub(crate) field: Option<&'static str>,
}

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// Refused by a domain rule, or its input is invalid: the request has to
    /// change. Nothing was applied.
    #[error("{}", .0.detail)]
    Rejected(Refusal),
    /// The caller may not do this to this record.
    #[error("{0}")]
    Forbidden(String),
    /// The streams kept changing under the command; nothing was applied.
    #[error("the command kept conflicting with others")]
    Conflict,
    /// A dependency (the event store, the member service) cannot take the
    /// command now; nothing was applied.
    #[error("{detail}")]
    Unavailable {
        /// Why, for the caller.
        detail: String,
        /// Seconds to wait before trying again.
        retry_after: u64,
    },
    /// The append may have committed: only a retry with the same
    /// `Idempotency-Key` finds out.
    #[error("the append's outcome is unknown: {0}")]
    OutcomeUnknown(String),
    /// The command's `Idempotency-Key` is held by another request or a
    /// refusal kept for it: nothing was applied; the idempotency layer
    /// answers what holds it.
    #[error("the request key is held by an earlier request")]
    KeyHeld,
    /// A fault of ours.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl CommandError {
    /// A domain rule's refusal.
    pub(crate) fn rejected(error: &impl DomainError) -> Self {
        Self::Rejected(Refusal {
            kind: error.kind(),
            code: error.code(),
            detail: error.to_string(),
            field: error.field(),
        })
    }

    /// A conflict with the record's state that no domain type names (the
    /// data was erased, say).
    pub(crate) fn conflict(
        code: &'static str,
        detail: impl Into<String>,
        field: Option<&'static str>,
    ) -> Self {
        Self::Rejected(Refusal {
            kind: ErrorKind::Conflict,
            code,
            detail: detail.into(),
            field,
        })
    }

    /// An authorisation check's answer: a refusal stays one; anything else
    /// it could answer is a fault of ours.
    pub(crate) fn from_authorisation(error: ApiError) -> Self {
        match error {
            ApiError::Forbidden(detail) => Self::Forbidden(detail),
            other => Self::Internal(anyhow::anyhow!("authorisation failed: {other}")),
        }
    }
}

impl From<ValidationError> for CommandError {
    fn from(error: ValidationError) -> Self {
        Self::rejected(&error)
    }
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "event store unavailable");
                Self::Unavailable {
                    detail: "the event store is unavailable; try again later".into(),
                    retry_after: 1,
                }
            }
            StoreError::OutcomeUnknown(detail) => {
                tracing::warn!(%detail, "event store append outcome unknown");
                Self::OutcomeUnknown(detail)
            }
            StoreError::WrongExpectedVersion { .. } => Self::Conflict,
            StoreError::RequestKeyUsed { .. } => Self::KeyHeld,
            other => Self::Internal(other.into()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(refusal) => Self::Domain {
                kind: refusal.kind,
                code: refusal.code,
                detail: refusal.detail,
                field: refusal.field,
            },
            CommandError::Forbidden(detail) => Self::Forbidden(detail),
            CommandError::Conflict => Self::Conflict,
            CommandError::Unavailable {
                detail,
                retry_after,
            } => Self::Unavailable {
                detail,
                retry_after,
            },
            CommandError::OutcomeUnknown(_) => Self::Unavailable {
                detail: "the event store did not confirm the command in time; it may have \
                         been applied: retry with the same Idempotency-Key to find out"
                    .into(),
                retry_after: 1,
            },
            CommandError::KeyHeld => Self::KeyHeld,
            CommandError::Internal(error) => Self::Internal(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_case_maps_to_its_answer() {
        let rejected = ApiError::from(CommandError::conflict(
            "dormant_member.personal_data_erased",
            "erased",
            None,
        ));
        assert!(matches!(
            rejected,
            ApiError::Domain {
                kind: ErrorKind::Conflict,
                code: "dormant_member.personal_data_erased",
                ..
            }
        ));
        assert!(matches!(
            ApiError::from(CommandError::from(StoreError::WrongExpectedVersion {
                stream: "member-1".into(),
                expected: mileage_store::ExpectedVersion::NoStream,
                actual: Some(1),
            })),
            ApiError::Conflict
        ));
        let unknown = ApiError::from(CommandError::from(StoreError::OutcomeUnknown(
            "no answer to an append to member-1 within 10 s".into(),
        )));
        let ApiError::Unavailable { detail, .. } = unknown else {
            panic!("503");
        };
        assert!(detail.contains("same Idempotency-Key"), "{detail}");
        assert!(!detail.contains("member-1"), "no internals: {detail}");
        assert!(matches!(
            CommandError::from_authorisation(ApiError::Forbidden("not yours".into())),
            CommandError::Forbidden(_)
        ));
    }
}
