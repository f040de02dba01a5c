//! `/dormantMembers`: register a target, mark it dormant, release it; also
//! the source document's `PATCH /dormantMembers/{id}` with `memberStatus`.

use crate::command::Origin;
use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{patch, post};
use mileage_domain::dormant_member::{DormantMember, DormantStatus};
use mileage_domain::ids::{DormantMemberId, MemberId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::person::{NicknameInput, PhoneInput};
use super::{Problem, accepted, invalid_field};
use crate::command::Handled;
use crate::dormant;
use crate::state::AppState;
use mileage_service::ApiError;
use mileage_service::auth::Caller;
use mileage_service::extract::AppJson;

/// The dormant-target routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/dormantMembers", post(register))
        .route("/dormantMembers/{id}", patch(change_status))
        .route("/dormantMembers/{id}/dormant", post(mark_dormant))
        .route("/dormantMembers/{id}/release", post(release))
}

/// A member id as text (`"2"`, as httpie sends it) or as a JSON number.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum IdInput {
    /// `"2"`
    Text(String),
    /// `2` (or `2.0`: JSON Schema's integers)
    Number(serde_json::Number),
}

/// [`IdInput`]'s schema: an id's pattern, or a whole number that fits 32
/// bits (what deserialising it accepts).
fn id_input_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(mileage_service::docs::ID_PATTERN)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(u32::MAX)),
        )
        .description(Some(
            "A member id as text (`\"2\"`, as httpie sends it) or as a JSON number.",
        ))
        .build()
        .into()
}

impl IdInput {
    fn text(&self) -> Result<String, ApiError> {
        match self {
            Self::Text(text) => Ok(text.clone()),
            Self::Number(n) => super::whole_number("memberId", n)
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| n.to_string())
                .ok_or_else(|| {
                    super::invalid_field(
                        "memberId",
                        "validation.member_id",
                        format!("memberId must be an id or a whole number 0 to {}", u32::MAX),
                    )
                }),
        }
    }
}

/// `POST /dormantMembers`: a member to mark as a dormant target.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RegisterRequest {
    /// The quiet member.
    #[schema(example = "2", schema_with = id_input_schema)]
    member_id: IdInput,
    /// Where the dormant notice goes.
    phone_no: PhoneInput,
    nickname: NicknameInput,
    /// The source document sends `Pre-Dormant`; a new target is always that.
    #[schema(example = "Pre-Dormant", pattern = "^(Pre-Dormant|PRE_DORMANT)$")]
    member_status: Option<String>,
}

/// `PATCH /dormantMembers/{id}`: the source document's status change.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct StatusRequest {
    /// `DORMANT` marks the target dormant; `CLEAR` (or `CLEARED`) releases
    /// it (re-joins).
    #[schema(example = "DORMANT", pattern = "^(DORMANT|CLEAR|CLEARED)$")]
    member_status: String,
}

/// What the dormant-target routes answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TargetAnswer {
    #[schema(value_type = String, example = "1")]
    id: DormantMemberId,
    /// `PRE_DORMANT`, `DORMANT`, `DESTRUCTION` or `CLEARED`.
    member_status: Option<&'static str>,
    /// The member the target was registered for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    member_id: Option<MemberId>,
    /// The member created by a release.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    rejoined_member_id: Option<MemberId>,
    /// The target stream's version after the command.
    version: Option<u64>,
    /// The global position written (also the `X-Position` header); absent
    /// when the target already was in the requested state.
    #[schema(example = "1042-1042")]
    position: Option<String>,
}

/// The answer to a command on `id`, and its position header.
fn answer(status: StatusCode, id: DormantMemberId, handled: &Handled<DormantMember>) -> Response {
    let target = match &handled.state {
        DormantMember::Registered(target) => Some(target),
        DormantMember::Unregistered => None,
    };
    let body = TargetAnswer {
        id,
        member_status: handled.state.status().map(DormantStatus::as_str),
        member_id: target.map(|t| t.member_id.clone()),
        rejoined_member_id: target.and_then(|t| t.rejoined_member_id.clone()),
        version: handled.version,
        position: handled.position.map(|p| p.to_string()),
    };
    accepted(status, body, handled.position, handled.replayed)
}

