//! `/managerpages`: the operators' list of dormant targets, its counts per
//! status, one target; and `/dormantMembers/{id}` for the member concerned.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use mileage_domain::ids::MemberId;
use mileage_read_model::Bucket;
use mileage_read_model::managerpage::{self, Order, STATUSES, TargetView, Targets};
use mileage_read_model::messages;
use mileage_read_model::people::People;
use mileage_service::ApiError;
use mileage_service::auth::Caller;
use mileage_service::extract::AppQuery;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{db_error, etag, fresh, fresh_error, not_modified, tagged, wait};
use crate::freshness::Wanted;
use crate::state::QueryState;

/// The projection these routes read.
const PROJECTION: &str = managerpage::NAME;

/// The operators' reads of dormant targets: the list, its counts, one
/// target, and `GET /dormantMembers/{id}` (which the member concerned may
/// read too).
pub(super) fn router() -> Router<QueryState> {
    Router::new()
        .route("/managerpages", get(list))
        .route("/managerpages/counts", get(counts))
        .route("/managerpages/counts/history", get(counts_over_time))
        .route("/managerpages/{id}", get(by_id))
        .route("/dormantMembers/{id}", get(dormant_member))
}

/// A dormant target as operators see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Managerpage<'a> {
    #[schema(example = "1")]
    id: &'a str,
    /// The member it was registered for.
    #[schema(example = "2")]
    member_id: &'a str,
    /// Masked; `null` once erased.
    #[schema(example = "010****5678")]
    phone_no: Option<String>,
    /// `null` once erased.
    nickname: Option<String>,
    /// The person's data was destroyed (or the member withdrew).
    erased: bool,
    /// `PRE_DORMANT`, `DORMANT`, `DESTRUCTION` or `CLEARED`.
    #[schema(example = "DORMANT")]
    member_status: &'a str,
    /// The dormant notice: `PENDING`, `SENT` or `FAILED`; `null` before.
    #[schema(example = "SENT")]
    message_status: Option<&'a str>,
    /// The member the person re-joined as (released), once `CLEARED`;
    /// `null` before.
    #[schema(example = "7")]
    rejoined_member_id: Option<&'a str>,
    /// When it was registered.
    registered_at: DateTime<Utc>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
    /// The last event applied to it.
    #[schema(example = "1042-1042")]
    last_position: &'a str,
}

impl<'a> Managerpage<'a> {
    /// The row as shown, its person opened with `people`.
    pub(super) fn shown(target: TargetView<'a>, people: &People) -> Self {
        let person = crate::people::person(people, target.phone_sealed, target.nickname_sealed);
        Self {
            id: target.id,
            member_id: target.member_id,
            phone_no: person.phone_masked,
            nickname: person.nickname,
            erased: person.erased,
            member_status: target.status,
            message_status: target.message_status,
            rejoined_member_id: target.rejoined_member_id,
            registered_at: target.registered_at,
            updated_at: target.updated_at,
            last_position: target.last_position,
        }
    }
}

/// One page of targets.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TargetPage<'a> {
    /// The targets, newest registration first (or oldest, with `order=asc`).
    items: Vec<Managerpage<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// The list's query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only targets with this status (`PRE_DORMANT`, `DORMANT`,
    /// `DESTRUCTION`, `CLEARED`; or the source document's `Pre-Dormant`).
    #[param(
        nullable = false,
        pattern = "^(PRE_DORMANT|Pre-Dormant|DORMANT|DESTRUCTION|CLEARED)$"
    )]
    status: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(nullable = false, minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// From a previous page's `nextCursor`.
    #[param(inline, nullable = false)]
    cursor: Option<crate::docs::PositionText>,
    /// `desc` (default: newest first) or `asc`.
    #[param(nullable = false, pattern = "^(asc|desc)$")]
    order: Option<String>,
    /// Accepted here, read by the `Wanted` extractor, documented by
    /// [`crate::docs::WaitFor`].
    #[allow(dead_code, reason = "read by the Wanted extractor")]
    #[param(ignore)]
    position: Option<String>,
}

