//! The OpenAPI description, generated from the handlers' annotations and
//! served at `/openapi.json`; `schemas/openapi/command-api.json` is its
//! committed copy, kept equal by a test.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{dormant_members, health, members};
use crate::state::AppState;

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
        dormant_members::register,
        dormant_members::change_status,
        dormant_members::mark_dormant,
        dormant_members::release,
        health::health,
        health::ready,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "members", description = "Join, points, withdrawal"),
        (name = "dormantMembers", description = "Dormant targets: register, mark dormant, release"),
        (name = "operations", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` scheme the secured operations name (the query API
/// uses it too).
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The description, as served and as committed (pretty JSON, with a final
/// newline). Title, version and licence come from the crate.
pub fn spec() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("an OpenAPI document serialises");
    text.push('\n');
    text
}

/// `GET /openapi.json`.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(|| async {
            let value: serde_json::Value = serde_json::from_str(&spec()).expect("spec() is JSON");
            Json(value)
        }),
    )
}
