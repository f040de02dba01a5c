//! The release's synchronous call to the member context's join, behind a
//! timeout and a circuit breaker (`failsafe`). The join itself is a small
//! port ([`Join`]): in-process ([`Members`]) when the member context runs
//! here, over HTTP (`POST {MEMBER_API_URL}/members`, [`HttpJoin`]) when it
//! is deployed apart. Only dependency failures (timeout, 5xx, unreachable)
//! count against the breaker; a refusal such as a taken phone number does
//! not. An open breaker answers 503 with `Retry-After` at once, without
//! calling.

use std::sync::Arc;
use std::time::Duration;

use crate::command::Origin;
use async_trait::async_trait;
use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::futures::CircuitBreaker;
use failsafe::{Config, StateMachine};
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::pii::release_key;
use serde_json::{Value, json};

use crate::error::CommandError;

use crate::members::Members;

/// How the guard behaves.
#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// The member API, when the member context runs elsewhere.
    pub member_api_url: Option<String>,
    /// Longest a join may take.
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// How long the breaker stays open before one probe is let through.
    pub open_for: Duration,
}

type Breaker = StateMachine<ConsecutiveFailures<Constant>, BreakerMetrics>;

/// The member context's join, as the release needs it.
#[async_trait]
pub(crate) trait Join: Send + Sync {
    /// Joins the person as a new member for the release `release`: the same
    /// release asked again joins nobody new and answers the same member.
    async fn join(
        &self,
        phone: &str,
        nickname: &str,
        release: &Release,
    ) -> Result<MemberId, JoinFailure>;
}

/// One release's join: the target, and the key and origin that make the
/// join idempotent (both derived from the target and its version, the key
/// made with the server-side secret so that no client can claim it: see
/// [`mileage_domain::pii::release_key`]).
#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub(crate) target: DormantMemberId,
    pub(crate) key: String,
    pub(crate) origin: Origin,
}

impl Release {
    /// The release of `target` as it stands at `version`, its key made
    /// with `secret`.
    pub(crate) fn of(
        target: &DormantMemberId,
        version: Option<u64>,
        origin: Origin,
        secret: &[u8],
    ) -> Self {
        let key = release_key(secret, target, version.map_or(0, |v| v + 1));
        Self {
            origin: Origin::keyed(origin.causation, &key, "join"),
            target: target.clone(),
            key,
        }
    }
}

/// The guarded join.
pub(crate) struct JoinGuard {
    breaker: Breaker,
    settings: GuardSettings,
    join: Arc<dyn Join>,
}

/// Why a join failed.
pub(crate) enum JoinFailure {
    /// The dependency failed: counts against the breaker.
    Dependency(String),
    /// The member context refused (e.g. the number is taken): passed on.
    Refused(CommandError),
    /// The member context asks to try again (the same join still in flight,
    /// a rate limit): a 503 for the release, not counted against the
    /// breaker, and never a refusal a stored answer would keep.
    Busy(String),
}

impl JoinGuard {
    /// A guard with a closed breaker around the join the settings name:
    /// over HTTP when `member_api_url` is set, otherwise `members`.
    pub(crate) fn new(settings: GuardSettings, members: Arc<Members>) -> Self {
        let join: Arc<dyn Join> = match &settings.member_api_url {
            Some(url) => Arc::new(HttpJoin {
                url: url.trim_end_matches('/').to_owned(),
                http: reqwest::Client::new(),
            }),
            None => members,
        };
        let backoff: Constant = backoff::constant(settings.open_for);
        let policy = failure_policy::consecutive_failures(settings.failures_to_open, backoff);
        Self {
            breaker: Config::new()
                .failure_policy(policy)
                .instrument(BreakerMetrics)
                .build(),
            settings,
            join,
        }
    }

    fn retry_after(&self) -> u64 {
        self.settings.open_for.as_secs().max(1)
    }

