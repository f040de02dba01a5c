//! The service's routes, one module per resource.

mod dormant_members;
mod members;
pub mod openapi;
mod person;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mileage_service::limits::{self, Guard, RateLimits};
use mileage_service::ops::Probe;
use mileage_store::{EventStore, Position};
use serde::Serialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::IntoParams;

use crate::idempotency::{IdempotencyStore, Keys};
use crate::state::AppState;
use mileage_service::ApiError;
use mileage_service::extract::AppJson;

pub(crate) use mileage_service::docs::{
    AuthRefusals, BodyRefusals, CorrelationId, Invalid, KeyReused, Problem, RateLimited,
    StateRefusals, Unavailable,
};

/// The header carrying the global position a command wrote, for
/// read-your-writes on the query side.
pub(crate) const POSITION_HEADER: &str = "x-position";

/// The whole router. Correlation is outermost, so even a replayed answer
/// carries this request's correlation id.
pub(crate) fn router(
    state: AppState,
    idempotency: IdempotencyStore,
    cors_origins: &[String],
    rate_limits: &RateLimits,
) -> Router {
    let probe = Arc::new(StoreProbe(Arc::clone(state.ctx.executor.store())));
    let verifier = Arc::clone(&state.verifier);
    let keys = |keys| axum::middleware::from_fn_with_state(keys, crate::idempotency::idempotent);
    let limit = |guard| axum::middleware::from_fn_with_state(guard, limits::limit);
    // Rate limits are outermost: a refused request claims no key.
    let served = Router::new()
        .merge(mileage_service::ops::router(probe, Some(&openapi::spec())))
        .merge(
            members::public_router()
                .layer(keys(Keys::for_public(
                    idempotency.clone(),
                    Arc::clone(&verifier),
                )))
                .layer(limit(Guard::joins(rate_limits))),
        )
        .merge(
            members::router()
                .merge(dormant_members::router())
                .layer(keys(Keys::for_callers(idempotency, Arc::clone(&verifier))))
                .layer(limit(Guard::commands(rate_limits, &verifier))),
        );
    let router = mileage_service::error::with_problem_fallbacks(served)
        .layer(DefaultBodyLimit::max(crate::BODY_LIMIT))
        .layer(axum::middleware::from_fn(
            mileage_service::correlation::correlate,
        ))
        .route_layer(axum::middleware::from_fn(mileage_service::telemetry::track))
        .with_state(state);
    match cors(cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// `/ready`: the event store answers.
struct StoreProbe(Arc<dyn EventStore>);

#[async_trait]
impl Probe for StoreProbe {
    async fn dependencies(&self) -> Vec<(&'static str, bool)> {
        vec![("eventStore", self.0.head_position().await.is_ok())]
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
                HeaderName::from_static(mileage_service::correlation::HEADER),
            ])
            .expose_headers([
                HeaderName::from_static(POSITION_HEADER),
                HeaderName::from_static(mileage_service::correlation::HEADER),
            ]),
    )
}

/// The `Idempotency-Key` header every POST and PATCH accepts.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "documents the header; the idempotency middleware reads it"
)]
pub(crate) struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters. A retry with the same key and body returns the
    /// first answer and appends nothing; a different body is refused (422).
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        pattern = "^[!-~]{1,255}$"
    )]
    key: Option<String>,
}

/// A command's answer: `body` with the position written also as a header,
/// and `Idempotent-Replayed: true` when it is an earlier attempt's outcome,
/// read from the log (`replayed`).
fn accepted<T: Serialize>(
    status: StatusCode,
    body: T,
    position: Option<Position>,
    replayed: bool,
) -> Response {
    let mut response = (status, AppJson(body)).into_response();
    if let Some(value) = position.and_then(|p| HeaderValue::from_str(&p.to_string()).ok()) {
        response.headers_mut().insert(POSITION_HEADER, value);
    }
    if replayed {
        response.headers_mut().insert(
            crate::idempotency::REPLAYED,
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// A JSON number that is whole, as JSON Schema's `integer` counts (`308.0`
/// included), or 400 naming `field`.
fn whole_number(field: &'static str, number: &serde_json::Number) -> Result<i64, ApiError> {
    if let Some(whole) = number.as_i64() {
        return Ok(whole);
    }
    let not_whole = || {
        invalid_field(
            field,
            "validation.whole_number",
            format!("{field} must be a whole number that fits 64 bits, not {number}"),
        )
    };
    let float = number
        .as_f64()
        .filter(|f| f.fract() == 0.0)
        .ok_or_else(not_whole)?;
    // Below 2^63 in size, so the conversion is exact for every whole f64.
    if float.abs() < 9.223_372_036_854_776e18 {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a whole number within the range of i64"
        )]
        Ok(float as i64)
    } else {
        Err(not_whole())
    }
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
