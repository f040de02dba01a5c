//! `/members/{id}`: a member's status and points balance.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use mileage_domain::ids::MemberId;
use mileage_read_model::members::{self, MemberRow};
use mileage_read_model::people::People;
use mileage_service::ApiError;
use mileage_service::auth::Caller;
use serde::Serialize;
use utoipa::ToSchema;

use super::{db_error, fresh, fresh_error, wait};
use crate::freshness::Wanted;
use crate::state::QueryState;

/// `GET /members/{id}`: a member's balance and status.
pub(super) fn router() -> Router<QueryState> {
    Router::new().route("/members/{id}", get(member))
}

/// A member as the read model holds it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct MemberView {
    /// The member (the resource's own id, as on every route).
    #[schema(example = "2")]
    id: String,
    /// The member, named as the other routes name a member.
    #[schema(example = "2")]
    member_id: String,
    /// `READY` (a member) or `WITHDRAWN`, as the command answers say.
    #[schema(example = "READY")]
    member_status: String,
    /// Points.
    balance: i64,
    /// Masked; `null` once erased.
    phone_no: Option<String>,
    /// `null` once erased.
    nickname: Option<String>,
    /// The member withdrew.
    erased: bool,
    /// When they joined.
    joined_at: DateTime<Utc>,
    /// When the row last changed.
    updated_at: DateTime<Utc>,
    /// Their last activity (joined, earned or used points): what the
    /// dormancy policy measures quiet from.
    last_active_at: DateTime<Utc>,
    /// Why an operator took them out of the dormancy policy; `null` while
    /// the policy applies to them.
    #[schema(example = json!(null))]
    dormancy_exclusion: Option<String>,
}

/// A member's balance and status (managers, or the member themself).
#[utoipa::path(
    get, path = "/members/{id}", tag = "members",
    params(crate::docs::WaitFor),
    responses(
        (status = 200, description = "The member", body = MemberView),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::NotFound,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn member(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = MemberId::parse(&id)?;
    caller.require_member_or_manager(&id)?;
    let seen = wait(&state, members::NAME, wanted).await;
    let client = state.pool.get().await.map_err(db_error)?;
    let Some(row) = members::by_id(&client, id.as_str())
        .await
        .map_err(db_error)?
    else {
        let missing = ApiError::not_found("member.not_found", format!("no member {id}"));
        return Ok(fresh_error(missing, seen));
    };
    let people = crate::people::people(
        &state,
        [row.phone_sealed.as_deref(), row.nickname_sealed.as_deref()],
    )
    .await?;
    Ok(fresh(MemberView::shown(row, &people), seen))
}

impl MemberView {
    /// The row as shown, its person opened with `people`.
    pub(super) fn shown(row: MemberRow, people: &People) -> Self {
        let person = crate::people::person(
            people,
            row.phone_sealed.as_deref(),
            row.nickname_sealed.as_deref(),
        );
        Self {
            id: row.id.clone(),
            member_id: row.id,
            // Rows projected before the vocabulary was one said ACTIVE.
            member_status: if row.status == "ACTIVE" {
                "READY".to_owned()
            } else {
                row.status
            },
            balance: row.balance,
            phone_no: person.phone_masked,
            nickname: person.nickname,
            erased: person.erased,
            joined_at: row.joined_at,
            updated_at: row.updated_at,
            last_active_at: row.last_active_at,
            dormancy_exclusion: row.dormancy_exclusion,
        }
    }
}