    /// Joins the person as a new member, or fails fast.
    pub(crate) async fn join(
        &self,
        phone: &str,
        nickname: &str,
        release: &Release,
    ) -> Result<MemberId, CommandError> {
        let timeout = self.settings.timeout;
        let call = async {
            let joined =
                tokio::time::timeout(timeout, self.join.join(phone, nickname, release)).await;
            joined.unwrap_or_else(|_| {
                Err(JoinFailure::Dependency(format!(
                    "join took longer than {timeout:?}"
                )))
            })
        };
        let counts = |failure: &JoinFailure| matches!(failure, JoinFailure::Dependency(_));
        match self.breaker.call_with(counts, call).await {
            Ok(id) => Ok(id),
            Err(failsafe::Error::Rejected) => Err(CommandError::Unavailable {
                detail: "the member service is unavailable (circuit open); try again later".into(),
                retry_after: self.retry_after(),
            }),
            Err(failsafe::Error::Inner(JoinFailure::Dependency(reason))) => {
                tracing::warn!(%reason, "member join failed");
                Err(CommandError::Unavailable {
                    detail: "the member service did not answer in time; try again later".into(),
                    retry_after: self.retry_after(),
                })
            }
            Err(failsafe::Error::Inner(JoinFailure::Busy(reason))) => {
                tracing::info!(%reason, "member join busy");
                Err(CommandError::Unavailable {
                    detail: "the member service is busy with this release; try again shortly"
                        .into(),
                    retry_after: 1,
                })
            }
            Err(failsafe::Error::Inner(JoinFailure::Refused(e))) => Err(e),
        }
    }
}

/// The member context's join over HTTP, when it is deployed apart.
struct HttpJoin {
    url: String,
    http: reqwest::Client,
}

#[async_trait]
impl Join for HttpJoin {
    async fn join(
        &self,
        phone: &str,
        nickname: &str,
        release: &Release,
    ) -> Result<MemberId, JoinFailure> {
        let response = self
            .http
            .post(format!("{}/members", self.url))
            .header(
                mileage_service::correlation::HEADER,
                release.origin.causation.correlation_id.to_string(),
            )
            .header("idempotency-key", &release.key)
            // Named, so the member context's process managers follow the
            // join as this release's (the key proves it is one).
            .json(&json!({
                "phoneNo": phone,
                "nickname": nickname,
                "rejoining": release.target.as_str(),
            }))
            .send()
            .await
            .map_err(|e| JoinFailure::Dependency(format!("member API unreachable: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_server_error() {
            return Err(JoinFailure::Dependency(format!(
                "member API answered {status}"
            )));
        }
        let asks_retry = status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || (status == reqwest::StatusCode::CONFLICT && body["code"] == "idempotency.in_flight");
        if asks_retry {
            return Err(JoinFailure::Busy(format!(
                "member API answered {status} ({})",
                body["code"].as_str().unwrap_or("no code")
            )));
        }
        if !status.is_success() {
            return Err(JoinFailure::Refused(CommandError::conflict(
                "member.join_refused",
                format!(
                    "the member service refused the join: {}",
                    body["detail"].as_str().unwrap_or("no reason given")
                ),
                None,
            )));
        }
        body["memberId"]
            .as_str()
            .and_then(|id| MemberId::parse(id).ok())
            .ok_or_else(|| {
                JoinFailure::Dependency(format!("member API answered without a member id: {body}"))
            })
    }
}

/// The release breaker's transitions, as a gauge (0 closed, 1 half-open,
/// 2 open) and a count of calls it rejected.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BreakerMetrics;

impl failsafe::Instrument for BreakerMetrics {
    fn on_call_rejected(&self) {
        metrics::counter!("release_breaker_rejected_total").increment(1);
    }

    fn on_open(&self) {
        metrics::gauge!("release_breaker_state").set(2.0);
    }

    fn on_half_open(&self) {
        metrics::gauge!("release_breaker_state").set(1.0);
    }

    fn on_closed(&self) {
        metrics::gauge!("release_breaker_state").set(0.0);
    }
}

/// The member context in this process.
#[async_trait]
impl Join for Members {
    async fn join(
        &self,
        phone: &str,
        nickname: &str,
        release: &Release,
    ) -> Result<MemberId, JoinFailure> {
        Members::join(
            self,
            phone,
            nickname,
            Some(release.target.clone()),
            release.origin.clone(),
        )
        .await
        .map(|(id, _)| id)
        .map_err(|e| match e {
            CommandError::Unavailable { detail, .. } | CommandError::OutcomeUnknown(detail) => {
                JoinFailure::Dependency(detail)
            }
            CommandError::Internal(e) => JoinFailure::Dependency(e.to_string()),
            CommandError::Conflict => JoinFailure::Busy("the join kept conflicting".into()),
            other => JoinFailure::Refused(other),
        })
    }
}
