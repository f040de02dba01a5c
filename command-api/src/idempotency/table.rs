//! The key table: on EventStoreDB each keyed request's fingerprint and,
//! once it has one, its answer; on PostgreSQL the refusals kept under their
//! request keys (`request_keys`, which the event store's appends write for
//! the commands they apply). A cache in front of the log, never a gate (see
//! the module above): its writes commit without waiting for the disk, and
//! the claims and answers of concurrent requests are queued and written
//! together, one statement per kind (claims, answers, releases) for
//! everything queued, the kinds pipelined on one connection.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::http::response::Parts as AnswerParts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deadpool_postgres::Pool;
use deadpool_postgres::tokio_postgres::Row;
use mileage_service::ApiError;
use mileage_store::RequestKey;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{KEPT_HEADERS, REPLAYED, kept};

/// Most writes one batch carries.
const MAX_BATCH: usize = 256;

/// Times a claim is tried again when its key vanished between the insert
/// that found it and the read that looked at it (its attempt let it go).
const CLAIM_TRIES: usize = 3;

/// The table of keys and answers, and the queue of its writes.
#[derive(Clone)]
pub(crate) struct IdempotencyStore {
    pool: Pool,
    writes: mpsc::UnboundedSender<Write>,
    /// The event store writes each keyed command's key with its append
    /// (`request_keys`): nothing is claimed, only refusals are kept here.
    log_decides: bool,
}

/// What the key table says about a request.
pub(super) enum Claim {
    /// Ours to run: a new key, or one whose first attempt's lease passed.
    /// The token names this attempt: only it may write the answer.
    Fresh(Uuid),
    /// Same request seen: answer this.
    Replay(Response),
    /// Same key, another request.
    Mismatch,
    /// Same request still running.
    InFlight,
}

/// A claim's answer inside a batch: [`Claim`], or "the key vanished, claim
/// it again".
enum Claimed {
    Settled(Claim),
    Vanished,
}

/// A queued claim: key, fingerprint, and where its answer goes.
type QueuedClaim = (String, String, oneshot::Sender<Result<Claimed, ApiError>>);

/// A queued answer: key, claim, status, kept headers and body.
type AnswerRow = (String, Uuid, i16, serde_json::Value, Vec<u8>);

/// One queued write: a claim, and where its outcome goes; an answer or a
/// release, which nobody waits for.
enum Write {
    Claim {
        key: String,
        fingerprint: String,
        reply: oneshot::Sender<Result<Claimed, ApiError>>,
    },
    Answer {
        key: String,
        claim: Uuid,
        status: i16,
        headers: serde_json::Value,
        body: Vec<u8>,
    },
    Release {
        key: String,
        claim: Uuid,
    },
}

impl IdempotencyStore {
    /// Creates the table when missing (replicas starting together on a new
    /// database take turns) and starts the task that writes it. `pool`
    /// should commit without waiting for the disk
    /// (`PgEventStore::lazy_commit_pool`): the table is a cache. A claim
    /// in flight for longer than `lease` may be taken over by a retry.
    /// With `log_decides` (an event store that records request keys) the
    /// claims are not used: see [`IdempotencyStore::keep_refusal`].
    pub(crate) async fn new(
        pool: Pool,
        lease: Duration,
        log_decides: bool,
    ) -> Result<Self, ApiError> {
        let client = pool.get().await.map_err(internal)?;
        mileage_store::postgres::create_under_lock(
            &client,
            "mileage.command_api.migrate",
            "CREATE TABLE IF NOT EXISTS idempotency_keys (
                 key         text        PRIMARY KEY,
                 fingerprint text        NOT NULL,
                 status      smallint,
                 headers     jsonb,
                 body        bytea,
                 created_at  timestamptz NOT NULL DEFAULT now());
             -- The purge's index: a BRIN index, as rows arrive in time
             -- order (a claim adds nothing to it but a page's summary).
             DROP INDEX IF EXISTS idempotency_keys_created_at;
             CREATE INDEX IF NOT EXISTS idempotency_keys_created_brin
                 ON idempotency_keys USING brin (created_at);
             ALTER TABLE idempotency_keys
                 ADD COLUMN IF NOT EXISTS claimed_at timestamptz NOT NULL DEFAULT now();
             ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS claim uuid;
             -- Room on each page for a row's answer, written soon after
             -- its claim: the update stays on the page (no new index entry).
             ALTER TABLE idempotency_keys SET (fillfactor = 50);",
        )
        .await
        .map_err(internal)?;
        let (writes, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_forever(pool.clone(), lease, queue));
        Ok(Self {
            pool,
            writes,
            log_decides,
        })
    }

