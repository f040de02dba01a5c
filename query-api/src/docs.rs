//! Error answers as the OpenAPI description documents them: the shared
//! problem+json shapes, plus 404.

pub(crate) use mileage_service::docs::{AuthRefusals, Invalid, Problem, RateLimited, Unavailable};
use utoipa::{IntoParams, IntoResponses};

/// The read-your-writes parameters every read takes (documentation only:
/// the `Wanted` extractor reads them).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "documentation only: utoipa reads its shape")]
pub(crate) struct WaitFor {
    /// Wait (bounded) until the read model has reached this position (a
    /// command's `X-Position`; an `X-Position` header works too).
    #[param(inline, nullable = false)]
    position: Option<PositionText>,
}

/// A log position, `{commit}-{prepare}`: a command's `X-Position`, or a
/// page's `nextCursor`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(
    value_type = String,
    pattern = "^(0|[1-9][0-9]{0,17})-(0|[1-9][0-9]{0,17})$"
)]
pub(crate) struct PositionText(pub(crate) String);

/// 404: nothing under this id (documentation only).
#[derive(IntoResponses)]
#[expect(dead_code, reason = "documentation only: utoipa reads its shape")]
pub(crate) enum NotFound {
    /// Not in the read model (yet: see `X-Stale`).
    #[response(
        status = 404,
        description = "Not in the read model (or not yet, when X-Stale is true)",
        content_type = "application/problem+json"
    )]
    NotFound(#[to_schema] Problem),
}
