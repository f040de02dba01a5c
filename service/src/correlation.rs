//! `X-Correlation-Id` in (generated when absent), on every event the request
//! appends, and back out on the response.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mileage_domain::envelope::Causation;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ApiError;

/// The correlation header.
pub const HEADER: &str = "x-correlation-id";

/// Puts the request's [`Causation`] into its extensions: the given or a new
/// correlation id, and a fresh id for this request as the causation. The
/// request runs inside a `request` span carrying the correlation id, so every
/// log line it causes names it.
pub async fn correlate(mut request: Request, next: Next) -> Response {
    let request_id = Uuid::now_v7();
    let correlation_id = match request.headers().get(HEADER) {
        None => request_id,
        Some(value) => match value.to_str().ok().and_then(|v| Uuid::parse_str(v).ok()) {
            Some(id) => id,
            None => {
                return ApiError::BadHeader {
                    header: "X-Correlation-Id",
                    detail: "expected a UUID".into(),
                }
                .into_response();
            }
        },
    };
    request.extensions_mut().insert(Causation {
        correlation_id,
        causation_id: request_id,
    });
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        %correlation_id,
    );
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros(),
            "request finished"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&correlation_id.to_string()) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
