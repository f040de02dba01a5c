//! The one error type of the HTTP edge, rendered as RFC 9457 problem+json
//! with a stable `code`. Every failure is mapped to a status here and only
//! here; 5xx bodies say nothing internal (the cause is logged).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mileage_domain::values::ValidationError;
use mileage_domain::{DomainError, ErrorKind};
use mileage_store::StoreError;
use serde_json::json;

/// A request that did not succeed, and why.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Refused by a domain rule; status from its [`ErrorKind`].
    #[error("{detail}")]
    Domain {
        /// The class of the refusal.
        kind: ErrorKind,
        /// Stable code, e.g. `member.insufficient_points`.
        code: &'static str,
        /// Human-readable reason.
        detail: String,
        /// The request field at fault, when one is.
        field: Option<&'static str>,
    },
    /// The body is not JSON of the expected shape.
    #[error("{0}")]
    MalformedBody(String),
    /// The query string is malformed.
    #[error("{0}")]
    MalformedQuery(String),
    /// The body is not `application/json`.
    #[error("expected a body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is over the size limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// A header has a malformed value.
    #[error("header {header} is malformed: {detail}")]
    BadHeader {
        header: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No valid credentials.
    #[error("{detail}")]
    Unauthorized {
        /// `auth.missing_token`, `auth.invalid_token`, `auth.token_expired`,
        /// `auth.token_lifetime`, `auth.unknown_key`.
        code: &'static str,
        detail: String,
    },
    /// Valid credentials without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// No route has this path.
    #[error("no route serves this path")]
    NoRoute,
    /// The path exists, but not for this method.
    #[error("this path does not take this method")]
    MethodNotAllowed,
    /// The stream kept changing under us; the client may retry.
    #[error("the resource was modified concurrently; retry the request")]
    Conflict,
    /// A rate limit is used up; the client may retry after `retry_after`.
    #[error("{detail}")]
    RateLimited {
        /// `rate_limit.joins`, `rate_limit.commands`, `rate_limit.auth_failures`.
        code: &'static str,
        /// Which limit, for people.
        detail: String,
        /// Seconds until the limit lets a request through again.
        retry_after: u64,
    },
    /// A keyed command's key is held by an earlier request or a refusal
    /// kept for it: nothing of this attempt was applied. The idempotency
    /// layer answers what holds the key instead (see [`KeyHeld`]); this
    /// answer only reaches a client when it cannot.
    #[error("this Idempotency-Key is held by an earlier request; retry with the same key")]
    KeyHeld,
    /// A dependency is down or slow; the client should retry later.
    #[error("{detail}")]
    Unavailable {
        /// What is unavailable.
        detail: String,
        /// Seconds to wait before retrying.
        retry_after: u64,
    },
    /// A bug or corrupt data; logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Marks an answer that says "try again" (a conflict, a used-up limit, an
/// unavailable store or dependency, an internal failure): a retry may well
/// get another answer, so no stored answer of a key may be one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAnswer;

/// Marks the answer of a command stopped by its key's holder
/// ([`ApiError::KeyHeld`]), for the idempotency layer to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHeld;

impl ApiError {
    /// Whether this answer says "try again" (see [`RetryAnswer`]).
    pub fn says_retry(&self) -> bool {
        matches!(
            self,
            Self::Conflict
                | Self::KeyHeld
                | Self::RateLimited { .. }
                | Self::Unavailable { .. }
                | Self::Internal(_)
        )
    }

    /// 404 with this code: nothing under the id asked for.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Domain {
            kind: ErrorKind::NotFound,
            code,
            detail: detail.into(),
            field: None,
        }
    }

    /// 400 naming the query parameter or field at fault.
    pub fn invalid(field: &'static str, code: &'static str, detail: impl Into<String>) -> Self {
        Self::Domain {
            kind: ErrorKind::Invalid,
            code,
            detail: detail.into(),
            field: Some(field),
        }
    }

    /// A domain refusal, naming the field it concerns when there is one.
    pub fn domain<E: DomainError>(error: &E) -> Self {
        Self::Domain {
            kind: error.kind(),
            code: error.code(),
            detail: error.to_string(),
            field: error.field(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Domain { kind, .. } => match kind {
                ErrorKind::Invalid => StatusCode::BAD_REQUEST,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Rule => StatusCode::UNPROCESSABLE_ENTITY,
            },
            Self::MalformedBody(_) | Self::MalformedQuery(_) | Self::BadHeader { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict | Self::KeyHeld => StatusCode::CONFLICT,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Domain { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::RateLimited { code, .. } => code,
            Self::MalformedBody(_) => "request.malformed_body",
            Self::MalformedQuery(_) => "request.malformed_query",
            Self::UnsupportedMediaType => "request.unsupported_media_type",
            Self::PayloadTooLarge => "request.payload_too_large",
            Self::BadHeader { .. } => "request.bad_header",
            Self::Forbidden(_) => "auth.forbidden",
            Self::Conflict => "request.conflict",
            Self::KeyHeld => "idempotency.in_flight",
            Self::NoRoute => "request.no_route",
            Self::MethodNotAllowed => "request.method_not_allowed",
            Self::Unavailable { .. } => "service.unavailable",
            Self::Internal(_) => "service.internal",
        }
    }
}

/// A service's router with problem+json answers for what it does not
/// route: 404 `request.no_route` and 405 `request.method_not_allowed`
/// (instead of axum's empty bodies). Call it once the routes are all there.
pub fn with_problem_fallbacks<S>(router: axum::Router<S>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        Self::domain(&error)
    }
}

impl From<StoreError> for ApiError {
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
                Self::Unavailable {
                    detail: "the event store did not confirm the command in time; it may have \
                             been applied: retry with the same Idempotency-Key to find out"
                        .into(),
                    retry_after: 1,
                }
            }
            StoreError::WrongExpectedVersion { .. } => Self::Conflict,
            other => Self::Internal(other.into()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            _ => Self::MalformedBody(rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::MalformedQuery(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let says_retry = self.says_retry();
        let detail = if let Self::Internal(cause) = &self {
            tracing::error!(error = ?cause, "request failed");
            "an internal error occurred".to_owned()
        } else {
            self.to_string()
        };
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "code": self.code(),
        });
        if let Self::Domain {
            field: Some(field), ..
        } = &self
        {
            body["field"] = json!(field);
        }
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Self::Unauthorized { .. } = &self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::Unavailable { retry_after, .. } | Self::RateLimited { retry_after, .. } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if says_retry {
            response.extensions_mut().insert(RetryAnswer);
        }
        if let Self::KeyHeld = &self {
            response.extensions_mut().insert(KeyHeld);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use mileage_store::StoreError;

    use super::ApiError;

    #[test]
    fn an_append_of_unknown_outcome_is_a_503_that_says_to_retry_with_the_same_key() {
        let error = ApiError::from(StoreError::OutcomeUnknown(
            "no answer to an append to member-1 within 10 s".into(),
        ));
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            error.to_string().contains("same Idempotency-Key"),
            "{error}"
        );
        assert!(
            !error.to_string().contains("member-1"),
            "no internals: {error}"
        );
    }
}
