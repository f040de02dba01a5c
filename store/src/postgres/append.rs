//! Appending: one statement on the happy path; on a unique-index clash, find
//! out whether it was a retry of the same append, a reused event id, or a
//! concurrent writer.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use mileage_domain::envelope::Actor;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::sql::{self, RawJson};
use super::{pg_error, pool_error, write_error};
use crate::{
    AppendOutcome, ExpectedVersion, NewEvent, Position, RequestKey, StoreError, StreamAppend,
};

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
    let mut key = request_key(events);
    for _ in 0..ANY_RETRIES {
        match insert(&client, stream, expected, &columns, key).await {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(write_error(e)),
        }
        if key_held(&client, &mut key).await? {
            continue;
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

/// Appends `events` (an import's: each carries the time it was first
/// recorded) and gives them those times in the same transaction, so a
/// crash never leaves them stamped with the import's time. When they are
/// there already (the import run again), the plain append tells, and the
/// times are given again (idempotent).
pub(super) async fn append_keeping_times(
    pool: &Pool,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendOutcome, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(write_error)?;
    let written = match insert(&tx, stream, expected, &Columns::of(events), None).await {
        Ok(Some(outcome)) => {
            keep_times(&tx, events).await.map_err(write_error)?;
            Some(outcome)
        }
        Ok(None) => None,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => None,
        Err(e) => return Err(write_error(e)),
    };
    if let Some(outcome) = written {
        tx.commit().await.map_err(write_error)?;
        return Ok(outcome);
    }
    drop(tx);
    let outcome = append(pool, stream, expected, events).await?;
    let client = pool.get().await.map_err(pool_error)?;
    keep_times(&client, events).await.map_err(write_error)?;
    Ok(outcome)
}

/// Gives `events` that carry the time they were first recorded
/// ([`NewEvent::recorded_at`]) that time instead of the append's.
async fn keep_times(
    client: &impl deadpool_postgres::GenericClient,
    events: &[NewEvent],
) -> Result<(), tokio_postgres::Error> {
    let (ids, at): (Vec<Uuid>, Vec<chrono::DateTime<chrono::Utc>>) = events
        .iter()
        .filter_map(|e| e.recorded_at.map(|at| (e.event_id, at)))
        .unzip();
    if ids.is_empty() {
        return Ok(());
    }
    client
        .execute(
            "UPDATE events SET recorded_at = t.at
               FROM unnest($1::uuid[], $2::timestamptz[]) AS t(id, at)
              WHERE events.event_id = t.id AND events.recorded_at <> t.at",
            &[&ids, &at],
        )
        .await
        .map(drop)
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
    let known = parts.iter().all(|p| p.expected != ExpectedVersion::Any);
    let mut key = parts.first().and_then(|p| request_key(p.events));
    for _ in 0..ANY_RETRIES {
        if known {
            // The common case: every expected version known, one statement.
            match insert_many(&client, parts, key).await {
                Ok(Some(outcomes)) => return Ok(outcomes),
                Ok(None) => {}
                Err(e) if clashed(&e) => {}
                Err(e) => return Err(write_error(e)),
            }
            if key_held(&client, &mut key).await? {
                continue;
            }
            match classify(&client, parts, &columns).await? {
                Some(outcomes) => return Ok(outcomes),
                None => continue,
            }
        }
        let tx = client.transaction().await.map_err(pg_error)?;
        let mut outcomes = Vec::with_capacity(parts.len());
        for (index, (part, columns)) in parts.iter().zip(&columns).enumerate() {
            let key = key.filter(|_| index == 0);
            match insert(&tx, part.stream, part.expected, columns, key).await {
                Ok(Some(outcome)) => outcomes.push(outcome),
                Ok(None) => break,
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => break,
                Err(e) => return Err(write_error(e)),
            }
        }
        if outcomes.len() == parts.len() {
            tx.commit().await.map_err(write_error)?;
            return Ok(outcomes);
        }
        tx.rollback().await.map_err(pg_error)?;
        if key_held(&client, &mut key).await? {
            continue;
        }
        if let Some(outcomes) = classify(&client, parts, &columns).await? {
            return Ok(outcomes);
        }
    }
    Err(StoreError::Unavailable(format!(
        "{} streams are too contended: {ANY_RETRIES} appends in a row lost the race",
        parts.len()
    )))
}

/// After a multi-stream append inserted nothing: the first outcomes when
/// every part is already stored (a retry), the refusal of a part that is
/// refused, or `None` to try again (a race lost to an `Any` writer or to a
/// competitor that rolled back).
async fn classify(
    client: &tokio_postgres::Client,
    parts: &[StreamAppend<'_>],
    columns: &[Columns<'_>],
) -> Result<Option<Vec<AppendOutcome>>, StoreError> {
    let mut retried = Vec::with_capacity(parts.len());
    let mut race_lost = false;
    for (part, columns) in parts.iter().zip(columns) {
        match resolve_clash(client, part.stream, part.expected, columns.ids()).await? {
            Clash::Retried(outcome) => retried.push((part, outcome)),
            Clash::Error(e) => return Err(e),
            Clash::RaceLost => race_lost = true,
        }
    }
    match (race_lost, retried.first()) {
        (false, _) => Ok(Some(retried.into_iter().map(|(_, o)| o).collect())),
        // Some parts are stored and others are not: not a retry of this
        // append, whose parts are only ever stored together.
        (true, Some((part, outcome))) => Err(StoreError::DuplicateEventId {
            event_id: part.events[0].event_id,
            stored_in: part.stream.to_owned(),
            stored_version: outcome.last_version + 1 - part.events.len() as u64,
        }),
        (true, None) => Ok(None),
    }
}

/// A unique clash or a deadlock with a concurrent writer: classify, retry.
fn clashed(error: &tokio_postgres::Error) -> bool {
    [SqlState::UNIQUE_VIOLATION, SqlState::T_R_DEADLOCK_DETECTED]
        .iter()
        .any(|code| error.code() == Some(code))
}

/// Every part in one statement ([`sql::APPEND_GROUP`], as one append),
/// each under a known expected version: the outcomes, or `None` when an
/// expected version is missing (nothing inserted).
async fn insert_many(
    client: &deadpool_postgres::Client,
    parts: &[StreamAppend<'_>],
    key: Option<RequestKey>,
) -> Result<Option<Vec<AppendOutcome>>, tokio_postgres::Error> {
    let mut columns = StreamColumns::default();
    for (index, part) in parts.iter().enumerate() {
        let key = key.filter(|_| index == 0);
        columns.push(0, part.stream, part.expected, part.events, key);
    }
    let rows = columns.insert(client).await?;
    let mut written = outcomes_by_id(&rows);
    Ok(parts
        .iter()
        .map(|part| part.events.last().and_then(|e| written.remove(&e.event_id)))
        .collect())
}

/// Each written event's outcome, by event id, from the rows
/// [`sql::APPEND_GROUP`] returns. An append's rows are all written or none,
/// so the row of a part's last event is that part's outcome.
pub(super) fn outcomes_by_id(rows: &[tokio_postgres::Row]) -> HashMap<Uuid, AppendOutcome> {
    rows.iter()
        .map(|row| {
            (
                row.get(3),
                AppendOutcome {
                    last_version: to_u64(row.get(2)),
                    position: Position {
                        commit: to_u64(row.get(0)),
                        prepare: to_u64(row.get(1)),
                    },
                    already_appended: false,
                },
            )
        })
        .collect()
}

/// Appends to several streams as the column arrays of one statement
/// ([`sql::APPEND_GROUP`]): per event the append it belongs to, its stream,
/// its version and the version that must exist before it (`-1`: none).
#[derive(Default)]
pub(super) struct StreamColumns<'a> {
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    expected: Vec<i64>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    data: Vec<RawJson>,
    correlations: Vec<Uuid>,
    causations: Vec<Uuid>,
    appends: Vec<i32>,
    traces: Vec<Option<String>>,
    actors: Vec<Option<&'a str>>,
    /// Each keyed append's key, request and first event id.
    keys: Vec<Uuid>,
    requests: Vec<Uuid>,
    firsts: Vec<Uuid>,
}

impl<'a> StreamColumns<'a> {
    /// Adds `events` for `stream` under `expected` (`Any` counts as none),
    /// as part of the statement's append number `append`: that append's
    /// parts are inserted together or not at all.
    pub(super) fn push(
        &mut self,
        append: i32,
        stream: &'a str,
        expected: ExpectedVersion,
        events: &'a [NewEvent],
        key: Option<RequestKey>,
    ) {
        if let (Some(key), Some(first)) = (key, events.first()) {
            self.keys.push(key.key);
            self.requests.push(key.request);
            self.firsts.push(first.event_id);
        }
        let must_exist = match expected {
            ExpectedVersion::Exact(v) => i64::try_from(v).unwrap_or(i64::MAX - 1),
            ExpectedVersion::NoStream | ExpectedVersion::Any => -1,
        };
        for (offset, event) in (1..).zip(events) {
            self.streams.push(stream);
            self.versions.push(must_exist.saturating_add(offset));
            self.expected.push(must_exist);
            self.ids.push(event.event_id);
            self.types.push(event.event_type.as_str());
            self.schema_versions.push(i32::from(event.schema_version));
            self.data.push(RawJson(event.data.clone()));
            self.correlations.push(event.causation.correlation_id);
            self.causations.push(event.causation.causation_id);
            self.appends.push(append);
            self.traces
                .push(event.causation.trace.map(|t| t.to_string()));
            self.actors.push(actor(event));
        }
    }

    /// Runs the statement ([`sql::APPEND_GROUP`], or
    /// [`sql::KEYED_APPEND_GROUP`] when an append carries a request key):
    /// the rows of the events it wrote.
    pub(super) async fn insert(
        &self,
        client: &impl deadpool_postgres::GenericClient,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let columns = self.params();
        if self.keys.is_empty() {
            let statement = client.prepare_cached(sql::APPEND_GROUP).await?;
            return client.query(&statement, &columns).await;
        }
        let statement = client.prepare_cached(sql::KEYED_APPEND_GROUP).await?;
        let mut params: Vec<&(dyn ToSql + Sync)> = columns.to_vec();
        params.extend([
            &self.keys as &(dyn ToSql + Sync),
            &self.requests,
            &self.firsts,
        ]);
        client.query(&statement, &params).await
    }

    /// The plain statement's twelve parameters, in order.
    fn params(&self) -> [&(dyn ToSql + Sync); 12] {
        [
            &self.streams,
            &self.versions,
            &self.expected,
            &self.ids,
            &self.types,
            &self.schema_versions,
            &self.data,
            &self.correlations,
            &self.causations,
            &self.appends,
            &self.traces,
            &self.actors,
        ]
    }
}

/// The events as the parameters of the insert: scalars for one event, the
/// column arrays the statement unnests for several.
enum Columns<'a> {
    One(
        &'a NewEvent,
        [Uuid; 1],
        RawJson,
        Option<String>,
        Option<&'a str>,
    ),
    Many {
        ids: Vec<Uuid>,
        types: Vec<&'a str>,
        versions: Vec<i32>,
        data: Vec<RawJson>,
        correlations: Vec<Uuid>,
        causations: Vec<Uuid>,
        traces: Vec<Option<String>>,
        actors: Vec<Option<&'a str>>,
    },
}

/// The actor column of `event`.
fn actor(event: &NewEvent) -> Option<&str> {
    event.causation.actor.as_ref().map(Actor::as_str)
}

impl<'a> Columns<'a> {
    fn of(events: &'a [NewEvent]) -> Self {
        if let [one] = events {
            return Self::One(
                one,
                [one.event_id],
                RawJson(one.data.clone()),
                one.causation.trace.map(|t| t.to_string()),
                actor(one),
            );
        }
        Self::Many {
            ids: events.iter().map(|e| e.event_id).collect(),
            types: events.iter().map(|e| e.event_type.as_str()).collect(),
            versions: events.iter().map(|e| i32::from(e.schema_version)).collect(),
            data: events.iter().map(|e| RawJson(e.data.clone())).collect(),
            correlations: events.iter().map(|e| e.causation.correlation_id).collect(),
            causations: events.iter().map(|e| e.causation.causation_id).collect(),
            traces: events
                .iter()
                .map(|e| e.causation.trace.map(|t| t.to_string()))
                .collect(),
            actors: events.iter().map(actor).collect(),
        }
    }

    fn ids(&self) -> &[Uuid] {
        match self {
            Self::One(_, id, _, _, _) => id,
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
    key: Option<RequestKey>,
) -> Result<Option<AppendOutcome>, tokio_postgres::Error> {
    // Beyond i64 no stream can be: the exists check then finds nothing.
    let exact = match expected {
        ExpectedVersion::Exact(version) => i64::try_from(version).unwrap_or(i64::MAX),
        ExpectedVersion::Any | ExpectedVersion::NoStream => -1,
    };
    let schema_version;
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(10);
    params.push(&stream);
    let sql = match columns {
        Columns::One(event, id, data, trace, actor) => {
            schema_version = i32::from(event.schema_version);
            params.extend([
                &id[0] as &(dyn ToSql + Sync),
                &event.event_type,
                &schema_version,
                data,
                &event.causation.correlation_id,
                &event.causation.causation_id,
                trace,
                actor,
            ]);
            match (expected, key.is_some()) {
                (ExpectedVersion::NoStream, false) => sql::APPEND_ONE_NO_STREAM,
                (ExpectedVersion::Exact(_), false) => sql::APPEND_ONE_EXACT,
                (ExpectedVersion::Any, false) => sql::APPEND_ONE_ANY,
                (ExpectedVersion::NoStream, true) => sql::KEYED_APPEND_ONE_NO_STREAM,
                (ExpectedVersion::Exact(_), true) => sql::KEYED_APPEND_ONE_EXACT,
                (ExpectedVersion::Any, true) => sql::KEYED_APPEND_ONE_ANY,
            }
        }
        Columns::Many {
            ids,
            types,
            versions,
            data,
            correlations,
            causations,
            traces,
            actors,
        } => {
            params.extend([
                ids as &(dyn ToSql + Sync),
                types,
                versions,
                data,
                correlations,
                causations,
                traces,
                actors,
            ]);
            match (expected, key.is_some()) {
                (ExpectedVersion::NoStream, false) => sql::APPEND_NO_STREAM,
                (ExpectedVersion::Exact(_), false) => sql::APPEND_EXACT,
                (ExpectedVersion::Any, false) => sql::APPEND_ANY,
                (ExpectedVersion::NoStream, true) => sql::KEYED_APPEND_NO_STREAM,
                (ExpectedVersion::Exact(_), true) => sql::KEYED_APPEND_EXACT,
                (ExpectedVersion::Any, true) => sql::KEYED_APPEND_ANY,
            }
        }
    };
    if let ExpectedVersion::Exact(_) = expected {
        params.push(&exact);
    }
    if let Some(key) = &key {
        params.push(&key.key);
        params.push(&key.request);
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

/// The request key the append carries: its first event's.
fn request_key(events: &[NewEvent]) -> Option<RequestKey> {
    events.first().and_then(|e| e.request)
}

/// Who holds a request key an append failed to write.
enum Holder {
    /// Nobody: the append clashed on something else.
    Nobody,
    /// The same request, applied: an earlier append of this command (a
    /// command that appends more than once), or an earlier attempt of it,
    /// which its event ids then find. The append goes on without the key.
    Same,
    /// Another request, or a refusal: nothing of this command is applied.
    Other,
}

/// After an append carrying `key` inserted nothing: `true` when the key
/// is this request's own, applied (the append goes again without it, and
/// its event ids tell the rest); the refusal when another request or a
/// refusal holds it; `false` when nobody does (the clash was another one).
async fn key_held(
    client: &tokio_postgres::Client,
    key: &mut Option<RequestKey>,
) -> Result<bool, StoreError> {
    let Some(held) = *key else {
        return Ok(false);
    };
    match holder(client, held).await? {
        Holder::Nobody => Ok(false),
        Holder::Same => {
            *key = None;
            Ok(true)
        }
        Holder::Other => Err(StoreError::RequestKeyUsed { key: held.key }),
    }
}

/// Who holds `key` now.
async fn holder(client: &tokio_postgres::Client, key: RequestKey) -> Result<Holder, StoreError> {
    let row = client
        .query_opt(sql::REQUEST_KEY_HOLDER, &[&key.key])
        .await
        .map_err(pg_error)?;
    Ok(match row {
        None => Holder::Nobody,
        Some(row) if row.get::<_, Uuid>(0) == key.request && !row.get::<_, bool>(1) => Holder::Same,
        Some(_) => Holder::Other,
    })
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
