//! The query API's routes, one module per resource.

mod admin;
mod health;
mod managerpages;
mod members;
mod messages;
pub mod openapi;
mod projections;
mod search;
mod timeline;

use std::sync::Arc;

use mileage_service::limits::Guard;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mileage_service::ApiError;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::freshness::{Wanted, mark};
use crate::progress::Seen;
use crate::state::QueryState;

/// Every route: the operations endpoints (health, readiness, metrics, the
/// OpenAPI document) unlimited, the reads behind `guard`'s rate limits.
pub(crate) fn router(state: QueryState, guard: Guard) -> Router {
    let routes = Router::new()
        .merge(mileage_service::ops::router(
            Arc::new(health::ReadSide(state.clone())),
            Some(&openapi::spec()),
        ))
        .merge(
            managerpages::router()
                .merge(members::router())
                .merge(messages::router())
                .merge(projections::router())
                .merge(timeline::router())
                .merge(search::router())
                .layer(axum::middleware::from_fn_with_state(
                    guard,
                    mileage_service::limits::limit,
                )),
        )
        .merge(admin::router());
    mileage_service::error::with_problem_fallbacks(routes)
        .layer(axum::middleware::from_fn(
            mileage_service::correlation::correlate,
        ))
        .route_layer(axum::middleware::from_fn(mileage_service::telemetry::track))
        .with_state(state)
}

/// The largest page any list answers.
const MAX_LIMIT: i64 = 200;

/// A page's `limit`: 1 to [`MAX_LIMIT`], 50 when not given.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(
            "limit",
            "validation.limit",
            format!("limit must be 1 to {MAX_LIMIT}, not {limit}"),
        ))
    }
}

/// Waits for the wanted position on `projection`, bounded.
async fn wait(state: &QueryState, projection: &str, wanted: Wanted) -> Seen {
    state
        .progress
        .wait(projection, wanted.0, state.wait_limit)
        .await
}

/// `body` as JSON with the freshness headers (serialised into one buffer
/// sized for a page, so a list is not copied as it grows).
fn fresh<T: Serialize>(body: T, seen: Seen) -> Response {
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut response = match serde_json::to_writer(&mut buffer, &body) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            buffer,
        )
            .into_response(),
        Err(e) => ApiError::Internal(e.into()).into_response(),
    };
    mark(&mut response, seen);
    response
}

/// `error` (a 404 after a wait, say) with the freshness headers: a client
/// that sees `X-Stale: true` knows to ask again.
fn fresh_error(error: ApiError, seen: Seen) -> Response {
    let mut response = error.into_response();
    mark(&mut response, seen);
    response
}

/// A weak validator for a list answer: the projection's checkpoint, the
/// erasure process manager's (personal data is opened with the keys at
/// read time, and a key goes once that checkpoint passes the event that
/// erases it) and the query. Equal checkpoints mean equal answers, so a
/// match answers 304 without touching the database.
fn etag(state: &QueryState, seen: Seen, query: Option<&str>) -> String {
    let digest = Sha256::digest(query.unwrap_or_default().as_bytes());
    let at =
        |p: Option<mileage_store::Position>| p.map_or_else(|| "0-0".to_owned(), |p| p.to_string());
    format!(
        "W/\"{}.{}.{:02x}{:02x}{:02x}{:02x}\"",
        at(seen.checkpoint),
        at(state.progress.checkpoint(ERASURE)),
        digest[0],
        digest[1],
        digest[2],
        digest[3]
    )
}

/// The process manager that deletes person keys.
const ERASURE: &str = "erasure";

/// 304 when the request's `If-None-Match` holds `tag`.
fn not_modified(headers: &HeaderMap, tag: &str, seen: Seen) -> Option<Response> {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    matches.then(|| {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = HeaderValue::from_str(tag) {
            response.headers_mut().insert(header::ETAG, value);
        }
        mark(&mut response, seen);
        response
    })
}

/// `response` with its validator; caches must revalidate each time.
fn tagged(mut response: Response, tag: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A read-database failure: 503 when it is unreachable, 500 otherwise.
fn db_error(error: impl std::fmt::Display) -> ApiError {
    let text = error.to_string();
    tracing::warn!(error = %text, "read database failed");
    ApiError::Unavailable {
        detail: "the read models are unavailable; try again later".into(),
        retry_after: 1,
    }
}