    /// Whether the event store's appends decide which attempt of a key
    /// counts (no claim beforehand).
    pub(super) fn log_decides(&self) -> bool {
        self.log_decides
    }

    /// Keeps a refusal (`answer`, `body`) as what `key` answers, unless the
    /// key is held already: by an attempt of the request that was applied
    /// meanwhile, a refusal kept first, or another request. `None` when
    /// this refusal is kept (it is the answer), else what holds the key
    /// answers ([`IdempotencyStore::held`]). Written without waiting for
    /// the disk, like every row here.
    pub(super) async fn keep_refusal(
        &self,
        key: RequestKey,
        answer: &AnswerParts,
        body: &[u8],
    ) -> Result<Option<Response>, ApiError> {
        let client = self.pool.get().await.map_err(|e| {
            log_unavailable(&e);
            table_unavailable()
        })?;
        let status = i16::try_from(answer.status.as_u16()).unwrap_or(200);
        let kept = client
            .query_opt(
                KEEP_REFUSAL,
                &[
                    &key.key,
                    &key.request,
                    &status,
                    &kept_headers(answer),
                    &body,
                ],
            )
            .await
            .map_err(|e| {
                log_unavailable(&e);
                table_unavailable()
            })?;
        match kept {
            Some(_) => Ok(None),
            None => self.held(key).await.map(Some),
        }
    }

    /// What answers a command whose key is held: the refusal kept for the
    /// request (again), 422 for another request's key, 409 "retry" while
    /// the request was applied by an attempt whose outcome this one did not
    /// find (the retry finds it in the log).
    pub(super) async fn held(&self, key: RequestKey) -> Result<Response, ApiError> {
        let client = self.pool.get().await.map_err(|e| {
            log_unavailable(&e);
            table_unavailable()
        })?;
        let row = client.query_opt(HELD, &[&key.key]).await.map_err(|e| {
            log_unavailable(&e);
            table_unavailable()
        })?;
        let Some(row) = row else {
            return Err(super::in_flight());
        };
        if row.get::<_, Uuid>(0) != key.request {
            return Err(super::key_reused());
        }
        match row.get::<_, Option<i16>>(1) {
            Some(status) => Ok(replay(status, &row.get(2), row.get(3))),
            None => Err(super::in_flight()),
        }
    }

    /// Deletes the keys older than `retention` and says how many went. A
    /// retry after that has no stored answer; the command's derived event
    /// ids still find the first run in the log, so it is not applied twice.
    pub(crate) async fn purge(&self, retention: Duration) -> Result<u64, ApiError> {
        let client = self.pool.get().await.map_err(internal)?;
        let table = if self.log_decides {
            "request_keys"
        } else {
            "idempotency_keys"
        };
        client
            .execute(
                &format!(
                    "DELETE FROM {table} WHERE created_at < now() - make_interval(secs => $1)"
                ),
                &[&retention.as_secs_f64()],
            )
            .await
            .map_err(internal)
    }

    /// Purges every `every` until the task is dropped; the first purge is at
    /// once. Every replica runs one: deleting the same old rows twice is
    /// harmless.
    pub(crate) async fn purge_forever(self, retention: Duration, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.purge(retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "expired idempotency keys deleted"),
                Err(error) => tracing::warn!(%error, "cannot delete expired idempotency keys"),
            }
        }
    }

    /// What the table says of `key` sent with `fingerprint`: ours to run
    /// (it is claimed for this attempt), answered before, another request's,
    /// or still running.
    pub(super) async fn claim(&self, key: &str, fingerprint: &str) -> Result<Claim, ApiError> {
        for _ in 0..CLAIM_TRIES {
            let (reply, claimed) = oneshot::channel();
            self.send(Write::Claim {
                key: key.to_owned(),
                fingerprint: fingerprint.to_owned(),
                reply,
            })?;
            match claimed.await.map_err(|_| writer_gone())?? {
                Claimed::Settled(claim) => return Ok(claim),
                Claimed::Vanished => {}
            }
        }
        Ok(Claim::InFlight)
    }

    /// Queues the answer of the attempt that holds `claim` to be kept, or
    /// the key to be let go when the answer is not kept; a claim taken over
    /// since (the lease passed) is the other attempt's to answer, and
    /// nothing is written. Does not wait for the write: the answer goes out
    /// at once, and a retry of the key, queued after this write, finds
    /// what it wrote (writes go out in queue order on one connection). A
    /// write that fails is logged by the writer; the log answers the retry.
    pub(super) fn record(
        &self,
        key: &str,
        claim: Uuid,
        answer: &AnswerParts,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let key = key.to_owned();
        self.send(if kept(answer) {
            Write::Answer {
                key,
                claim,
                status: i16::try_from(answer.status.as_u16()).unwrap_or(200),
                headers: kept_headers(answer),
                body: body.to_vec(),
            }
        } else {
            Write::Release { key, claim }
        })
    }

    fn send(&self, write: Write) -> Result<(), ApiError> {
        self.writes.send(write).map_err(|_| writer_gone())
    }
}