/// The counts per status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Counts {
    /// Targets per status (every status listed, zero included).
    #[schema(example = json!({"PRE_DORMANT": 3, "DORMANT": 2, "DESTRUCTION": 1, "CLEARED": 0}))]
    by_status: BTreeMap<String, i64>,
    /// All targets.
    total: i64,
}

/// A dormant target as its member sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DormantMember<'a> {
    id: &'a str,
    member_id: &'a str,
    /// `PRE_DORMANT`, `DORMANT`, `DESTRUCTION` or `CLEARED`.
    member_status: &'a str,
    /// The dormant notice's status.
    message_status: Option<&'a str>,
    /// The member the person re-joined as, once `CLEARED`; `null` before.
    rejoined_member_id: Option<&'a str>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
}

/// A status as listed, or the source document's `Pre-Dormant`.
fn status_param(raw: &str) -> Result<&'static str, ApiError> {
    let raw_or_canonical = if raw == "Pre-Dormant" {
        "PRE_DORMANT"
    } else {
        raw
    };
    STATUSES
        .into_iter()
        .find(|s| *s == raw_or_canonical)
        .ok_or_else(|| {
            ApiError::invalid(
                "status",
                "validation.status",
                format!("status must be one of {}, not {raw:?}", STATUSES.join(", ")),
            )
        })
}

/// A page's `cursor`: a position, as two numbers.
pub(super) fn decode_cursor(raw: &str) -> Result<(i64, i64), ApiError> {
    let bad = || {
        ApiError::invalid(
            "cursor",
            "validation.cursor",
            "cursor is not one this API gave out",
        )
    };
    // The registration position of the last target of the page, written
    // as positions are (and as plain to check).
    let position: mileage_store::Position = raw.parse().map_err(|_| bad())?;
    Ok((
        i64::try_from(position.commit).map_err(|_| bad())?,
        i64::try_from(position.prepare).map_err(|_| bad())?,
    ))
}

fn encode_cursor((commit, prepare): (i64, i64)) -> String {
    format!("{commit}-{prepare}")
}

