//! `/members`: join, earn and use points, withdraw.

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, post};
use chrono::Utc;
use mileage_domain::envelope::Causation;
use mileage_domain::ids::MemberId;
use mileage_domain::member::MemberCommand;
use serde::Deserialize;
use serde_json::json;

use super::{accepted, invalid_field};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::members;
use crate::state::AppState;

/// The member routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/members", post(join))
        .route("/members/{id}", delete(withdraw))
        .route("/members/{id}/points/earn", post(earn))
        .route("/members/{id}/points/use", post(use_points))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinRequest {
    phone_no: String,
    nickname: String,
    /// The source document sends `READY`; nothing else is meaningful.
    member_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointsRequest {
    amount: i64,
}

async fn join(
    State(state): State<AppState>,
    Extension(causation): Extension<Causation>,
    AppJson(request): AppJson<JoinRequest>,
) -> Result<Response, ApiError> {
    if let Some(status) = request
        .member_status
        .filter(|s| !s.eq_ignore_ascii_case("READY"))
    {
        return Err(invalid_field(
            "memberStatus",
            "validation.member_status",
            format!("a joining member's status can only be READY, not {status:?}"),
        ));
    }
    let (id, joined) =
        members::join(&state, &request.phone_no, &request.nickname, causation).await?;
    let body = json!({ "memberId": id, "memberStatus": "READY", "balance": 0 });
    Ok(accepted(
        StatusCode::CREATED,
        body,
        joined.version,
        joined.position,
    ))
}

async fn earn(
    State(state): State<AppState>,
    Extension(causation): Extension<Causation>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(request): AppJson<PointsRequest>,
) -> Result<Response, ApiError> {
    let command = |amount, at| MemberCommand::EarnPoints { amount, at };
    points(&state, causation, &caller, &id, request.amount, command).await
}

async fn use_points(
    State(state): State<AppState>,
    Extension(causation): Extension<Causation>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(request): AppJson<PointsRequest>,
) -> Result<Response, ApiError> {
    let command = |amount, at| MemberCommand::UsePoints { amount, at };
    points(&state, causation, &caller, &id, request.amount, command).await
}

/// Earning and using differ only in the command.
async fn points(
    state: &AppState,
    causation: Causation,
    caller: &Caller,
    id: &str,
    amount: i64,
    command: impl FnOnce(i64, chrono::DateTime<Utc>) -> MemberCommand,
) -> Result<Response, ApiError> {
    let id = MemberId::parse(id)?;
    caller.require_member_or_manager(&id)?;
    let handled = members::points(state, &id, command(amount, Utc::now()), causation).await?;
    let body = json!({ "memberId": id, "balance": handled.state.balance() });
    Ok(accepted(
        StatusCode::OK,
        body,
        handled.version,
        handled.position,
    ))
}

async fn withdraw(
    State(state): State<AppState>,
    Extension(causation): Extension<Causation>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = MemberId::parse(&id)?;
    caller.require_member_or_manager(&id)?;
    let handled = members::withdraw(&state, &id, causation).await?;
    let body = json!({ "memberId": id, "memberStatus": "WITHDRAWN" });
    Ok(accepted(
        StatusCode::OK,
        body,
        handled.version,
        handled.position,
    ))
}