/// Writes whatever is queued, a batch at a time, until every sender is gone.
async fn write_forever(pool: Pool, lease: Duration, mut queue: mpsc::UnboundedReceiver<Write>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        write_batch(&pool, lease, batch).await;
    }
}

/// One batch: its claims, answers and releases, each kind in one
/// statement, pipelined on one connection; every write is answered.
async fn write_batch(pool: &Pool, lease: Duration, batch: Vec<Write>) {
    let mut claims = Vec::new();
    let mut answers = Vec::new();
    let mut releases = Vec::new();
    for write in batch {
        match write {
            Write::Claim {
                key,
                fingerprint,
                reply,
            } => claims.push((key, fingerprint, reply)),
            Write::Answer {
                key,
                claim,
                status,
                headers,
                body,
            } => answers.push((key, claim, status, headers, body)),
            Write::Release { key, claim } => releases.push((key, claim)),
        }
    }
    let client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            log_unavailable(&error);
            for (_, _, reply) in claims {
                let _ = reply.send(Err(table_unavailable()));
            }
            return;
        }
    };
    // In this order on the connection: an attempt's claim queued after
    // another's answer finds that answer.
    tokio::join!(
        answer_all(&client, answers),
        release_all(&client, releases),
        claim_all(&client, lease, claims),
    );
}

/// Claims every queued key in one statement, in key order (batches never
/// wait on each other's rows in opposite orders). A key queued twice (two
/// attempts at once) is inserted for the first; the second, like every key
/// already there, is answered by what the table holds.
async fn claim_all(
    client: &deadpool_postgres::Client,
    lease: Duration,
    mut claims: Vec<QueuedClaim>,
) {
    if claims.is_empty() {
        return;
    }
    claims.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tokens: Vec<Option<Uuid>> = Vec::with_capacity(claims.len());
    let (mut keys, mut prints, mut new_tokens) = (Vec::new(), Vec::new(), Vec::new());
    for (index, (key, print, _)) in claims.iter().enumerate() {
        if index > 0 && claims[index - 1].0 == *key {
            tokens.push(None);
            continue;
        }
        let token = Uuid::new_v4();
        tokens.push(Some(token));
        keys.push(key.as_str());
        prints.push(print.as_str());
        new_tokens.push(token);
    }
    let claimed = async {
        let statement = client.prepare_cached(CLAIM).await?;
        let rows = client
            .query(
                &statement,
                &[&keys, &prints, &lease.as_secs_f64(), &new_tokens],
            )
            .await?;
        let claimed: HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
        let others: Vec<&str> = claims
            .iter()
            .zip(&tokens)
            .filter(|((key, _, _), token)| token.is_none() || !claimed.contains(key))
            .map(|((key, _, _), _)| key.as_str())
            .collect();
        let stored: HashMap<String, Row> = if others.is_empty() {
            HashMap::new()
        } else {
            let statement = client.prepare_cached(STORED).await?;
            client
                .query(&statement, &[&others])
                .await?
                .into_iter()
                .map(|row| (row.get(4), row))
                .collect()
        };
        Ok::<_, deadpool_postgres::tokio_postgres::Error>((claimed, stored))
    }
    .await;
    let (claimed, stored) = match claimed {
        Ok(found) => found,
        Err(error) => {
            log_unavailable(&error);
            for (_, _, reply) in claims {
                let _ = reply.send(Err(table_unavailable()));
            }
            return;
        }
    };
    for ((key, print, reply), token) in claims.into_iter().zip(tokens) {
        let answer = match (token, stored.get(&key)) {
            (Some(token), _) if claimed.contains(&key) => Claimed::Settled(Claim::Fresh(token)),
            (_, Some(row)) => Claimed::Settled(stored_claim(row, &print)),
            (_, None) => Claimed::Vanished,
        };
        let _ = reply.send(Ok(answer));
    }
}

/// Keeps every queued answer in one statement.
async fn answer_all(client: &deadpool_postgres::Client, answers: Vec<AnswerRow>) {
    if answers.is_empty() {
        return;
    }
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (key, claim, status, headers, body) in answers {
        columns.0.push(key);
        columns.1.push(claim);
        columns.2.push(status);
        columns.3.push(headers);
        columns.4.push(body);
    }
    let written = async {
        let statement = client.prepare_cached(ANSWER).await?;
        client
            .execute(
                &statement,
                &[&columns.0, &columns.1, &columns.2, &columns.3, &columns.4],
            )
            .await
    }
    .await;
    if let Err(error) = written {
        log_unavailable(&error);
    }
}

