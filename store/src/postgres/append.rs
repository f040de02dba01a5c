//! Appending: one statement on the happy path; on a unique-index clash, find
//! out whether it was a retry of the same append, a reused event id, or a
//! concurrent writer.

use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::sql::{self, RawJson};
use super::{pg_error, pool_error};
use crate::{AppendOutcome, ExpectedVersion, NewEvent, Position, StoreError, StreamAppend};

/// `Any` appends race each other on the next version; retry them this often.
const ANY_RETRIES: usize = 8;

/// Appends `events` to `stream` under `expected`, alone. The caller has
/// checked the request with [`crate::types::validate_append`].
#[tracing::instrument(skip_all, fields(stream, expected = %expected, count = events.len()))]
pub(super) async fn append(
    pool: &Pool,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendOutcome, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let columns = Columns::of(events);
    for _ in 0..ANY_RETRIES {
        match insert(&client, stream, expected, &columns).await {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(pg_error(e)),
        }
        match resolve_clash(&client, stream, expected, columns.ids()).await? {
            Clash::Retried(outcome) => return Ok(outcome),
            Clash::Error(e) => return Err(e),
            Clash::RaceLost => {}
        }
    }
    Err(StoreError::Unavailable(format!(
        "stream {stream} is too contended: {ANY_RETRIES} appends in a row lost the race"
    )))
}

/// Appends every part in one transaction, or none. On a clash, each part
/// is looked at alone: all of them already stored is a retry (the first
/// outcomes again); a real refusal of any part is that refusal; otherwise
/// (a concurrent `Any` writer, a rolled-back competitor) it tries again.
#[tracing::instrument(skip_all, fields(streams = parts.len()))]
pub(super) async fn append_many(
    pool: &Pool,
    parts: &[StreamAppend<'_>],
) -> Result<Vec<AppendOutcome>, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let columns: Vec<Columns<'_>> = parts.iter().map(|p| Columns::of(p.events)).collect();
    for _ in 0..ANY_RETRIES {
        let tx = client.transaction().await.map_err(pg_error)?;
        let mut outcomes = Vec::with_capacity(parts.len());
        for (part, columns) in parts.iter().zip(&columns) {
            match insert(&tx, part.stream, part.expected, columns).await {
                Ok(Some(outcome)) => outcomes.push(outcome),
                Ok(None) => break,
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => break,
                Err(e) => return Err(pg_error(e)),
            }
        }
        if outcomes.len() == parts.len() {
            tx.commit().await.map_err(pg_error)?;
            return Ok(outcomes);
        }
        tx.rollback().await.map_err(pg_error)?;
        let mut retried = Vec::with_capacity(parts.len());
        let mut race_lost = false;
        for (part, columns) in parts.iter().zip(&columns) {
            match resolve_clash(&client, part.stream, part.expected, columns.ids()).await? {
                Clash::Retried(outcome) => retried.push((part, outcome)),
                Clash::Error(e) => return Err(e),
                Clash::RaceLost => race_lost = true,
            }
        }
        match (race_lost, retried.first()) {
            (false, _) => return Ok(retried.into_iter().map(|(_, o)| o).collect()),
            (true, Some((part, outcome))) => {
                // Some parts are stored and others are not: not a retry of
                // this append, whose parts are only ever stored together.
                return Err(StoreError::DuplicateEventId {
                    event_id: part.events[0].event_id,
                    stored_in: part.stream.to_owned(),
                    stored_version: outcome.last_version + 1 - part.events.len() as u64,
                });
            }
            (true, None) => {}
        }
    }
    Err(StoreError::Unavailable(format!(
        "{} streams are too contended: {ANY_RETRIES} appends in a row lost the race",
        parts.len()
    )))
}

/// The events as the parameters of the insert: scalars for one event, the
/// column arrays the statement unnests for several.
enum Columns<'a> {
    One(&'a NewEvent, [Uuid; 1], RawJson),
    Many {
        ids: Vec<Uuid>,
        types: Vec<&'a str>,
        versions: Vec<i32>,
        data: Vec<RawJson>,
        correlations: Vec<Uuid>,
        causations: Vec<Uuid>,
    },
}

impl<'a> Columns<'a> {
    fn of(events: &'a [NewEvent]) -> Self {
        if let [one] = events {
            return Self::One(one, [one.event_id], RawJson(one.data.clone()));
        }
        Self::Many {
            ids: events.iter().map(|e| e.event_id).collect(),
            types: events.iter().map(|e| e.event_type.as_str()).collect(),
            versions: events.iter().map(|e| i32::from(e.schema_version)).collect(),
            data: events.iter().map(|e| RawJson(e.data.clone())).collect(),
            correlations: events.iter().map(|e| e.causation.correlation_id).collect(),
            causations: events.iter().map(|e| e.causation.causation_id).collect(),
        }
    }

