//! `/dormantMembers`: register a target, mark it dormant, release it; also
//! the source document's `PATCH /dormantMembers/{id}` with `memberStatus`.

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{patch, post};
use mileage_domain::dormant_member::{DormantMember, DormantStatus};
use mileage_domain::envelope::Causation;
use mileage_domain::ids::{DormantMemberId, MemberId};
use serde::Deserialize;
use serde_json::json;

use super::{accepted, invalid_field};
use crate::auth::Caller;
use crate::dormant;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::handle::Handled;
use crate::state::AppState;

/// The dormant-target routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dormantMembers", post(register))
        .route("/dormantMembers/{id}", patch(change_status))
        .route("/dormantMembers/{id}/dormant", post(mark_dormant))
        .route("/dormantMembers/{id}/release", post(release))
}

/// A member id as text (`"2"`, as httpie sends it) or as a JSON number.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdInput {
    Text(String),
    Number(u64),
}

impl IdInput {
    fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterRequest {
    member_id: IdInput,
    phone_no: String,
    nickname: String,
    /// The source document sends `Pre-Dormant`; a new target is always that.
    member_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StatusRequest {
    member_status: String,
}

/// `Pre-Dormant`, `PRE_DORMANT`, `pre dormant` all name the same status.
fn normalise(status: &str) -> String {
    status
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_uppercase()
}

fn target_body(id: &DormantMemberId, handled: &Handled<DormantMember>) -> serde_json::Value {
    let mut body =
        json!({ "id": id, "memberStatus": handled.state.status().map(DormantStatus::as_str) });
    if let DormantMember::Registered(target) = &handled.state {
        body["memberId"] = json!(target.member_id);
        if let Some(rejoined) = &target.rejoined_member_id {
            body["rejoinedMemberId"] = json!(rejoined);
        }
    }
    body
}

async fn register(
    State(state): State<AppState>,
    Extension(causation): Extension<Causation>,
    caller: Caller,
    AppJson(request): AppJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    if let Some(status) = request
        .member_status
        .filter(|s| normalise(s) != "PREDORMANT")
    {
        return Err(invalid_field(
            "memberStatus",
            "validation.member_status",
            format!("a new dormant target is PRE_DORMANT, not {status:?}"),
        ));
    }
    let member_id = MemberId::parse(&request.member_id.text())?;
    let (id, handled) = dormant::register(
        &state,
        member_id,
        &request.phone_no,
        &request.nickname,
        causation,
    )
    .await?;
    Ok(accepted(
        StatusCode::CREATED,
        target_body(&id, &handled),
        handled.version,
        handled.position,
    ))
}

async fn change_status(
    State(state): State<AppState>,
    Extension(causation): Extension<Causation>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(request): AppJson<StatusRequest>,
) -> Result<Response, ApiError> {
    let id = DormantMemberId::parse(&id)?;
    let handled = match normalise(&request.member_status).as_str() {
        "DORMANT" => {
            caller.require_manager()?;
            dormant::mark_dormant(&state, &id, causation).await?
        }
        "CLEAR" | "CLEARED" => dormant::release(&state, &id, causation, &caller).await?,
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
    Ok(accepted(
        StatusCode::OK,
        target_body(&id, &handled),
        handled.version,
        handled.position,
    ))
}

async fn mark_dormant(
    State(state): State<AppState>,
    Extension(causation): Extension<Causation>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let id = DormantMemberId::parse(&id)?;
    let handled = dormant::mark_dormant(&state, &id, causation).await?;
    Ok(accepted(
        StatusCode::OK,
        target_body(&id, &handled),
        handled.version,
        handled.position,
    ))
}

async fn release(
    State(state): State<AppState>,
    Extension(causation): Extension<Causation>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = DormantMemberId::parse(&id)?;
    let handled = dormant::release(&state, &id, causation, &caller).await?;
    Ok(accepted(
        StatusCode::OK,
        target_body(&id, &handled),
        handled.version,
        handled.position,
    ))
}