/// Lets every queued key go in one statement.
async fn release_all(client: &deadpool_postgres::Client, releases: Vec<(String, Uuid)>) {
    if releases.is_empty() {
        return;
    }
    let (keys, claims): (Vec<String>, Vec<Uuid>) = releases.into_iter().unzip();
    let written = async {
        let statement = client.prepare_cached(RELEASE).await?;
        client.execute(&statement, &[&keys, &claims]).await
    }
    .await;
    if let Err(error) = written {
        log_unavailable(&error);
    }
}

/// Claims keys: each new one, or one in flight past its lease (its request
/// died or hangs) with the same request; returns the keys claimed.
const CLAIM: &str = "INSERT INTO idempotency_keys (key, fingerprint, claim)
     SELECT * FROM unnest($1::text[], $2::text[], $4::uuid[])
     ON CONFLICT (key) DO UPDATE SET claimed_at = now(), claim = EXCLUDED.claim
      WHERE idempotency_keys.status IS NULL
        AND idempotency_keys.fingerprint = EXCLUDED.fingerprint
        AND idempotency_keys.claimed_at < now() - make_interval(secs => $3::float8)
     RETURNING key";

/// What is stored under keys.
const STORED: &str = "SELECT fingerprint, status, headers, body, key
       FROM idempotency_keys WHERE key = ANY($1::text[])";

/// Lets keys go, each if its attempt still holds it. (`key = ANY` has
/// the rows found by the key's index; joined on the unnested array alone,
/// the planner may read the whole table.)
const RELEASE: &str = "DELETE FROM idempotency_keys AS k
      USING unnest($1::text[], $2::uuid[]) AS r(key, claim)
      WHERE k.key = ANY($1::text[]) AND k.key = r.key AND k.claim = r.claim";

/// Keeps answers, each if its attempt still holds the key (`key = ANY`:
/// see [`RELEASE`]).
const ANSWER: &str = "UPDATE idempotency_keys AS k
        SET status = a.status, headers = a.headers, body = a.body
       FROM unnest($1::text[], $2::uuid[], $3::int2[], $4::jsonb[], $5::bytea[])
         AS a(key, claim, status, headers, body)
      WHERE k.key = ANY($1::text[]) AND k.key = a.key AND k.claim = a.claim";

/// Keeps a refusal as a key's answer, unless the key is held.
const KEEP_REFUSAL: &str = "INSERT INTO request_keys (key, request, status, headers, body)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING RETURNING key";

/// What holds a request key.
const HELD: &str = "SELECT request, status, headers, body FROM request_keys WHERE key = $1";

/// The headers of `answer` kept with it.
fn kept_headers(answer: &AnswerParts) -> serde_json::Value {
    serde_json::Value::Object(
        KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = answer.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.into()))
            })
            .collect(),
    )
}

/// What a stored key means for a request with `fingerprint`.
fn stored_claim(row: &Row, fingerprint: &str) -> Claim {
    if row.get::<_, String>(0) != fingerprint {
        return Claim::Mismatch;
    }
    let Some(status) = row.get::<_, Option<i16>>(1) else {
        return Claim::InFlight;
    };
    Claim::Replay(replay(status, &row.get(2), row.get(3)))
}

/// A kept answer, answered again.
fn replay(status: i16, headers: &serde_json::Value, body: Vec<u8>) -> Response {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    if let Some(headers) = headers.as_object() {
        for (name, value) in headers {
            let name = header::HeaderName::try_from(name.as_str());
            let value = value.as_str().map(HeaderValue::from_str);
            if let (Ok(name), Some(Ok(value))) = (name, value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Logs why the key table could not be used (once per batch).
fn log_unavailable(error: &dyn std::fmt::Display) {
    tracing::warn!(%error, "idempotency key table unavailable");
}

/// The key table failed while a request used it (the database restarting,
/// a dropped connection): 503, and the request may be retried with its
/// key; the log, not this table, decides whether it ran.
fn table_unavailable() -> ApiError {
    ApiError::Unavailable {
        detail: "the idempotency key table cannot be reached; retry with the same \
                 Idempotency-Key"
            .into(),
        retry_after: 1,
    }
}

/// The writing task is gone (the runtime is shutting down).
fn writer_gone() -> ApiError {
    ApiError::Unavailable {
        detail: "the service is shutting down; retry with the same Idempotency-Key".into(),
        retry_after: 1,
    }
}

/// A failure of the key table while starting: ours, not the client's.
fn internal(error: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Internal(error.into())
}