    fn ids(&self) -> &[Uuid] {
        match self {
            Self::One(_, id, _) => id,
            Self::Many { ids, .. } => ids,
        }
    }
}

/// Runs the insert for `expected`. `Ok(None)` when an exact expectation found
/// no event at that version (nothing inserted).
async fn insert(
    client: &impl deadpool_postgres::GenericClient,
    stream: &str,
    expected: ExpectedVersion,
    columns: &Columns<'_>,
) -> Result<Option<AppendOutcome>, tokio_postgres::Error> {
    // Beyond i64 no stream can be: the exists check then finds nothing.
    let exact = match expected {
        ExpectedVersion::Exact(version) => i64::try_from(version).unwrap_or(i64::MAX),
        ExpectedVersion::Any | ExpectedVersion::NoStream => -1,
    };
    let schema_version;
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(8);
    params.push(&stream);
    let sql = match columns {
        Columns::One(event, id, data) => {
            schema_version = i32::from(event.schema_version);
            params.extend([
                &id[0] as &(dyn ToSql + Sync),
                &event.event_type,
                &schema_version,
                data,
                &event.causation.correlation_id,
                &event.causation.causation_id,
            ]);
            match expected {
                ExpectedVersion::NoStream => sql::APPEND_ONE_NO_STREAM,
                ExpectedVersion::Exact(_) => sql::APPEND_ONE_EXACT,
                ExpectedVersion::Any => sql::APPEND_ONE_ANY,
            }
        }
        Columns::Many {
            ids,
            types,
            versions,
            data,
            correlations,
            causations,
        } => {
            params.extend([
                ids as &(dyn ToSql + Sync),
                types,
                versions,
                data,
                correlations,
                causations,
            ]);
            match expected {
                ExpectedVersion::NoStream => sql::APPEND_NO_STREAM,
                ExpectedVersion::Exact(_) => sql::APPEND_EXACT,
                ExpectedVersion::Any => sql::APPEND_ANY,
            }
        }
    };
    if let ExpectedVersion::Exact(_) = expected {
        params.push(&exact);
    }
    let stmt = client.prepare_cached(sql).await?;
    let rows = client.query(&stmt, &params).await?;
    Ok(rows
        .iter()
        .max_by_key(|r| r.get::<_, i64>(2))
        .map(|last| AppendOutcome {
            last_version: to_u64(last.get(2)),
            position: Position {
                commit: to_u64(last.get(0)),
                prepare: to_u64(last.get(1)),
            },
            already_appended: false,
        }))
}

enum Clash {
    /// The same events are already stored: a retried append.
    Retried(AppendOutcome),
    /// A real refusal.
    Error(StoreError),
    /// An `Any` append lost a race; try again.
    RaceLost,
}

async fn resolve_clash(
    client: &tokio_postgres::Client,
    stream: &str,
    expected: ExpectedVersion,
    ids: &[Uuid],
) -> Result<Clash, StoreError> {
    let found = client
        .query(sql::FIND_IDS, &[&ids])
        .await
        .map_err(pg_error)?;
    if !found.is_empty() {
        let mut stored: Vec<(Uuid, String, i64, i64, i64)> = found
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        stored.sort_by_key(|s| s.2);
        let same_append = stored.len() == ids.len()
            && stored.iter().all(|s| s.1 == stream)
            && stored.iter().map(|s| s.0).eq(ids.iter().copied())
            && stored.windows(2).all(|w| w[1].2 == w[0].2 + 1);
        if same_append {
            let last = stored.last().expect("found is not empty");
            return Ok(Clash::Retried(AppendOutcome {
                last_version: to_u64(last.2),
                position: Position {
                    commit: to_u64(last.3),
                    prepare: to_u64(last.4),
                },
                already_appended: true,
            }));
        }
        let first = &stored[0];
        return Ok(Clash::Error(StoreError::DuplicateEventId {
            event_id: first.0,
            stored_in: first.1.clone(),
            stored_version: to_u64(first.2),
        }));
    }
    let actual: Option<i64> = client
        .query_one(sql::LAST_VERSION, &[&stream])
        .await
        .map_err(pg_error)?
        .get(0);
    let actual = actual.map(to_u64);
    if expected == ExpectedVersion::Any {
        return Ok(Clash::RaceLost);
    }
    if ExpectedVersion::from_last(actual) == expected {
        // The competing writer's transaction rolled back after we clashed with it.
        return Ok(Clash::RaceLost);
    }
    Ok(Clash::Error(StoreError::WrongExpectedVersion {
        stream: stream.to_owned(),
        expected,
        actual,
    }))
}

/// Stored numbers are never negative (CHECK constraints and identity columns).
#[allow(clippy::cast_sign_loss)]
pub(super) fn to_u64(v: i64) -> u64 {
    debug_assert!(v >= 0);
    v as u64
}
