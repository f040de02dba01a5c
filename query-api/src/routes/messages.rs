//! `/managerMessages/{id}`: the dormant notice of a target.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use mileage_read_model::messages;
use mileage_service::ApiError;
use mileage_service::auth::Caller;
use serde::Serialize;
use utoipa::ToSchema;

use super::{db_error, fresh, fresh_error, wait};
use crate::freshness::Wanted;
use crate::state::QueryState;

/// `GET /managerMessages/{id}`: a target's notice.
pub(super) fn router() -> Router<QueryState> {
    Router::new().route("/managerMessages/{id}", get(message))
}

/// A target's notice.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ManagerMessage {
    #[schema(example = "1")]
    id: String,
    member_id: String,
    /// Where it went, masked; `null` once erased.
    phone_no: Option<String>,
    /// What was sent.
    message_contents: String,
    /// `SENT` or `FAILED`.
    #[schema(example = "SENT")]
    message_status: String,
    /// Delivery attempts.
    attempts: i32,
    /// Why it failed, when it did.
    last_error: Option<String>,
    /// When the outcome was recorded.
    updated_at: DateTime<Utc>,
}

/// A target's dormant notice (managers).
#[utoipa::path(
    get, path = "/managerMessages/{id}", tag = "managerpages",
    params(crate::docs::WaitFor),
    responses(
        (status = 200, description = "The notice", body = ManagerMessage),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::NotFound,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn message(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let seen = wait(&state, messages::NAME, wanted).await;
    let client = state.pool.get().await.map_err(db_error)?;
    let Some(row) = messages::by_target(&client, &id).await.map_err(db_error)? else {
        let missing = ApiError::not_found(
            "manager_message.not_found",
            format!("no notice for dormant target {id:?} (yet)"),
        );
        return Ok(fresh_error(missing, seen));
    };
    let people = crate::people::people(&state, [row.phone_sealed.as_deref()]).await?;
    let phone = crate::people::open(&people, row.phone_sealed.as_deref());
    let body = ManagerMessage {
        id: row.target_id,
        member_id: row.member_id,
        phone_no: phone.as_deref().map(mileage_read_model::people::mask_phone),
        message_contents: row.content,
        message_status: row.status,
        attempts: row.attempts,
        last_error: row.last_error,
        updated_at: row.updated_at,
    };
    Ok(fresh(body, seen))
}
