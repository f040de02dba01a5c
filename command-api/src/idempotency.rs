//! `Idempotency-Key` on POST, PATCH and DELETE: the same key with the same
//! request answers the first response again and appends nothing; the same key
//! with a different request is refused (422). A key belongs to its caller
//! (role and subject; the public join: anyone) and its route (method and
//! path): another caller's, or another route's, same key is another key, and
//! its commands derive other event ids. The token is checked before a key is
//! claimed (nothing is written for a request that is refused at the door).
//!
//! **The log decides, this table only remembers.** Every id a keyed command
//! creates derives from the key or is read back from what an earlier attempt
//! appended (see [`crate::handle::Origin`]), so any number of attempts, one
//! after another or at once, append at most once and answer the same
//! outcome whatever this table says. The table keeps the request's
//! fingerprint (422 for another request under the key) and the answer, so a
//! retry is answered without running the command; a second attempt while
//! the first still runs gets a courtesy 409 until the first one's lease
//! passes, after which it runs (and the log answers it). Its writes commit
//! without waiting for the disk: a row lost in a crash costs a re-run, never
//! a second application. An answer is written only by the attempt that
//! claimed the key (a takeover's answer is never overwritten by a slow first
//! attempt), and answers that say "try again" (409 conflict, 429, 5xx) or
//! say nothing of the state (400, 401, 403, 413, 415) are not kept. Keys are
//! kept for a retention period (a day by default) and then deleted; the
//! gateway gives every command without a key one of its own, so it can retry
//! a command on another instance without running it twice.

use axum::body::{Body, to_bytes};
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::response::Parts as AnswerParts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::Pool;
use deadpool_postgres::tokio_postgres;
use mileage_domain::envelope::Causation;
use sha2::{Digest, Sha256};

use mileage_service::ApiError;
use mileage_service::auth::{Caller, Verifier};
use mileage_service::error::RetryAnswer;

use crate::handle::Origin;

/// The request header.
pub(crate) const HEADER: &str = "idempotency-key";
/// Set on a replayed answer.
pub(crate) const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted.
const MAX_KEY_LEN: usize = 255;
/// Answer headers kept with the key and replayed.
const KEPT_HEADERS: [&str; 3] = ["content-type", "x-position", "x-correlation-id"];

/// The table of keys and answers.
#[derive(Clone)]
pub(crate) struct IdempotencyStore {
    pool: Pool,
    /// How long a claimed key stays in flight before a retry may take it
    /// over (its request crashed or hangs).
    lease: std::time::Duration,
}

/// What the key table says about a request.
enum Claim {
    /// Ours to run: a new key, or one whose first attempt's lease passed.
    /// The token names this attempt: only it may write the answer.
    Fresh(uuid::Uuid),
    /// Same request seen: answer this.
    Replay(Response),
    /// Same key, another request.
    Mismatch,
    /// Same request still running.
    InFlight,
}

