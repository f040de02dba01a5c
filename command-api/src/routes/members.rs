//! `/members`: join, earn and use points, withdraw; an operator's
//! exclusion from the dormancy policy.

use crate::command::Origin;
use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, post, put};
use chrono::Utc;
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::member::{MemberCommand, PointLimits};
use mileage_domain::pii::release_target;
use mileage_domain::values::Reason;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::person::{NicknameInput, PhoneInput, ReasonInput};
use super::{Problem, accepted, invalid_field};
use crate::state::AppState;
use mileage_service::ApiError;
use mileage_service::auth::Caller;
use mileage_service::extract::AppJson;

/// The public member route: joining needs no token.
pub(super) fn public_router() -> Router<AppState> {
    Router::new().route("/members", post(join))
}

/// The member routes that need a token.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/members/{id}", delete(withdraw))
        .route("/members/{id}/points/earn", post(earn))
        .route("/members/{id}/points/use", post(use_points))
        .route(
            "/members/{id}/dormancy-exclusion",
            put(exclude).delete(include),
        )
}

/// `PUT /members/{id}/dormancy-exclusion`: why the member is taken out of
/// the dormancy policy.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExclusionRequest {
    /// Operator text, kept in the log with who asked (not personal data).
    reason: ReasonInput,
}

/// `POST /members`: a new member.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct JoinRequest {
    phone_no: PhoneInput,
    nickname: NicknameInput,
    /// The source document sends `READY`; nothing else is accepted.
    #[schema(example = "READY", pattern = "^READY$")]
    member_status: Option<String>,
    /// Set by a release of this dormant target (its join over HTTP), and
    /// accepted only with the `Idempotency-Key` that release made (403
    /// `auth.forbidden` otherwise): the member context's process
    /// managers then follow the join as that release's.
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    rejoining: Option<String>,
}

/// `POST /members/{id}/points/earn|use`: how many points.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PointsRequest {
    /// A positive whole number of points (at most `MAX_POINTS_PER_COMMAND`,
    /// 422 beyond; never more than 2^53 - 1).
    #[schema(value_type = i64, minimum = 1, maximum = 9_007_199_254_740_991_i64, example = 100)]
    amount: serde_json::Number,
}

/// What the member routes answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct MemberAnswer {
    /// The member (the resource's own id, as on every route).
    #[schema(value_type = String, example = "1")]
    id: MemberId,
    /// The member, named as the other routes name a member.
    #[schema(value_type = String, example = "1")]
    member_id: MemberId,
    /// `READY` (a member) or `WITHDRAWN`, as the read model says.
    #[schema(example = "READY")]
    member_status: &'static str,
    /// The points balance after the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<u64>,
    /// The member stream's version after the command.
    version: Option<u64>,
    /// The global position written (also the `X-Position` header): hand it
    /// to the query API to read your own writes.
    #[schema(example = "1042-1042")]
    position: Option<String>,
}

impl MemberAnswer {
    fn new(
        member_id: MemberId,
        handled: &crate::command::Handled<mileage_domain::member::Member>,
    ) -> Self {
        Self {
            id: member_id.clone(),
            member_id,
            member_status: match handled.state {
                mileage_domain::member::Member::Withdrawn { .. } => "WITHDRAWN",
                mileage_domain::member::Member::NotJoined
                | mileage_domain::member::Member::Active(_) => "READY",
            },
            balance: None,
            version: handled.version,
            position: handled.position.map(|p| p.to_string()),
        }
    }
}

/// Joins a new member (public).
#[utoipa::path(
    post, path = "/members", tag = "members",
    request_body = JoinRequest,
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 201, description = "Joined", body = MemberAnswer, headers(("X-Position" = String, description = "Global position written"))),
        super::Invalid,
        super::BodyRefusals,
        (status = 403, description = "`rejoining` without the Idempotency-Key of that target's release", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The phone number belongs to a member", body = Problem, content_type = "application/problem+json"),
        super::RateLimited,
        super::KeyReused,
        super::Unavailable,
    )
)]
pub(super) async fn join(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    headers: HeaderMap,
    AppJson(request): AppJson<JoinRequest>,
) -> Result<Response, ApiError> {
    if let Some(status) = request.member_status.filter(|s| s != "READY") {
        return Err(invalid_field(
            "memberStatus",
            "validation.member_status",
            format!("a joining member's status can only be READY, not {status:?}"),
        ));
    }
    let rejoining = match request.rejoining {
        Some(target) => Some(proven_release(&state, &headers, &target)?),
        None => None,
    };
    let (id, joined) = state
        .members
        .join(&request.phone_no.0, &request.nickname.0, rejoining, origin)
        .await?;
    let answer = MemberAnswer {
        balance: Some(joined.state.balance().0),
        ..MemberAnswer::new(id, &joined)
    };
    Ok(accepted(
        StatusCode::CREATED,
        answer,
        joined.position,
        joined.replayed,
    ))
}

/// The target a join names as its release, when the request's key is the
/// one that release made; 403 otherwise (no client can make one).
fn proven_release(
    state: &AppState,
    headers: &HeaderMap,
    target: &str,
) -> Result<DormantMemberId, ApiError> {
    let target = DormantMemberId::parse(target)?;
    let proven = headers
        .get(crate::idempotency::HEADER)
        .and_then(|key| key.to_str().ok())
        .and_then(|key| release_target(state.members.secret(), key));
    if proven.as_ref() == Some(&target) {
        return Ok(target);
    }
    Err(ApiError::Forbidden(
        "rejoining: only a release of that dormant target, with the Idempotency-Key it made, \
         may join as its release"
            .into(),
    ))
}

