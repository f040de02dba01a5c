//! Read-your-writes: a position from a command's answer (the `position`
//! query parameter or the `X-Position` header) makes a read wait, bounded,
//! until the projection has reached it. Every answer says how fresh it is:
//! `X-Projection-Position`, and `X-Stale: true` when the wait ran out.

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::response::Response;
use mileage_service::ApiError;
use mileage_store::Position;

use crate::progress::Seen;

/// The position a request wants to see, if any.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wanted(pub Option<Position>);

impl<S: Send + Sync> FromRequestParts<S> for Wanted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let from_query = parts.uri.query().and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("position="))
                .map(str::to_owned)
        });
        let raw = match from_query {
            Some(raw) => Some(raw),
            None => match parts.headers.get("x-position") {
                Some(value) => Some(
                    value
                        .to_str()
                        .map_err(|_| bad_position("not text"))?
                        .to_owned(),
                ),
                None => None,
            },
        };
        raw.map(|raw| {
            raw.parse::<Position>()
                .map_err(|e| bad_position(&e.to_string()))
        })
        .transpose()
        .map(Wanted)
    }
}

fn bad_position(detail: &str) -> ApiError {
    ApiError::Domain {
        kind: mileage_domain::ErrorKind::Invalid,
        code: "validation.position",
        detail: format!("position: {detail}"),
        field: Some("position"),
    }
}

/// Adds the freshness headers to `response`.
pub(crate) fn mark(response: &mut Response, seen: Seen) {
    let headers = response.headers_mut();
    if let Some(value) = seen
        .checkpoint
        .and_then(|p| HeaderValue::from_str(&p.to_string()).ok())
    {
        headers.insert("x-projection-position", value);
    }
    if seen.stale {
        headers.insert("x-stale", HeaderValue::from_static("true"));
    }
}
