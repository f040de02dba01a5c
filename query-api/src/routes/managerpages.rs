//! `/managerpages`: the operators' list of dormant targets, its counts per
//! status, one target; and `/dormantMembers/{id}` for the member concerned.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use mileage_domain::ids::MemberId;
use mileage_service::ApiError;
use mileage_service::auth::Caller;
use mileage_service::extract::AppQuery;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};

use super::{db_error, etag, fresh, fresh_error, not_modified, tagged, wait};
use crate::freshness::Wanted;
use crate::state::QueryState;

/// The projection these routes read.
const PROJECTION: &str = "managerpage";
/// Statuses a target can have, in lifecycle order.
pub const STATUSES: [&str; 4] = ["PRE_DORMANT", "DORMANT", "DESTRUCTION", "CLEARED"];
/// Largest page.
const MAX_LIMIT: i64 = 200;

const COLUMNS: &str = "id, member_id, phone_masked, nickname, erased, status, message_status, \
                       registered_at, updated_at, registered_commit, registered_prepare, last_position";

/// The list's four statements: (descending, ascending) x (all, one status).
static LIST_SQL: LazyLock<[String; 4]> = LazyLock::new(|| {
    let list = |ascending: bool, filtered: bool| {
        let (op, direction) = if ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        let filter = if filtered { "status = $4 AND" } else { "" };
        format!(
            "SELECT {COLUMNS} FROM managerpage.targets
              WHERE {filter} (registered_commit, registered_prepare) {op} ($1, $2)
              ORDER BY registered_commit {direction}, registered_prepare {direction}
              LIMIT $3"
        )
    };
    [
        list(false, false),
        list(false, true),
        list(true, false),
        list(true, true),
    ]
});

/// One target by id.
static BY_ID_SQL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM managerpage.targets WHERE id = $1"));

/// The routes.
pub fn router() -> Router<QueryState> {
    Router::new()
        .route("/managerpages", get(list))
        .route("/managerpages/counts", get(counts))
        .route("/managerpages/{id}", get(by_id))
        .route("/dormantMembers/{id}", get(dormant_member))
}

/// A dormant target as operators see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Managerpage<'a> {
    /// The target.
    #[schema(example = "1")]
    id: &'a str,
    /// The member it was registered for.
    #[schema(example = "2")]
    member_id: &'a str,
    /// Masked; `null` once erased.
    #[schema(example = "010****5678")]
    phone_no: Option<&'a str>,
    /// `null` once erased.
    nickname: Option<&'a str>,
    /// The person's data was destroyed (or the member withdrew).
    erased: bool,
    /// `PRE_DORMANT`, `DORMANT`, `DESTRUCTION` or `CLEARED`.
    #[schema(example = "DORMANT")]
    member_status: &'a str,
    /// The dormant notice: `PENDING`, `SENT` or `FAILED`; `null` before.
    #[schema(example = "SENT")]
    message_status: Option<&'a str>,
    /// When it was registered.
    registered_at: DateTime<Utc>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
    /// The last event applied to it.
    #[schema(example = "1042-1042")]
    last_position: &'a str,
}

impl<'a> Managerpage<'a> {
    /// A view of `row` (read without copying its text).
    fn from_row(row: &'a Row) -> Self {
        Self {
            id: row.get(0),
            member_id: row.get(1),
            phone_no: row.get(2),
            nickname: row.get(3),
            erased: row.get(4),
            member_status: row.get(5),
            message_status: row.get(6),
            registered_at: row.get(7),
            updated_at: row.get(8),
            last_position: row.get(11),
        }
    }
}

/// One page of targets.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagerpagePage<'a> {
    /// The targets, newest registration first (or oldest, with `order=asc`).
    items: Vec<Managerpage<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// The list's query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only targets with this status (`PRE_DORMANT`, `DORMANT`,
    /// `DESTRUCTION`, `CLEARED`; `Pre-Dormant` and the like are accepted).
    status: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<i64>,
    /// From a previous page's `nextCursor`.
    cursor: Option<String>,
    /// `desc` (default: newest first) or `asc`.
    order: Option<String>,
    /// Wait (bounded) until the read model has reached this position.
    #[allow(dead_code, reason = "read by the Wanted extractor")]
    position: Option<String>,
}

