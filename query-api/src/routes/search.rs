//! `POST /search`: an operator with a phone number, a member id or a
//! target id finds the person: the member and the dormant targets
//! registered for them. A number is looked up by its keyed index (the HMAC
//! the command API names its claim by), never stored or compared in clear;
//! once the person is erased, their number leads to no one. A POST, so the
//! number travels in the body: never in a URL, where proxies and access
//! logs keep it.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::pii::{Sealed, phone_index};
use mileage_domain::values::PhoneNumber;
use mileage_read_model::managerpage::{self, Targets};
use mileage_read_model::{members, phones};
use mileage_service::ApiError;
use mileage_service::auth::Caller;
use mileage_service::extract::AppJson;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::db_error;
use super::managerpages::Managerpage;
use super::members::MemberView;
use crate::state::QueryState;

/// Most targets listed for one member.
const MAX_TARGETS: i64 = 50;

/// `POST /search` (managers).
pub(super) fn router() -> Router<QueryState> {
    Router::new().route("/search", post(search))
}

/// What to look for: exactly one of a phone number, a member id or a
/// target id.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(super) enum SearchQuery {
    /// By phone number.
    Phone(ByPhone),
    /// By member id.
    Member(ByMember),
    /// By target id.
    Target(ByTarget),
}

/// A search by phone number.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ByPhone {
    /// The number, exactly, as the join takes it (the rule is the join's
    /// `phoneNo`; anything else answers 400 with it).
    #[schema(schema_with = mileage_service::docs::phone_schema)]
    phone_no: String,
}

/// A search by member id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ByMember {
    #[schema(schema_with = mileage_service::docs::id_schema)]
    member_id: String,
}

/// A search by target id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ByTarget {
    #[schema(schema_with = mileage_service::docs::id_schema)]
    target_id: String,
}

/// Who was found: nobody, or a member and the targets registered for them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Found<'a> {
    /// The member found (at most one).
    members: Vec<MemberView>,
    /// The dormant targets of that member, or the target asked for; newest
    /// registration first, at most 50.
    targets: Vec<Managerpage<'a>>,
}

/// Finds a person by phone number, member id or target id (managers).
#[utoipa::path(
    post, path = "/search", tag = "managerpages",
    request_body = SearchQuery,
    responses(
        (status = 200, description = "Who was found (empty lists: nobody)", body = Found),
        crate::docs::Invalid,
        mileage_service::docs::BodyRefusals,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn search(
    State(state): State<QueryState>,
    caller: Caller,
    AppJson(query): AppJson<SearchQuery>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let client = state.pool.get().await.map_err(db_error)?;
    let (member, targets) = match &query {
        SearchQuery::Phone(ByPhone { phone_no }) => {
            let member = holder(&state, &client, phone_no).await?;
            (member, None)
        }
        SearchQuery::Member(ByMember { member_id }) => (Some(MemberId::parse(member_id)?), None),
        SearchQuery::Target(ByTarget { target_id }) => {
            let target = DormantMemberId::parse(target_id)?;
            let found = managerpage::by_id(&client, target.as_str())
                .await
                .map_err(db_error)?;
            let member = found
                .views()
                .next()
                .map(|t| MemberId::parse(t.member_id))
                .transpose()?;
            (member, Some(found))
        }
    };
    let member_row = match &member {
        Some(id) => members::by_id(&client, id.as_str())
            .await
            .map_err(db_error)?,
        None => None,
    };
    let targets = match (targets, &member) {
        (Some(found), _) => found,
        (None, Some(id)) => managerpage::of_member(&client, id.as_str(), MAX_TARGETS)
            .await
            .map_err(db_error)?,
        (None, None) => Targets::default(),
    };
    drop(client);
    let sealed = targets
        .views()
        .flat_map(|t| [t.phone_sealed, t.nickname_sealed])
        .chain(
            member_row
                .iter()
                .flat_map(|m| [m.phone_sealed.as_deref(), m.nickname_sealed.as_deref()]),
        );
    let people = crate::people::people(&state, sealed).await?;
    let found = Found {
        members: member_row
            .into_iter()
            .map(|row| MemberView::shown(row, &people))
            .collect(),
        targets: targets
            .views()
            .map(|t| Managerpage::shown(t, &people))
            .collect(),
    };
    Ok(axum::Json(found).into_response())
}

/// The member holding `phone`, if anyone does and they are not erased.
async fn holder(
    state: &QueryState,
    client: &deadpool_postgres::Client,
    phone: &str,
) -> Result<Option<MemberId>, ApiError> {
    let phone = PhoneNumber::parse(phone)?;
    let Some(secret) = &state.phone_secret else {
        return Err(ApiError::Unavailable {
            detail: "the search by number needs PHONE_INDEX_SECRET (the command API's) \
                     set on the query API"
                .into(),
            retry_after: 60,
        });
    };
    let index = phone_index(secret.expose_secret().as_bytes(), &phone);
    let Some(holder) = phones::holder(client, &index).await.map_err(db_error)? else {
        return Ok(None);
    };
    // Claims from before holders were sealed name the member in clear.
    if serde_json::from_str::<Sealed>(&holder).is_err() {
        return Ok(Some(MemberId::parse(&holder)?));
    }
    let people = crate::people::people(state, [Some(holder.as_str())]).await?;
    crate::people::open(&people, Some(&holder))
        .map(|id| MemberId::parse(&id))
        .transpose()
        .map_err(Into::into)
}
