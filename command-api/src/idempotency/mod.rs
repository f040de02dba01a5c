//! `Idempotency-Key` on POST, PUT, PATCH and DELETE: the same key with the
//! same request answers the first outcome again and appends nothing; the
//! same key with a different request is refused (422). A key belongs to its
//! caller (role and subject; the public join: anyone) and its route (method
//! and path): another caller's, or another route's, same key is another
//! key, and its commands derive other event ids. The token is checked
//! before anything is run or written for a key.
//!
//! **The log decides.** Every id a keyed command creates derives from the
//! key and the request or is read back from what an earlier attempt
//! appended (see [`crate::command::Origin`]), so any number of attempts,
//! one after another or at once, append at most once and answer the same
//! outcome. Two modes, after what the event store can do:
//!
//! - **PostgreSQL** (the store records request keys): nothing is claimed.
//!   The command runs at once; its append writes the key in the same
//!   statement, so the first append of a key wins by the key's primary key,
//!   and an attempt that finds the key held answers what holds it
//!   ([`decided_by_the_log`]). A refusal is kept under the key in the same
//!   table (the first of a refusal and an append wins), so a refused key
//!   stays refused. A keyed command costs no statement of its own on the
//!   happy path.
//! - **EventStoreDB** (nothing beside the events in an append's
//!   transaction): the key table claims each key before its command runs
//!   and keeps its answer; a second attempt while the first still runs gets
//!   a courtesy 409 until the first one's lease passes, after which it runs
//!   (and the log answers it). An answer is written only by the attempt
//!   that claimed the key.
//!
//! Either way the table's writes commit without waiting for the disk: a row
//! lost in a crash costs a re-run, never a second application. Answers that
//! say "try again" (409 conflict, 429, 5xx) or say nothing of the state
//! (400, 401, 403, 413, 415) are not kept. Keys are kept for a retention
//! period (a day by default) and then deleted; the gateway gives every
//! command without a key one of its own, so it can retry a command on
//! another instance without running it twice.

use axum::body::{Body, to_bytes};
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::response::Parts as AnswerParts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use mileage_domain::envelope::{Actor, Causation};
use sha2::{Digest, Sha256};

use mileage_service::ApiError;
use mileage_service::auth::{Caller, Verifier};
use mileage_service::error::{KeyHeld, RetryAnswer};
use mileage_store::RequestKey;

use crate::command::Origin;

mod table;

use self::table::Claim;
pub(crate) use self::table::IdempotencyStore;

/// The request header.
pub(crate) const HEADER: &str = "idempotency-key";
/// Set on a replayed answer.
pub(crate) const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted.
const MAX_KEY_LEN: usize = 255;
/// Answer headers kept with the key and replayed.
const KEPT_HEADERS: [&str; 3] = ["content-type", "x-position", "x-correlation-id"];

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

/// Who sends the request, as its events record it and as its keys are
/// scoped: `public` on a public route, else the verified caller, kept in
/// the request so its handler does not verify the token again.
async fn caller(keys: &Keys, parts: &mut Parts) -> Result<Actor, ApiError> {
    if keys.public {
        return Ok(Actor::public());
    }
    let caller = Caller::from_request_parts(parts, keys).await?;
    let actor = caller.actor()?;
    parts.extensions.insert(caller);
    Ok(actor)
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

/// Runs a keyed command once per key: answers a kept answer again, refuses
/// the key reused for another request (422), or runs the command and keeps
/// its answer. Requests without a key pass with fresh event ids.
pub(crate) async fn idempotent(
    State(keys): State<Keys>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let unsafe_method = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let (mut parts, body) = request.into_parts();
    let causation = parts
        .extensions
        .get::<Causation>()
        .cloned()
        .unwrap_or_else(|| Causation::root(uuid::Uuid::now_v7()));
    let Some(key) = parts.headers.get(HEADER).filter(|_| unsafe_method) else {
        // Without a token the handler refuses the request, saying why.
        let causation = match caller(&keys, &mut parts).await {
            Ok(actor) => causation.by(actor),
            Err(_) => causation,
        };
        parts.extensions.insert(Origin::fresh(causation));
        return Ok(next.run(Request::from_parts(parts, body)).await);
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
    let actor = caller(&keys, &mut parts).await?;
    let body = to_bytes(body, crate::BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let key = scoped(actor.as_str(), &parts.method, parts.uri.path(), &key);
    let print = fingerprint(&parts.method, parts.uri.path(), &body);
    let origin = Origin::keyed(causation.by(actor), &key, &print);
    let request_key = origin.request_key();
    parts.extensions.insert(origin);
    let store = &keys.store;
    if let Some(request_key) = request_key.filter(|_| store.log_decides()) {
        let request = Request::from_parts(parts, Body::from(body));
        return decided_by_the_log(store, request_key, request, next).await;
    }
    match store.claim(&key, &print).await? {
        Claim::Replay(response) => Ok(response),
        Claim::Mismatch => Err(key_reused()),
        Claim::InFlight => Err(in_flight()),
        Claim::Fresh(claim) => {
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            let (parts, body) = response.into_parts();
            let bytes = to_bytes(body, usize::MAX)
                .await
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("reading our own answer: {e}")))?;
            fail::fail_point!("idempotency::before_record", |_| Err(ApiError::Internal(
                anyhow::anyhow!("failpoint idempotency::before_record: the process stopped")
            )));
            // The command ran: its answer goes out without waiting for
            // the table to keep it, and even when it cannot (a retry is
            // then answered from the log).
            if let Err(error) = store.record(&key, claim, &parts, &bytes) {
                tracing::warn!(%error, "the answer of a keyed command was not kept");
            }
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
    }
}

/// A keyed command on an event store that records request keys: it runs
/// at once, its append writing its key (the first append of a key wins);
/// a refusal is kept under the key (the first of a refusal and an append
/// wins); and an attempt stopped by the key's holder answers what holds it.
/// No claim, no lease: the log and the key's row decide.
async fn decided_by_the_log(
    store: &IdempotencyStore,
    key: RequestKey,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let response = next.run(request).await;
    let (answer, body) = response.into_parts();
    if answer.extensions.get::<KeyHeld>().is_some() {
        return store.held(key).await;
    }
    if answer.status.is_success() || !kept(&answer) {
        return Ok(Response::from_parts(answer, body));
    }
    let bytes = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("reading our own answer: {e}")))?;
    match store.keep_refusal(key, &answer, &bytes).await? {
        None => Ok(Response::from_parts(answer, Body::from(bytes))),
        Some(holder) => Ok(holder),
    }
}

/// 422: the key was used for another request.
fn key_reused() -> ApiError {
    ApiError::Domain {
        kind: mileage_domain::ErrorKind::Rule,
        code: "idempotency.key_reused",
        detail: "this Idempotency-Key was used for a different request".into(),
        field: None,
    }
}

/// 409: another attempt of the request holds the key; a retry gets its
/// answer.
fn in_flight() -> ApiError {
    metrics::counter!("idempotency_in_flight_total").increment(1);
    ApiError::Domain {
        kind: mileage_domain::ErrorKind::Conflict,
        code: "idempotency.in_flight",
        detail: "a request with this Idempotency-Key is still being processed; retry shortly"
            .into(),
        field: None,
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