/// Lists dormant targets (managers).
#[utoipa::path(
    get, path = "/managerpages", tag = "managerpages",
    params(ListQuery, crate::docs::WaitFor),
    responses(
        (status = 200, description = "A page", body = TargetPage, headers(
            ("ETag" = String, description = "Weak validator; send back as If-None-Match"),
            ("X-Projection-Position" = String, description = "The read model's position"),
            ("X-Stale" = String, description = "`true` when the position asked for was not reached in time"),
        )),
        (status = 304, description = "Unchanged since the ETag sent"),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn list(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let status = query.status.as_deref().map(status_param).transpose()?;
    let limit = super::page_limit(query.limit)?;
    let order = match query.order.as_deref() {
        None | Some("desc") => Order::NewestFirst,
        Some("asc") => Order::OldestFirst,
        Some(other) => {
            return Err(ApiError::invalid(
                "order",
                "validation.order",
                format!("order must be asc or desc, not {other:?}"),
            ));
        }
    };
    let after = query
        .cursor
        .as_ref()
        .map(|cursor| decode_cursor(&cursor.0))
        .transpose()?;
    let seen = wait(&state, PROJECTION, wanted).await;
    let tag = etag(&state, seen, raw_query.as_deref());
    if let Some(unchanged) = not_modified(&headers, &tag, seen) {
        return Ok(unchanged);
    }
    let client = state.pool.get().await.map_err(db_error)?;
    let rows = managerpage::page(&client, status, order, after, limit + 1)
        .await
        .map_err(db_error)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let people = crate::people::people(
        &state,
        rows.views()
            .flat_map(|t| [t.phone_sealed, t.nickname_sealed]),
    )
    .await?;
    let mut items: Vec<_> = rows
        .views()
        .map(|t| Managerpage::shown(t, &people))
        .collect();
    let next_cursor = (items.len() > limit)
        .then(|| {
            items.truncate(limit);
            rows.views().nth(limit - 1)
        })
        .flatten()
        .map(|last| encode_cursor(last.registered_position));
    let body = TargetPage { items, next_cursor };
    Ok(tagged(fresh(body, seen), &tag))
}

/// Counts targets per status (managers).
#[utoipa::path(
    get, path = "/managerpages/counts", tag = "managerpages",
    params(crate::docs::WaitFor),
    responses(
        (status = 200, description = "Counts", body = Counts),
        (status = 304, description = "Unchanged since the ETag sent"),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn counts(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let seen = wait(&state, PROJECTION, wanted).await;
    let tag = etag(
        &state,
        seen,
        Some(&format!("counts?{}", raw_query.unwrap_or_default())),
    );
    if let Some(unchanged) = not_modified(&headers, &tag, seen) {
        return Ok(unchanged);
    }
    let client = state.pool.get().await.map_err(db_error)?;
    let mut by_status: BTreeMap<String, i64> =
        STATUSES.iter().map(|s| ((*s).to_owned(), 0)).collect();
    by_status.extend(managerpage::counts(&client).await.map_err(db_error)?);
    let total = by_status.values().sum();
    Ok(tagged(fresh(Counts { by_status, total }, seen), &tag))
}

async fn find(state: &QueryState, id: &str) -> Result<Targets, ApiError> {
    let client = state.pool.get().await.map_err(db_error)?;
    managerpage::by_id(&client, id).await.map_err(db_error)
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
    params(crate::docs::WaitFor),
    responses(
        (status = 200, description = "The target", body = Managerpage),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::NotFound,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn by_id(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let seen = wait(&state, PROJECTION, wanted).await;
    let found = find(&state, &id).await?;
    Ok(match found.first() {
        Some(target) => {
            let people =
                crate::people::people(&state, [target.phone_sealed, target.nickname_sealed])
                    .await?;
            fresh(Managerpage::shown(target, &people), seen)
        }
        None => fresh_error(no_target(&id), seen),
    })
}

/// A dormant target's status (managers, or the member it concerns).
#[utoipa::path(
    get, path = "/dormantMembers/{id}", tag = "managerpages",
    params(crate::docs::WaitFor),
    responses(
        (status = 200, description = "The target's status", body = DormantMember),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::NotFound,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn dormant_member(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let seen = wait(&state, PROJECTION, wanted).await;
    let found = find(&state, &id).await?;
    let target = found.first();
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
        member_status: target.status,
        message_status: target.message_status,
        rejoined_member_id: target.rejoined_member_id,
        updated_at: target.updated_at,
    };
    Ok(fresh(body, seen))
}

/// How long the buckets of the counts over time are, at most how many.
const MAX_BUCKETS: i64 = 1000;

/// The counts over time's query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// `day` (default) or `hour`, in UTC.
    #[param(nullable = false, pattern = "^(day|hour)$")]
    bucket: Option<String>,
    /// The first bucket's start (RFC 3339; default: 30 days or 48 hours
    /// before `to`).
    #[param(nullable = false)]
    from: Option<DateTime<Utc>>,
    /// The end, exclusive (RFC 3339; default: the end of the current
    /// bucket). At most the 1000 buckets before it are answered: a longer
    /// range is cut to its end (the answer's `from` says where it starts).
    #[param(nullable = false)]
    to: Option<DateTime<Utc>>,
    /// Accepted here, read by the `Wanted` extractor, documented by
    /// [`crate::docs::WaitFor`].
    #[allow(dead_code, reason = "read by the Wanted extractor")]
    #[param(ignore)]
    position: Option<String>,
}

/// One bucket of the counts over time.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CountsAt {
    /// The bucket's start.
    at: DateTime<Utc>,
    /// Targets per status at the bucket's end.
    #[schema(example = json!({"PRE_DORMANT": 3, "DORMANT": 2, "DESTRUCTION": 1, "CLEARED": 0}))]
    targets: BTreeMap<String, i64>,
    /// Targets that entered each status during the bucket.
    entered: BTreeMap<String, i64>,
    /// Dormant notices sent and failed during the bucket.
    #[schema(example = json!({"SENT": 2, "FAILED": 1}))]
    notices: BTreeMap<String, i64>,
}

/// The counts over time.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CountsOverTime {
    /// `day` or `hour`.
    bucket: &'static str,
    /// The first bucket's start.
    from: DateTime<Utc>,
    /// The end, exclusive.
    to: DateTime<Utc>,
    /// Every bucket from `from` to `to`, oldest first, empty ones included.
    items: Vec<CountsAt>,
}

/// Targets per status and notice outcomes over time, per day or hour
/// (managers). Read from counters the projector keeps per hour in the same
/// transaction as the rows: no read scans the targets or the log.
#[utoipa::path(
    get, path = "/managerpages/counts/history", tag = "managerpages",
    params(HistoryQuery, crate::docs::WaitFor),
    responses(
        (status = 200, description = "The buckets", body = CountsOverTime),
        crate::docs::Invalid,
        crate::docs::AuthRefusals,
        crate::docs::RateLimited,
        crate::docs::Unavailable,
    ),
    security(("bearer" = []))
)]
pub(super) async fn counts_over_time(
    State(state): State<QueryState>,
    caller: Caller,
    wanted: Wanted,
    AppQuery(query): AppQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    caller.require_manager()?;
    let (bucket, name, step, default_span) = match query.bucket.as_deref() {
        None | Some("day") => (Bucket::Day, "day", TimeDelta::days(1), 30),
        Some("hour") => (Bucket::Hour, "hour", TimeDelta::hours(1), 48),
        Some(other) => {
            return Err(ApiError::invalid(
                "bucket",
                "validation.bucket",
                format!("bucket must be day or hour, not {other:?}"),
            ));
        }
    };
    let start_of = |at: DateTime<Utc>| at.duration_trunc(step).unwrap_or(at);
    let to = query.to.unwrap_or_else(|| start_of(Utc::now()) + step);
    let asked = start_of(query.from.unwrap_or(to - step * default_span));
    let span = (to - asked).num_seconds().max(0);
    let buckets = ((span + step.num_seconds() - 1) / step.num_seconds()).min(MAX_BUCKETS);
    let from = if buckets == MAX_BUCKETS {
        start_of(to - step * i32::try_from(MAX_BUCKETS).unwrap_or(i32::MAX)).max(asked)
    } else {
        asked
    };
    let seen = wait(&state, PROJECTION, wanted).await;
    let mut client = state.pool.get().await.map_err(db_error)?;
    let (targets, notices) = managerpage::over_time(&mut client, bucket, (from, to))
        .await
        .map_err(db_error)?;
    drop(client);
    let mut items: Vec<CountsAt> = (0..buckets)
        .map(|i| CountsAt {
            at: from + step * i32::try_from(i).unwrap_or(i32::MAX),
            targets: STATUSES.iter().map(|s| ((*s).to_owned(), 0)).collect(),
            entered: STATUSES.iter().map(|s| ((*s).to_owned(), 0)).collect(),
            notices: messages::OUTCOMES
                .iter()
                .map(|s| ((*s).to_owned(), 0))
                .collect(),
        })
        .collect();
    let index = |at: DateTime<Utc>| usize::try_from((at - from).num_seconds() / step.num_seconds());
    // A status's total holds until it next moves: the buckets in order,
    // each starting from the one before (the rows come in time order).
    let mut moved = targets.buckets.iter().peekable();
    let mut totals: BTreeMap<String, i64> = STATUSES.iter().map(|s| ((*s).to_owned(), 0)).collect();
    totals.extend(targets.before);
    for (i, item) in items.iter_mut().enumerate() {
        while let Some(counted) = moved.next_if(|c| index(c.at).is_ok_and(|at| at <= i)) {
            item.entered.insert(counted.status.clone(), counted.entered);
            totals.insert(counted.status.clone(), counted.total);
        }
        item.targets.clone_from(&totals);
    }
    for counted in &notices.buckets {
        if let Some(item) = index(counted.at).ok().and_then(|i| items.get_mut(i)) {
            item.notices.insert(counted.status.clone(), counted.entered);
        }
    }
    Ok(fresh(
        CountsOverTime {
            bucket: name,
            from,
            to,
            items,
        },
        seen,
    ))
}