/// The counts per status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Targets per status (every status listed, zero included).
    #[schema(example = json!({"PRE_DORMANT": 3, "DORMANT": 2, "DESTRUCTION": 1, "CLEARED": 0}))]
    by_status: BTreeMap<String, i64>,
    /// All targets.
    total: i64,
}

/// A dormant target as its member sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DormantMember<'a> {
    /// The target.
    id: &'a str,
    /// The member.
    member_id: &'a str,
    /// `PRE_DORMANT`, `DORMANT`, `DESTRUCTION` or `CLEARED`.
    member_status: &'a str,
    /// The dormant notice's status.
    message_status: Option<&'a str>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
}

/// `Pre-Dormant`, `pre_dormant`, `PRE DORMANT` -> `PRE_DORMANT`.
fn status_param(raw: &str) -> Result<&'static str, ApiError> {
    let squashed: String = raw
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_uppercase();
    STATUSES
        .into_iter()
        .find(|s| s.replace('_', "") == squashed)
        .ok_or_else(|| {
            ApiError::invalid(
                "status",
                "validation.status",
                format!("status must be one of {}, not {raw:?}", STATUSES.join(", ")),
            )
        })
}

fn decode_cursor(raw: &str) -> Result<(i64, i64), ApiError> {
    let bad = || {
        ApiError::invalid(
            "cursor",
            "validation.cursor",
            "cursor is not one this API gave out",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (commit, prepare) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        commit.parse().map_err(|_| bad())?,
        prepare.parse().map_err(|_| bad())?,
    ))
}

fn encode_cursor(commit: i64, prepare: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{commit}:{prepare}"))
}

/// Lists dormant targets (managers).
#[utoipa::path(
    get, path = "/managerpages", tag = "managerpages",
    params(ListQuery),
    responses(
        (status = 200, description = "A page", body = ManagerpagePage, headers(
            ("ETag" = String, description = "Weak validator; send back as If-None-Match"),
            ("X-Projection-Position" = String, description = "The read model's position"),
            ("X-Stale" = String, description = "`true` when the position asked for was not reached in time"),
        )),
        (status = 304, description = "Unchanged since the ETag sent"),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let status = query.status.as_deref().map(status_param).transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "validation.limit",
            format!("limit must be 1 to {MAX_LIMIT}, not {limit}"),
        ));
    }
    let ascending = match query.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "order",
                "validation.order",
                format!("order must be asc or desc, not {other:?}"),
            ));
        }
    };
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let seen = wait(&state, PROJECTION, wanted).await;
    let tag = etag(seen, raw_query.as_deref());
    if let Some(unchanged) = not_modified(&headers, &tag, seen) {
        return Ok(unchanged);
    }
    let start = if ascending {
        (i64::MIN, i64::MIN)
    } else {
        (i64::MAX, i64::MAX)
    };
    let sql = &LIST_SQL[usize::from(ascending) * 2 + usize::from(status.is_some())];
    let (commit, prepare) = after.unwrap_or(start);
    let client = state.pool.get().await.map_err(db_error)?;
    let statement = client.prepare_cached(sql).await.map_err(db_error)?;
    let fetch = limit + 1;
    let rows = match status {
        Some(status) => {
            client
                .query(&statement, &[&commit, &prepare, &fetch, &status])
                .await
        }
        None => client.query(&statement, &[&commit, &prepare, &fetch]).await,
    }
    .map_err(db_error)?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let page = &rows[..rows.len().min(usize::try_from(limit).unwrap_or(usize::MAX))];
    let next_cursor = more
        .then(|| page.last())
        .flatten()
        .map(|row| encode_cursor(row.get(9), row.get(10)));
    let body = ManagerpagePage {
        items: page.iter().map(Managerpage::from_row).collect(),
        next_cursor,
    };
    Ok(tagged(fresh(body, seen), &tag))
}