impl IdempotencyStore {
    /// Creates the table when missing; replicas starting together on a new
    /// database take turns. `pool` should commit without waiting for the
    /// disk (`PgEventStore::lazy_commit_pool`): the table is a cache.
    pub(crate) async fn new(pool: Pool, lease: std::time::Duration) -> Result<Self, ApiError> {
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
             CREATE INDEX IF NOT EXISTS idempotency_keys_created_at
                 ON idempotency_keys (created_at);
             ALTER TABLE idempotency_keys
                 ADD COLUMN IF NOT EXISTS claimed_at timestamptz NOT NULL DEFAULT now();
             ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS claim uuid;",
        )
        .await
        .map_err(internal)?;
        Ok(Self { pool, lease })
    }

    /// Deletes the keys older than `retention` and says how many went. A
    /// retry after that has no stored answer; the command's derived event
    /// ids still find the first run in the log, so it is not applied twice.
    pub(crate) async fn purge(&self, retention: std::time::Duration) -> Result<u64, ApiError> {
        let client = self.pool.get().await.map_err(internal)?;
        client
            .execute(
                "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
                &[&retention.as_secs_f64()],
            )
            .await
            .map_err(internal)
    }

    /// Purges every `every` until the task is dropped; the first purge is at
    /// once. Every replica runs one: deleting the same old rows twice is
    /// harmless.
    pub(crate) async fn purge_forever(
        self,
        retention: std::time::Duration,
        every: std::time::Duration,
    ) {
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

    async fn claim(&self, key: &str, fingerprint: &str) -> Result<Claim, ApiError> {
        let client = self.pool.get().await.map_err(table_unavailable)?;
        let token = uuid::Uuid::new_v4();
        // A key released (after a 5xx) between our insert and select is
        // claimed again; twice in a row is not worth waiting for.
        for _ in 0..3 {
            // New, or in flight past its lease (its request died or hangs):
            // ours to run. The log decides which attempt's append counts,
            // so a takeover of a request that did append appends nothing.
            let claim = client
                .prepare_cached(CLAIM)
                .await
                .map_err(table_unavailable)?;
            let inserted = client
                .execute(
                    &claim,
                    &[&key, &fingerprint, &self.lease.as_secs_f64(), &token],
                )
                .await
                .map_err(table_unavailable)?;
            if inserted == 1 {
                return Ok(Claim::Fresh(token));
            }
            let select = client
                .prepare_cached(STORED)
                .await
                .map_err(table_unavailable)?;
            let row = client
                .query_opt(&select, &[&key])
                .await
                .map_err(table_unavailable)?;
            if let Some(row) = row {
                return Ok(stored(&row, fingerprint));
            }
        }
        Ok(Claim::InFlight)
    }

    /// Keeps the answer of the attempt that holds `claim`, or lets the key
    /// go when the answer is not kept; a claim taken over since (the lease
    /// passed) is the other attempt's to answer, and nothing is written.
    async fn record(
        &self,
        key: &str,
        claim: uuid::Uuid,
        answer: &AnswerParts,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let client = self.pool.get().await.map_err(table_unavailable)?;
        if !kept(answer) {
            let release = client
                .prepare_cached(RELEASE)
                .await
                .map_err(table_unavailable)?;
            client
                .execute(&release, &[&key, &claim])
                .await
                .map_err(table_unavailable)?;
            return Ok(());
        }
        let kept: serde_json::Map<String, serde_json::Value> = KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = answer.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.into()))
            })
            .collect();
        let answered = client
            .prepare_cached(ANSWER)
            .await
            .map_err(table_unavailable)?;
        client
            .execute(
                &answered,
                &[
                    &key,
                    &claim,
                    &i16::try_from(answer.status.as_u16()).unwrap_or(200),
                    &serde_json::Value::Object(kept),
                    &body,
                ],
            )
            .await
            .map_err(table_unavailable)?;
        Ok(())
    }
}

/// Claims a key: new, or in flight past its lease (its request died or
/// hangs) with the same request.
const CLAIM: &str = "INSERT INTO idempotency_keys (key, fingerprint, claim) VALUES ($1, $2, $4)
     ON CONFLICT (key) DO UPDATE SET claimed_at = now(), claim = EXCLUDED.claim
      WHERE idempotency_keys.status IS NULL
        AND idempotency_keys.fingerprint = EXCLUDED.fingerprint
        AND idempotency_keys.claimed_at < now() - make_interval(secs => $3)";

/// What is stored under a key.
const STORED: &str =
    "SELECT fingerprint, status, headers, body FROM idempotency_keys WHERE key = $1";

/// Lets a key go, if this attempt still holds it.
const RELEASE: &str = "DELETE FROM idempotency_keys WHERE key = $1 AND claim = $2";

/// Keeps an answer, if this attempt still holds the key.
const ANSWER: &str = "UPDATE idempotency_keys SET status = $3, headers = $4, body = $5
      WHERE key = $1 AND claim = $2";