/// Registers a dormant target (managers).
#[utoipa::path(
    post, path = "/dormantMembers", tag = "dormantMembers",
    request_body = RegisterRequest,
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 201, description = "Registered", body = TargetAnswer, headers(("X-Position" = String, description = "Global position written"))),
        super::Invalid,
        super::BodyRefusals,
        super::AuthRefusals,
        super::RateLimited,
        (status = 409, description = "Already registered", body = Problem, content_type = "application/problem+json"),
        super::KeyReused,
        super::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn register(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    AppJson(request): AppJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    if let Some(status) = request
        .member_status
        .filter(|s| s != "Pre-Dormant" && s != "PRE_DORMANT")
    {
        return Err(invalid_field(
            "memberStatus",
            "validation.member_status",
            format!("a new dormant target is PRE_DORMANT, not {status:?}"),
        ));
    }
    let member_id = MemberId::parse(&request.member_id.text()?)?;
    let (id, handled) = dormant::register(
        &state,
        member_id,
        &request.phone_no.0,
        &request.nickname.0,
        origin,
    )
    .await?;
    Ok(answer(StatusCode::CREATED, id, &handled))
}

/// The source document's form: `DORMANT` marks dormant (managers), `CLEAR`
/// releases (managers, or the member themself).
#[utoipa::path(
    patch, path = "/dormantMembers/{id}", tag = "dormantMembers",
    request_body = StatusRequest,
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 200, description = "Changed", body = TargetAnswer, headers(("X-Position" = String, description = "Global position written"))),
        super::Invalid,
        super::BodyRefusals,
        super::AuthRefusals,
        super::RateLimited,
        super::StateRefusals,
        super::KeyReused,
        super::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn change_status(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(request): AppJson<StatusRequest>,
) -> Result<Response, ApiError> {
    let id = DormantMemberId::parse(&id)?;
    let handled = match request.member_status.as_str() {
        "DORMANT" => {
            caller.require_manager()?;
            dormant::mark_dormant(&state, &id, origin).await?
        }
        "CLEAR" | "CLEARED" => dormant::release(&state, &id, origin, &caller).await?,
        _ => {
            return Err(invalid_field(
                "memberStatus",
                "validation.member_status",
                format!(
                    "memberStatus must be DORMANT or CLEAR, not {:?}",
                    request.member_status
                ),
            ));
        }
    };
    Ok(answer(StatusCode::OK, id, &handled))
}

/// Marks a target dormant, which sends the dormant notice (managers).
#[utoipa::path(
    post, path = "/dormantMembers/{id}/dormant", tag = "dormantMembers",
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 200, description = "Marked dormant", body = TargetAnswer, headers(("X-Position" = String, description = "Global position written"))),
        super::Invalid,
        super::AuthRefusals,
        super::RateLimited,
        super::StateRefusals,
        super::KeyReused,
        super::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn mark_dormant(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let id = DormantMemberId::parse(&id)?;
    let handled = dormant::mark_dormant(&state, &id, origin).await?;
    Ok(answer(StatusCode::OK, id, &handled))
}

/// Releases a target: re-joins the member, then marks it cleared (managers,
/// or the member themself).
#[utoipa::path(
    post, path = "/dormantMembers/{id}/release", tag = "dormantMembers",
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 200, description = "Released", body = TargetAnswer, headers(("X-Position" = String, description = "Global position written"))),
        super::Invalid,
        super::AuthRefusals,
        super::RateLimited,
        super::StateRefusals,
        super::KeyReused,
        super::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn release(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = DormantMemberId::parse(&id)?;
    let handled = dormant::release(&state, &id, origin, &caller).await?;
    Ok(answer(StatusCode::OK, id, &handled))
}
