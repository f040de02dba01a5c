//! The service's routes, one module per resource.

pub mod dormant_members;
pub mod health;
pub mod members;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mileage_store::Position;
use serde_json::Value;

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
pub fn router(state: AppState, idempotency: IdempotencyStore) -> Router {
    Router::new()
        .merge(health::router())
        .merge(members::router())
        .merge(dormant_members::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            idempotency,
            crate::idempotency::idempotent,
        ))
        .layer(axum::middleware::from_fn(crate::correlation::correlate))
        .route_layer(axum::middleware::from_fn(crate::telemetry::track))
        .with_state(state)
}

/// A command's answer: `body` plus the stream version and position written,
/// in the body and (position) as a header.
fn accepted(
    status: StatusCode,
    mut body: Value,
    version: Option<u64>,
    position: Option<Position>,
) -> Response {
    body["version"] = version.into();
    body["position"] = position.map(|p| p.to_string()).into();
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
