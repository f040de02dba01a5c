//! `/managerpages/{id}/timeline` and `/members/{id}/timeline`: what
//! happened to a dormant target (its events and its notice's) or to a
//! member (joined, points earned, used and forfeited with the balance
//! after each, withdrawn), each with its time, type, actor and correlation
//! id; personal data masked, or `erased` once its key is gone.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_read_model::people::{People, key_ids_in};
use mileage_read_model::timeline::{self, Entry};
use mileage_service::ApiError;
use mileage_service::auth::Caller;
use mileage_service::extract::AppQuery;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{db_error, fresh, fresh_error, wait};
use crate::freshness::Wanted;
use crate::state::QueryState;

/// The timelines of targets (managers) and of members (managers, or the
/// member themself).
pub(super) fn router() -> Router<QueryState> {
    Router::new()
        .route("/managerpages/{id}/timeline", get(of_target))
        .route("/members/{id}/timeline", get(of_member))
}

/// One event of a timeline.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TimelineEntry {
    /// The event's id.
    event_id: String,
    /// Its type, e.g. `DormantMemberChanged` or `PointsEarned`.
    #[serde(rename = "type")]
    #[schema(example = "DormantMemberChanged")]
    event_type: String,
    /// The stream it is on (a target's notice is on `managerMessage-{id}`).
    #[schema(example = "dormantMember-1")]
    stream: String,
    /// Its place in the log.
    #[schema(example = "1042-1042")]
    position: String,
    /// When it was recorded.
    at: DateTime<Utc>,
    /// Who caused it: `manager:{login}`, `member:{id}`, `partner:{name}`,
    /// `public` (the join) or `system:{process manager}`; `null` for events
    /// from before actors were recorded.
    #[schema(example = "manager:kim")]
    actor: Option<String>,
    /// Shared by every event of one operator action.
    correlation_id: String,
    /// The event's data; personal fields masked (`010****5678`, `K**`), or
    /// `"erased"` once the person's key is gone.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// One page of a timeline, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TimelinePage {
    items: Vec<TimelineEntry>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// A timeline's query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TimelineQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(nullable = false, minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// From a previous page's `nextCursor`.
    #[param(inline, nullable = false)]
    cursor: Option<crate::docs::PositionText>,
    /// Accepted here, read by the `Wanted` extractor, documented by
    /// [`crate::docs::WaitFor`].
    #[allow(dead_code, reason = "read by the Wanted extractor")]
    #[param(ignore)]
    position: Option<String>,
}

/// A dormant target's timeline (managers).
#[utoipa::path(
    get, path = "/managerpages/{id}/timeline", tag = "managerpages",
    params(TimelineQuery, crate::docs::WaitFor),
    responses(
        (status = 200, description = "A page of its events, oldest first", body = TimelinePage),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::NotFound,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn of_target(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<TimelineQuery>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let id = DormantMemberId::parse(&id)?;
    let missing = || {
        ApiError::not_found(
            "dormant_member.not_found",
            format!("no dormant target {id}"),
        )
    };
    page(
        &state,
        wanted,
        &format!("dormantMember-{id}"),
        &query,
        missing,
    )
    .await
}

/// A member's timeline, their points history among it (managers, or the
/// member themself).
#[utoipa::path(
    get, path = "/members/{id}/timeline", tag = "members",
    params(TimelineQuery, crate::docs::WaitFor),
    responses(
        (status = 200, description = "A page of their events, oldest first", body = TimelinePage),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::NotFound,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn of_member(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<TimelineQuery>,
) -> Result<Response, ApiError> {
    let id = MemberId::parse(&id)?;
    caller.require_member_or_manager(&id)?;
    let missing = || ApiError::not_found("member.not_found", format!("no member {id}"));
    page(&state, wanted, &format!("member-{id}"), &query, missing).await
}

/// A page of `subject`'s timeline; `missing` when a first page is empty.
async fn page(
    state: &QueryState,
    wanted: Wanted,
    subject: &str,
    query: &TimelineQuery,
    missing: impl FnOnce() -> ApiError,
) -> Result<Response, ApiError> {
    let limit = super::page_limit(query.limit)?;
    let after = query
        .cursor
        .as_ref()
        .map(|cursor| super::managerpages::decode_cursor(&cursor.0))
        .transpose()?;
    let seen = wait(state, timeline::NAME, wanted).await;
    let client = state.pool.get().await.map_err(db_error)?;
    let mut entries = timeline::of(&client, subject, after, limit + 1)
        .await
        .map_err(db_error)?;
    drop(client);
    if entries.is_empty() && after.is_none() {
        return Ok(fresh_error(missing(), seen));
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = (entries.len() > limit).then(|| {
        entries.truncate(limit);
        entries
            .last()
            .map(|last| format!("{}-{}", last.position.0, last.position.1))
    });
    let data: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null))
        .collect();
    let mut ids = Vec::new();
    for value in &data {
        key_ids_in(value, &mut ids);
    }
    let people = crate::people::keyed(state, &ids).await?;
    let items = entries
        .into_iter()
        .zip(data)
        .map(|(entry, data)| shown(entry, data, &people))
        .collect();
    Ok(fresh(
        TimelinePage {
            items,
            next_cursor: next_cursor.flatten(),
        },
        seen,
    ))
}

/// An entry as a reader sees it.
fn shown(entry: Entry, mut data: serde_json::Value, people: &People) -> TimelineEntry {
    crate::people::show_in(&mut data, people);
    TimelineEntry {
        event_id: entry.event_id,
        event_type: entry.event_type,
        stream: entry.stream,
        position: format!("{}-{}", entry.position.0, entry.position.1),
        at: entry.at,
        actor: entry.actor,
        correlation_id: entry.correlation_id.to_string(),
        data,
    }
}
