//! Documentation-only types shared by the services' OpenAPI descriptions:
//! the problem+json body, the refusals every route can answer, the common
//! headers, and the bearer scheme.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, ToSchema};

/// RFC 9457 problem details, as every error is answered (documentation of
/// [`ApiError`]'s rendering).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the `code` says what happened.
    #[serde(rename = "type")]
    kind: String,
    /// The HTTP status's reason phrase.
    title: String,
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// What went wrong, for programs, e.g. `member.insufficient_points`.
    #[schema(example = "validation.phone_number")]
    code: String,
    /// The request field at fault, when one is.
    field: Option<String>,
}

/// 400: a malformed body, field, id or header (documentation only).
#[derive(IntoResponses)]
pub enum Invalid {
    /// The problem names the `field` at fault.
    #[response(
        status = 400,
        description = "Malformed body, field, id or header",
        content_type = "application/problem+json"
    )]
    BadRequest(#[to_schema] Problem),
}

/// 413 and 415: a body the service does not read (documentation only).
#[derive(IntoResponses)]
pub enum BodyRefusals {
    /// Over 16 KiB.
    #[response(
        status = 413,
        description = "Body over 16 KiB",
        content_type = "application/problem+json"
    )]
    TooLarge(#[to_schema] Problem),
    /// Not `application/json`.
    #[response(
        status = 415,
        description = "Body is not application/json",
        content_type = "application/problem+json"
    )]
    NotJson(#[to_schema] Problem),
}

/// 401 and 403: the bearer token (documentation only).
#[derive(IntoResponses)]
pub enum AuthRefusals {
    /// Missing, malformed, forged or expired.
    #[response(
        status = 401,
        description = "No valid bearer token",
        content_type = "application/problem+json"
    )]
    Unauthorized(#[to_schema] Problem),
    /// Valid, but without the right role or for another member.
    #[response(
        status = 403,
        description = "Not allowed for this role or member",
        content_type = "application/problem+json"
    )]
    Forbidden(#[to_schema] Problem),
}

/// 404 and 409: the aggregate's state (documentation only).
#[derive(IntoResponses)]
pub enum StateRefusals {
    /// Nothing under this id.
    #[response(
        status = 404,
        description = "No such id",
        content_type = "application/problem+json"
    )]
    NotFound(#[to_schema] Problem),
    /// Not allowed from the current state, or changed concurrently too often.
    #[response(
        status = 409,
        description = "Not allowed from the current state, or a persistent concurrent change",
        content_type = "application/problem+json"
    )]
    Conflict(#[to_schema] Problem),
}

/// 429: a rate limit is used up (documentation only): joins per client
/// address, commands per caller, refused tokens per address.
#[derive(IntoResponses)]
pub enum RateLimited {
    /// Retry after the `Retry-After` seconds.
    #[response(
        status = 429,
        description = "Too many requests (`rate_limit.joins`, `rate_limit.commands`, `rate_limit.auth_failures`); see Retry-After",
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds until a request is let through again"))
    )]
    TooMany(#[to_schema] Problem),
}

/// 422: the `Idempotency-Key` came with another request before
/// (documentation only).
#[derive(IntoResponses)]
pub enum KeyReused {
    /// `idempotency.key_reused`.
    #[response(
        status = 422,
        description = "The Idempotency-Key was used for a different request (`idempotency.key_reused`)",
        content_type = "application/problem+json"
    )]
    KeyReused(#[to_schema] Problem),
}

/// The pattern of every id in a path or body: what `MemberId::parse` and
/// `DormantMemberId::parse` accept.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// The pattern of a phone number as requests send it: what
/// `PhoneNumber::parse` accepts (7 to 15 digits; `-`, spaces and a leading
/// `+` ignored). The command API's tests generate inputs and check the two
/// agree.
pub const PHONE_PATTERN: &str = r"^ *\+?[ -]*(?:[0-9][ -]*){7,15}$";

/// A phone number's schema: a string of [`PHONE_PATTERN`].
pub fn phone_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(PHONE_PATTERN))
        .examples([serde_json::json!("01012345678")])
        .build()
}

/// An id's schema: a string of [`ID_PATTERN`].
pub fn id_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(ID_PATTERN))
        .build()
}

/// Gives every `{id}` path parameter the id pattern ([`ID_PATTERN`]) and
/// the description its path's prefix names: one definition for every
/// route (the parameter itself comes from the handler's `Path` extractor).
pub struct IdParameters(pub &'static [(&'static str, &'static str)]);

/// The `{id}`s of both APIs: members' and dormant targets'.
pub const ID_PARAMETERS: IdParameters = IdParameters(&[
    ("/members/", "Member id"),
    ("/dormantMembers/", "Dormant target id"),
    ("/managerpages/", "Dormant target id"),
    ("/managerMessages/", "Dormant target id"),
]);

impl Modify for IdParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for (path, item) in &mut openapi.paths.paths {
            let Some((_, description)) = self.0.iter().find(|(prefix, _)| path.starts_with(prefix))
            else {
                continue;
            };
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.name == "id" && parameter.parameter_in == ParameterIn::Path {
                        parameter.description = Some((*description).to_owned());
                        parameter.schema = Some(id_schema().into());
                    }
                }
            }
        }
    }
}

/// 503: a dependency is down (documentation only).
#[derive(IntoResponses)]
pub enum Unavailable {
    /// Retry after the `Retry-After` seconds.
    #[response(
        status = 503,
        description = "The event store or the member service is unavailable; see Retry-After",
        content_type = "application/problem+json"
    )]
    Unavailable(#[to_schema] Problem),
}

/// The `X-Correlation-Id` and `traceparent` headers, stored on every event a
/// request appends.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "documents the header; the correlation middleware reads it"
)]
pub struct CorrelationId {
    /// A UUID, or another id of 1 to 128 visible ASCII characters (kept as
    /// the UUID v5 derived from it); generated when absent. The response
    /// carries the UUID the events carry.
    #[param(rename = "X-Correlation-Id", nullable = false, value_type = Option<String>, pattern = "^[!-~]{1,128}$")]
    id: Option<uuid::Uuid>,
    /// W3C trace context: the request continues this trace (a malformed
    /// value is ignored and a new trace starts). The response's
    /// `traceparent` names the request's span, which the events record.
    #[param(rename = "traceparent", nullable = false, value_type = Option<String>)]
    traceparent: Option<String>,
}

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
