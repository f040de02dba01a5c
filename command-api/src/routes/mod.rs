//! The service's routes, one module per resource.

pub mod dormant_members;
pub mod health;
pub mod members;
pub mod openapi;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mileage_store::Position;
use serde::Serialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use crate::error::ApiError;
use crate::extract::AppJson;
use crate::idempotency::IdempotencyStore;
use crate::state::AppState;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The header carrying the global position a command wrote, for
/// read-your-writes on the query side.
pub const POSITION_HEADER: &str = "x-position";

/// The whole router. Correlation is outermost, so even a replayed answer
/// carries this request's correlation id.
pub fn router(state: AppState, idempotency: IdempotencyStore, cors_origins: &[String]) -> Router {
    let router = Router::new()
        .merge(health::router())
        .merge(members::router())
        .merge(dormant_members::router())
        .merge(openapi::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            idempotency,
            crate::idempotency::idempotent,
        ))
        .layer(axum::middleware::from_fn(crate::correlation::correlate))
        .route_layer(axum::middleware::from_fn(crate::telemetry::track))
        .with_state(state);
    match cors(cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// Lets pages from `origins` (e.g. the admin page on the query API) send
/// commands; bearer tokens, not cookies, carry the authority.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static(crate::correlation::HEADER),
            ])
            .expose_headers([
                HeaderName::from_static(POSITION_HEADER),
                HeaderName::from_static(crate::correlation::HEADER),
            ]),
    )
}

/// RFC 9457 problem details, as every error is answered (documentation of
/// [`ApiError`]'s rendering).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the `code` says what happened.
    #[serde(rename = "type")]
    kind: String,
    /// The HTTP status's reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// What went wrong, for programs, e.g. `member.insufficient_points`.
    #[schema(example = "validation.phone_number")]
    code: String,
    /// The request field at fault, when one is.
    field: Option<String>,
}

/// 400: a malformed body, field, id or header (documentation only).
#[derive(IntoResponses)]
pub enum Invalid {
    /// The problem names the `field` at fault.
    #[response(
        status = 400,
        description = "Malformed body, field, id or header",
        content_type = "application/problem+json"
    )]
    BadRequest(#[to_schema] Problem),
}

/// 413 and 415: a body the service does not read (documentation only).
#[derive(IntoResponses)]
pub enum BodyRefusals {
    /// Over 16 KiB.
    #[response(
        status = 413,
        description = "Body over 16 KiB",
        content_type = "application/problem+json"
    )]
    TooLarge(#[to_schema] Problem),
    /// Not `application/json`.
    #[response(
        status = 415,
        description = "Body is not application/json",
        content_type = "application/problem+json"
    )]
    NotJson(#[to_schema] Problem),
}

/// 401 and 403: the bearer token (documentation only).
#[derive(IntoResponses)]
pub enum AuthRefusals {
    /// Missing, malformed, forged or expired.
    #[response(
        status = 401,
        description = "No valid bearer token",
        content_type = "application/problem+json"
    )]
    Unauthorized(#[to_schema] Problem),
    /// Valid, but without the right role or for another member.
    #[response(
        status = 403,
        description = "Not allowed for this role or member",
        content_type = "application/problem+json"
    )]
    Forbidden(#[to_schema] Problem),
}

/// 404 and 409: the aggregate's state (documentation only).
#[derive(IntoResponses)]
pub enum StateRefusals {
    /// Nothing under this id.
    #[response(
        status = 404,
        description = "No such id",
        content_type = "application/problem+json"
    )]
    NotFound(#[to_schema] Problem),
    /// Not allowed from the current state, or changed concurrently too often.
    #[response(
        status = 409,
        description = "Not allowed from the current state, or a persistent concurrent change",
        content_type = "application/problem+json"
    )]
    Conflict(#[to_schema] Problem),
}

/// 503: a dependency is down (documentation only).
#[derive(IntoResponses)]
pub enum Unavailable {
    /// Retry after the `Retry-After` seconds.
    #[response(
        status = 503,
        description = "The event store or the member service is unavailable; see Retry-After",
        content_type = "application/problem+json"
    )]
    Unavailable(#[to_schema] Problem),
}

/// The `Idempotency-Key` header every POST and PATCH accepts.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "documents the header; the idempotency middleware reads it"
)]
pub struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters. A retry with the same key and body returns the
    /// first answer and appends nothing; a different body is refused (422).
    #[param(rename = "Idempotency-Key")]
    key: Option<String>,
}

/// The `X-Correlation-Id` header, stored on every event a request appends.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "documents the header; the correlation middleware reads it"
)]
pub struct CorrelationId {
    /// A UUID; generated when absent and echoed on the response.
    #[param(rename = "X-Correlation-Id")]
    id: Option<uuid::Uuid>,
}

/// A command's answer: `body` with the position written also as a header.
fn accepted<T: Serialize>(status: StatusCode, body: T, position: Option<Position>) -> Response {
    let mut response = (status, AppJson(body)).into_response();
    if let Some(value) = position.and_then(|p| HeaderValue::from_str(&p.to_string()).ok()) {
        response.headers_mut().insert(POSITION_HEADER, value);
    }
    response
}

/// A refusal of an unknown value for a field.
fn invalid_field(field: &'static str, code: &'static str, detail: String) -> ApiError {
    ApiError::Domain {
        kind: mileage_domain::ErrorKind::Invalid,
        code,
        detail,
        field: Some(field),
    }
}