/// Awards points (a manager or a partner system; never the member).
#[utoipa::path(
    post, path = "/members/{id}/points/earn", tag = "members",
    request_body = PointsRequest,
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 200, description = "Earned", body = MemberAnswer, headers(("X-Position" = String, description = "Global position written"))),
        super::Invalid,
        super::BodyRefusals,
        super::AuthRefusals,
        super::RateLimited,
        super::StateRefusals,
        (status = 422, description = "More than one command may earn (`member.amount_too_large`), or the balance would pass its cap (`member.balance_limit`); or the Idempotency-Key was used for a different request (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
        super::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn earn(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(request): AppJson<PointsRequest>,
) -> Result<Response, ApiError> {
    let id = MemberId::parse(&id)?;
    caller.require_awarder()?;
    let command = |amount, at, limits| MemberCommand::EarnPoints { amount, at, limits };
    let amount = super::whole_number("amount", &request.amount)?;
    points(&state, origin, id, amount, command).await
}

/// Spends points (the member or a manager).
#[utoipa::path(
    post, path = "/members/{id}/points/use", tag = "members",
    request_body = PointsRequest,
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 200, description = "Used", body = MemberAnswer, headers(("X-Position" = String, description = "Global position written"))),
        super::Invalid,
        super::BodyRefusals,
        super::AuthRefusals,
        super::RateLimited,
        super::StateRefusals,
        (status = 422, description = "Not enough points (`member.insufficient_points`), or more than one command may use (`member.amount_too_large`); or the Idempotency-Key was used for a different request (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
        super::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn use_points(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(request): AppJson<PointsRequest>,
) -> Result<Response, ApiError> {
    let id = MemberId::parse(&id)?;
    caller.require_member_or_manager(&id)?;
    let command = |amount, at, limits| MemberCommand::UsePoints { amount, at, limits };
    let amount = super::whole_number("amount", &request.amount)?;
    points(&state, origin, id, amount, command).await
}

/// Earning and using differ only in the command (and who may ask).
async fn points(
    state: &AppState,
    origin: Origin,
    id: MemberId,
    amount: i64,
    command: impl FnOnce(i64, chrono::DateTime<Utc>, PointLimits) -> MemberCommand,
) -> Result<Response, ApiError> {
    let handled = state
        .members
        .command(&id, command(amount, Utc::now(), state.points), origin)
        .await?;
    let answer = MemberAnswer {
        balance: Some(handled.state.balance().0),
        ..MemberAnswer::new(id, &handled)
    };
    Ok(accepted(
        StatusCode::OK,
        answer,
        handled.position,
        handled.replayed,
    ))
}

/// Takes a member out of the dormancy policy (a manager): no target is made
/// of them, and the policy's target still `PRE_DORMANT` is lifted. Already
/// out: nothing changes.
#[utoipa::path(
    put, path = "/members/{id}/dormancy-exclusion", tag = "members",
    request_body = ExclusionRequest,
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 200, description = "Out of the policy", body = MemberAnswer, headers(("X-Position" = String, description = "Global position written"))),
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
pub(super) async fn exclude(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(request): AppJson<ExclusionRequest>,
) -> Result<Response, ApiError> {
    let reason = Reason::parse(&request.reason.0)?;
    let command = MemberCommand::ExcludeFromDormancy {
        reason,
        at: Utc::now(),
    };
    by_a_manager(&state, origin, &caller, &id, command).await
}

/// Puts a member back under the dormancy policy (a manager). Not out:
/// nothing changes.
#[utoipa::path(
    delete, path = "/members/{id}/dormancy-exclusion", tag = "members",
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 200, description = "Under the policy", body = MemberAnswer, headers(("X-Position" = String, description = "Global position written"))),
        super::Invalid,
        super::AuthRefusals,
        super::RateLimited,
        super::StateRefusals,
        super::KeyReused,
        super::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn include(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let command = MemberCommand::IncludeInDormancy { at: Utc::now() };
    by_a_manager(&state, origin, &caller, &id, command).await
}

/// Runs a manager's `command` on member `id`, answering as every member
/// route does.
async fn by_a_manager(
    state: &AppState,
    origin: Origin,
    caller: &Caller,
    id: &str,
    command: MemberCommand,
) -> Result<Response, ApiError> {
    let id = MemberId::parse(id)?;
    caller.require_manager()?;
    let handled = state.members.command(&id, command, origin).await?;
    let answer = MemberAnswer::new(id, &handled);
    Ok(accepted(
        StatusCode::OK,
        answer,
        handled.position,
        handled.replayed,
    ))
}

/// Withdraws a member: remaining points are forfeited, personal data erased.
#[utoipa::path(
    delete, path = "/members/{id}", tag = "members",
    params(super::IdempotencyKey, super::CorrelationId),
    responses(
        (status = 200, description = "Withdrawn", body = MemberAnswer, headers(("X-Position" = String, description = "Global position written"))),
        super::Invalid,
        super::AuthRefusals,
        super::RateLimited,
        super::StateRefusals,
        super::KeyReused,
        super::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn withdraw(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = MemberId::parse(&id)?;
    caller.require_member_or_manager(&id)?;
    let handled = state.members.withdraw(&id, origin).await?;
    let answer = MemberAnswer::new(id, &handled);
    Ok(accepted(
        StatusCode::OK,
        answer,
        handled.position,
        handled.replayed,
    ))
}
