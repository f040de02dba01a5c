//! The release's synchronous call to the member context's join, behind a
//! timeout and a circuit breaker (`failsafe`). In-process when the member
//! context runs here; over HTTP (`POST {MEMBER_API_URL}/members`) when it is
//! deployed apart. Only dependency failures (timeout, 5xx, unreachable) count
//! against the breaker; a refusal such as a taken phone number does not. An
//! open breaker answers 503 with `Retry-After` at once, without calling.

use std::time::Duration;

use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::futures::CircuitBreaker;
use failsafe::{Config, StateMachine};
use mileage_domain::envelope::Causation;
use mileage_domain::ids::MemberId;
use serde_json::{Value, json};

use crate::members;
use crate::state::AppState;
use mileage_service::ApiError;

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

/// The guarded join.
pub struct JoinGuard {
    breaker: Breaker,
    settings: GuardSettings,
    http: reqwest::Client,
}

/// Why a guarded join failed.
enum JoinFailure {
    /// The dependency failed: counts against the breaker.
    Dependency(String),
    /// The member context refused (e.g. the number is taken): passed on.
    Refused(ApiError),
}

impl JoinGuard {
    /// A guard with a closed breaker.
    pub fn new(settings: GuardSettings) -> Self {
        let backoff: Constant = backoff::constant(settings.open_for);
        let policy = failure_policy::consecutive_failures(settings.failures_to_open, backoff);
        Self {
            breaker: Config::new()
                .failure_policy(policy)
                .instrument(BreakerMetrics)
                .build(),
            http: reqwest::Client::new(),
            settings,
        }
    }

    fn retry_after(&self) -> u64 {
        self.settings.open_for.as_secs().max(1)
    }

    /// Joins the person as a new member, or fails fast.
    pub async fn join(
        &self,
        state: &AppState,
        phone: &str,
        nickname: &str,
        causation: Causation,
    ) -> Result<MemberId, ApiError> {
        let timeout = self.settings.timeout;
        let call = async {
            let joined = match &self.settings.member_api_url {
                Some(url) => {
                    tokio::time::timeout(
                        timeout,
                        self.join_over_http(url, phone, nickname, causation),
                    )
                    .await
                }
                None => {
                    tokio::time::timeout(timeout, async {
                        members::join(state, phone, nickname, causation)
                            .await
                            .map(|(id, _)| id)
                            .map_err(|e| match e {
                                ApiError::Unavailable { detail, .. } => {
                                    JoinFailure::Dependency(detail)
                                }
                                ApiError::Internal(e) => JoinFailure::Dependency(e.to_string()),
                                other => JoinFailure::Refused(other),
                            })
                    })
                    .await
                }
            };
            joined.unwrap_or_else(|_| {
                Err(JoinFailure::Dependency(format!(
                    "join took longer than {timeout:?}"
                )))
            })
        };
        let counts = |failure: &JoinFailure| matches!(failure, JoinFailure::Dependency(_));
        match self.breaker.call_with(counts, call).await {
            Ok(id) => Ok(id),
            Err(failsafe::Error::Rejected) => Err(ApiError::Unavailable {
                detail: "the member service is unavailable (circuit open); try again later".into(),
                retry_after: self.retry_after(),
            }),
            Err(failsafe::Error::Inner(JoinFailure::Dependency(reason))) => {
                tracing::warn!(%reason, "member join failed");
                Err(ApiError::Unavailable {
                    detail: "the member service did not answer in time; try again later".into(),
                    retry_after: self.retry_after(),
                })
            }
            Err(failsafe::Error::Inner(JoinFailure::Refused(e))) => Err(e),
        }
    }

    async fn join_over_http(
        &self,
        url: &str,
        phone: &str,
        nickname: &str,
        causation: Causation,
    ) -> Result<MemberId, JoinFailure> {
        let response = self
            .http
            .post(format!("{}/members", url.trim_end_matches('/')))
            .header(
                mileage_service::correlation::HEADER,
                causation.correlation_id.to_string(),
            )
            .json(&json!({ "phoneNo": phone, "nickname": nickname }))
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
        if !status.is_success() {
            return Err(JoinFailure::Refused(ApiError::Domain {
                kind: mileage_domain::ErrorKind::Conflict,
                code: "member.join_refused",
                detail: format!(
                    "the member service refused the join: {}",
                    body["detail"].as_str().unwrap_or("no reason given")
                ),
                field: None,
            }));
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
pub struct BreakerMetrics;

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