/// What a stored key means for a request with `fingerprint`.
fn stored(row: &tokio_postgres::Row, fingerprint: &str) -> Claim {
    if row.get::<_, String>(0) != fingerprint {
        return Claim::Mismatch;
    }
    let Some(status) = row.get::<_, Option<i16>>(1) else {
        return Claim::InFlight;
    };
    let headers: serde_json::Value = row.get(2);
    let body: Vec<u8> = row.get(3);
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
    Claim::Replay(response)
}

/// The key table failed while a request used it (the database restarting,
/// a dropped connection): 503, and the request may be retried with its
/// key; the log, not this table, decides whether it ran.
fn table_unavailable(error: impl Into<anyhow::Error>) -> ApiError {
    tracing::warn!(error = %error.into(), "idempotency key table unavailable");
    ApiError::Unavailable {
        detail: "the idempotency key table cannot be reached; retry with the same \
                 Idempotency-Key"
            .into(),
        retry_after: 1,
    }
}

/// A failure of the key table: ours, not the client's.
fn internal(error: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Internal(error.into())
}

/// What identifies "the same request": method, path and body.
fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_str());
    hash.update([0]);
    hash.update(path);
    hash.update([0]);
    hash.update(body);
    hex(hash.finalize().as_slice())
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// What the middleware needs: the key table, the token check, and whether
/// its routes are public (the join) or need a token.
#[derive(Clone)]
pub(crate) struct Keys {
    store: IdempotencyStore,
    verifier: Arc<Verifier>,
    public: bool,
}

impl Keys {
    /// For routes that need a token: a keyed request without a valid one
    /// is refused before its key is claimed.
    pub(crate) fn for_callers(store: IdempotencyStore, verifier: Arc<Verifier>) -> Self {
        Self {
            store,
            verifier,
            public: false,
        }
    }

    /// For public routes: keys are shared by every caller of the route.
    pub(crate) fn for_public(store: IdempotencyStore, verifier: Arc<Verifier>) -> Self {
        Self {
            store,
            verifier,
            public: true,
        }
    }
}

impl FromRef<Keys> for Arc<Verifier> {
    fn from_ref(keys: &Keys) -> Self {
        Arc::clone(&keys.verifier)
    }
}

/// Whose a key is: `role:subject`, or `public` on a public route.
async fn owner(keys: &Keys, parts: &mut Parts) -> Result<String, ApiError> {
    if keys.public {
        return Ok("public".into());
    }
    let Caller(claims) = Caller::from_request_parts(parts, keys).await?;
    Ok(format!("{}:{}", claims.role.as_str(), claims.sub))
}

/// The key as stored: the client's key within its owner and route, hashed
/// (fixed length whatever the subject and path).
fn scoped(owner: &str, method: &Method, path: &str, key: &str) -> String {
    hex(Sha256::new()
        .chain_update(owner)
        .chain_update([0])
        .chain_update(method.as_str())
        .chain_update([0])
        .chain_update(path)
        .chain_update([0])
        .chain_update(key)
        .finalize()
        .as_slice())
}

/// Whether an answer is kept for the key's retries. Not kept: answers that
/// do not depend on the state (a retry may well get another one, after
/// fixing the request or the token: 400, 401, 403, 413, 415) and answers
/// that say "try again" (a conflict, a used-up limit, 5xx: see
/// [`RetryAnswer`]), which a stored copy would repeat for a day.
fn kept(answer: &AnswerParts) -> bool {
    !(answer.status.is_server_error()
        || answer.extensions.get::<RetryAnswer>().is_some()
        || matches!(
            answer.status,
            StatusCode::BAD_REQUEST
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNSUPPORTED_MEDIA_TYPE
                | StatusCode::TOO_MANY_REQUESTS
        ))
}