/// Counts targets per status (managers).
#[utoipa::path(
    get, path = "/managerpages/counts", tag = "managerpages",
    params(("position" = Option<String>, Query, description = "Wait (bounded) for this position")),
    responses(
        (status = 200, description = "Counts", body = Counts),
        (status = 304, description = "Unchanged since the ETag sent"),
        crate::docs::AuthRefusals,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub async fn counts(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let seen = wait(&state, PROJECTION, wanted).await;
    let tag = etag(
        seen,
        Some(&format!("counts?{}", raw_query.unwrap_or_default())),
    );
    if let Some(unchanged) = not_modified(&headers, &tag, seen) {
        return Ok(unchanged);
    }
    let client = state.pool.get().await.map_err(db_error)?;
    let statement = client
        .prepare_cached("SELECT status, count(*) FROM managerpage.targets GROUP BY status")
        .await
        .map_err(db_error)?;
    let rows = client.query(&statement, &[]).await.map_err(db_error)?;
    let mut by_status: BTreeMap<String, i64> =
        STATUSES.iter().map(|s| ((*s).to_owned(), 0)).collect();
    for row in &rows {
        by_status.insert(row.get(0), row.get(1));
    }
    let total = by_status.values().sum();
    Ok(tagged(fresh(Counts { by_status, total }, seen), &tag))
}

async fn find(state: &QueryState, id: &str) -> Result<Option<Row>, ApiError> {
    let client = state.pool.get().await.map_err(db_error)?;
    let statement = client.prepare_cached(&BY_ID_SQL).await.map_err(db_error)?;
    client.query_opt(&statement, &[&id]).await.map_err(db_error)
}

fn no_target(id: &str) -> ApiError {
    ApiError::not_found(
        "dormant_member.not_found",
        format!("no dormant target {id:?}"),
    )
}

/// One dormant target (managers).
#[utoipa::path(
    get, path = "/managerpages/{id}", tag = "managerpages",
    params(("id" = String, Path, description = "Dormant target id"), ("position" = Option<String>, Query, description = "Wait (bounded) for this position")),
    responses(
        (status = 200, description = "The target", body = Managerpage),
        crate::docs::AuthRefusals,
        crate::docs::NotFound,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub async fn by_id(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let seen = wait(&state, PROJECTION, wanted).await;
    Ok(match find(&state, &id).await? {
        Some(row) => fresh(Managerpage::from_row(&row), seen),
        None => fresh_error(no_target(&id), seen),
    })
}

/// A dormant target's status (managers, or the member it concerns).
#[utoipa::path(
    get, path = "/dormantMembers/{id}", tag = "managerpages",
    params(("id" = String, Path, description = "Dormant target id"), ("position" = Option<String>, Query, description = "Wait (bounded) for this position")),
    responses(
        (status = 200, description = "The target's status", body = DormantMember),
        crate::docs::AuthRefusals,
        crate::docs::NotFound,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub async fn dormant_member(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let seen = wait(&state, PROJECTION, wanted).await;
    let row = find(&state, &id).await?;
    let target = row.as_ref().map(Managerpage::from_row);
    let allowed = |member: &str| {
        MemberId::parse(member)
            .map_err(ApiError::from)
            .and_then(|m| caller.require_member_or_manager(&m))
    };
    let Some(target) = target else {
        caller.require_manager()?;
        return Ok(fresh_error(no_target(&id), seen));
    };
    allowed(target.member_id)?;
    let body = DormantMember {
        id: target.id,
        member_id: target.member_id,
        member_status: target.member_status,
        message_status: target.message_status,
        updated_at: target.updated_at,
    };
    Ok(fresh(body, seen))
}
