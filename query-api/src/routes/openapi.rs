//! The OpenAPI description, generated from the handlers' annotations and
//! served at `/openapi.json`; `schemas/openapi/query-api.json` is its
//! committed copy, kept equal by a test.

use axum::routing::get;
use axum::{Json, Router};
use mileage_command_api::routes::openapi::BearerAuth;
use utoipa::OpenApi;

use super::{health, managerpages, members, messages};
use crate::state::QueryState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mileage query API",
        description = "Read models: the managerpage, members, dormant notices. A `position` from a command's answer (query parameter or X-Position header) waits, bounded, for that write; X-Stale says when it was not reached.",
    ),
    paths(
        managerpages::list,
        managerpages::counts,
        managerpages::by_id,
        managerpages::dormant_member,
        messages::message,
        members::member,
        health::health,
        health::ready,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "managerpages", description = "Dormant targets as operators see them"),
        (name = "members", description = "Members' balances"),
        (name = "operations", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

/// The description, as served and as committed (pretty JSON, final newline).
pub fn spec() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("an OpenAPI document serialises");
    text.push('\n');
    text
}

/// `GET /openapi.json`.
pub fn router() -> Router<QueryState> {
    Router::new().route(
        "/openapi.json",
        get(|| async {
            let value: serde_json::Value = serde_json::from_str(&spec()).expect("spec() is JSON");
            Json(value)
        }),
    )
}
