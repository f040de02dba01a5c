//! `X-Correlation-Id` in (generated when absent), on every event the request
//! appends, and back out on the response; the same for the W3C trace
//! context (`traceparent`): a request continues its caller's trace (or
//! starts one), every event it appends records it, and the response
//! answers it, so one operator action can be followed from the request
//! through the log to the notice.
//!
//! A UUID is kept as it is. Another correlation id from an upstream system
//! (1 to 128 visible ASCII characters: a gateway's request id, a trace id)
//! is honoured too, as the name-based UUID (v5) derived from it, so the same
//! upstream id always correlates the same events; the response carries the
//! UUID the events carry.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mileage_domain::envelope::{Causation, TraceContext};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ApiError;

/// The correlation header.
pub const HEADER: &str = "x-correlation-id";

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// The trace context a request's caller sent: a valid `traceparent`, or
/// `None` (a malformed one is ignored, as the W3C specification says).
pub fn caller_trace(headers: &axum::http::HeaderMap) -> Option<TraceContext> {
    headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<TraceContext>().ok())
}

/// The namespace of correlation ids derived from upstream ids that are not
/// UUIDs.
const UPSTREAM_IDS: Uuid = Uuid::from_u128(0x6d69_6c65_6167_6563_6f72_7265_6c61_7465);

/// The correlation id a header value names: itself when it is a UUID, the
/// v5 UUID of its bytes when it is another visible-ASCII id of 1 to 128
/// characters, `None` otherwise.
fn correlation_id(value: &[u8]) -> Option<Uuid> {
    let visible =
        !value.is_empty() && value.len() <= 128 && value.iter().all(|b| (0x21..=0x7e).contains(b));
    if !visible {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    Some(Uuid::parse_str(text).unwrap_or_else(|_| Uuid::new_v5(&UPSTREAM_IDS, value)))
}

/// Puts the request's [`Causation`] into its extensions: the given or a new
/// correlation id, and a fresh id for this request as the causation. The
/// request runs inside a `request` span carrying the correlation id, so every
/// log line it causes names it.
pub async fn correlate(mut request: Request, next: Next) -> Response {
    let request_id = Uuid::now_v7();
    let correlation_id = match request.headers().get(HEADER) {
        None => request_id,
        Some(value) => match correlation_id(value.as_bytes()) {
            Some(id) => id,
            None => {
                return ApiError::BadHeader {
                    header: "X-Correlation-Id",
                    detail: "expected a UUID, or 1 to 128 visible ASCII characters".into(),
                }
                .into_response();
            }
        },
    };
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        %correlation_id,
        trace_id = tracing::field::Empty,
    );
    let trace = crate::traces::enter(&span, caller_trace(request.headers()));
    span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
    request.extensions_mut().insert(Causation {
        correlation_id,
        causation_id: request_id,
        trace: Some(trace),
        actor: None,
    });
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
    if let Ok(value) = HeaderValue::from_str(&trace.to_string()) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}