/// The middleware.
pub(crate) async fn idempotent(
    State(keys): State<Keys>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let unsafe_method = matches!(
        *request.method(),
        Method::POST | Method::PATCH | Method::DELETE
    );
    let causation = request
        .extensions()
        .get::<Causation>()
        .copied()
        .unwrap_or_else(|| Causation::root(uuid::Uuid::now_v7()));
    let Some(key) = request.headers().get(HEADER).filter(|_| unsafe_method) else {
        let mut request = request;
        request.extensions_mut().insert(Origin::fresh(causation));
        return Ok(next.run(request).await);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or(ApiError::BadHeader {
            header: "Idempotency-Key",
            detail: format!("expected 1 to {MAX_KEY_LEN} visible ASCII characters"),
        })?
        .to_owned();
    let (mut parts, body) = request.into_parts();
    let owner = owner(&keys, &mut parts).await?;
    let body = to_bytes(body, crate::BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let key = scoped(&owner, &parts.method, parts.uri.path(), &key);
    let print = fingerprint(&parts.method, parts.uri.path(), &body);
    parts
        .extensions
        .insert(Origin::keyed(causation, &key, &print));
    let store = &keys.store;
    match store.claim(&key, &print).await? {
        Claim::Replay(response) => Ok(response),
        Claim::Mismatch => Err(ApiError::Domain {
            kind: mileage_domain::ErrorKind::Rule,
            code: "idempotency.key_reused",
            detail: "this Idempotency-Key was used for a different request".into(),
            field: None,
        }),
        Claim::InFlight => Err({
            metrics::counter!("idempotency_in_flight_total").increment(1);
            ApiError::Domain {
                kind: mileage_domain::ErrorKind::Conflict,
                code: "idempotency.in_flight",
                detail:
                    "a request with this Idempotency-Key is still being processed; retry shortly"
                        .into(),
                field: None,
            }
        }),
        Claim::Fresh(claim) => {
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            let (parts, body) = response.into_parts();
            let bytes = to_bytes(body, usize::MAX)
                .await
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("reading our own answer: {e}")))?;
            fail::fail_point!("idempotency::before_record", |_| Err(ApiError::Internal(
                anyhow::anyhow!("failpoint idempotency::before_record: the process stopped")
            )));
            // The command ran: its answer goes out even when the table
            // cannot keep it (a retry is then answered from the log).
            if let Err(error) = store.record(&key, claim, &parts, &bytes).await {
                tracing::warn!(%error, "the answer of a keyed command was not kept");
            }
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use mileage_service::ApiError;

    use super::kept;

    fn answer(response: axum::response::Response) -> super::AnswerParts {
        response.into_parts().0
    }

    #[test]
    fn answers_that_say_try_again_or_nothing_of_the_state_are_not_kept() {
        let conflict = answer(ApiError::Conflict.into_response());
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert!(!kept(&conflict), "409 request.conflict says retry");
        let limited = answer(
            ApiError::RateLimited {
                code: "rate_limit.commands",
                detail: "slow down".into(),
                retry_after: 1,
            }
            .into_response(),
        );
        assert!(!kept(&limited));
        let unavailable = answer(
            ApiError::Unavailable {
                detail: "down".into(),
                retry_after: 1,
            }
            .into_response(),
        );
        assert!(!kept(&unavailable));
        assert!(!kept(&answer(ApiError::PayloadTooLarge.into_response())));
        assert!(!kept(&answer(
            StatusCode::TOO_MANY_REQUESTS.into_response()
        )));
    }

    #[test]
    fn answers_that_depend_on_the_state_are_kept() {
        assert!(kept(&answer(StatusCode::CREATED.into_response())));
        assert!(kept(&answer(StatusCode::OK.into_response())));
        let refused = ApiError::Domain {
            kind: mileage_domain::ErrorKind::Rule,
            code: "member.insufficient_points",
            detail: "not enough".into(),
            field: None,
        };
        assert!(kept(&answer(refused.into_response())));
        let taken = ApiError::Domain {
            kind: mileage_domain::ErrorKind::Conflict,
            code: "member.phone_taken",
            detail: "taken".into(),
            field: None,
        };
        assert!(
            kept(&answer(taken.into_response())),
            "a refusal's 409 is an answer"
        );
    }
}
