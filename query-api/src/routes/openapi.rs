//! The OpenAPI description, generated from the handlers' annotations and
//! served at `/openapi.json`; `schemas/openapi/query-api.json` is its
//! committed copy, kept equal by a test.

use mileage_service::docs::{BearerAuth, ID_PARAMETERS};
use mileage_service::ops;
use utoipa::OpenApi;

use super::{managerpages, members, messages, projections, search, timeline};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mileage query API",
        description = "Read models: the managerpage, members, dormant notices. A `position` from a command's answer (query parameter or X-Position header) waits, bounded, for that write; X-Stale says when it was not reached.",
    ),
    paths(
        managerpages::list,
        managerpages::counts,
        managerpages::counts_over_time,
        managerpages::by_id,
        managerpages::dormant_member,
        messages::message,
        members::member,
        timeline::of_target,
        timeline::of_member,
        search::search,
        projections::projections,
        ops::health,
        ops::ready,
    ),
    modifiers(&BearerAuth, &ID_PARAMETERS),
    tags(
        (name = "managerpages", description = "Dormant targets as operators see them"),
        (name = "members", description = "Members' balances"),
        (name = "operations", description = "Liveness, readiness and the read side's health"),
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
