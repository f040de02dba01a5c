//! The OpenAPI description, generated from the handlers' annotations and
//! served at `/openapi.json`; `schemas/openapi/command-api.json` is its
//! committed copy, kept equal by a test.

use mileage_service::docs::{BearerAuth, ID_PARAMETERS};
use mileage_service::ops;
use utoipa::OpenApi;

use super::{dormant_members, members};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mileage command API",
        description = "Commands on members and dormant targets; each answer carries the stream version and the global position written.",
    ),
    paths(
        members::join,
        members::earn,
        members::use_points,
        members::withdraw,
        members::exclude,
        members::include,
        dormant_members::register,
        dormant_members::change_status,
        dormant_members::mark_dormant,
        dormant_members::release,
        ops::health,
        ops::ready,
    ),
    modifiers(&BearerAuth, &ID_PARAMETERS),
    tags(
        (name = "members", description = "Join, points, withdrawal"),
        (name = "dormantMembers", description = "Dormant targets: register, mark dormant, release"),
        (name = "operations", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

/// The description, as served and as committed (pretty JSON, with a final
/// newline). Title, version and licence come from the crate.
pub fn spec() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("an OpenAPI document serialises");
    text.push('\n');
    text
}
