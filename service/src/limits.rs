//! Request rate limits, so that no client crowds out the others: joins per
//! client address (the one public command), commands per verified caller,
//! and refused bearer tokens per client address (someone guessing tokens).
//!
//! Each limit is a `governor` keyed GCRA limiter. An exhausted one answers
//! 429 with `Retry-After` and a problem+json body before any work is done,
//! an idempotency key claimed included. `tower_governor` is not used: the
//! per-caller key needs the verified token, and the refused-token limit
//! counts only requests whose token is refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderName;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::ApiError;
use crate::auth::{Caller, Verifier};

/// How many requests each limit lets through (`None`: that limit is off).
/// Quotas refill evenly: 60 a minute is one a second, with bursts of 60.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Joins per client address and minute (`RATE_LIMIT_JOINS_PER_MINUTE`).
    pub joins_per_minute: Option<NonZeroU32>,
    /// Commands per caller (role and subject) and second
    /// (`RATE_LIMIT_COMMANDS_PER_SECOND`).
    pub commands_per_second: Option<NonZeroU32>,
    /// Refused bearer tokens per client address and minute
    /// (`RATE_LIMIT_AUTH_FAILURES_PER_MINUTE`).
    pub auth_failures_per_minute: Option<NonZeroU32>,
    /// The header a trusted gateway puts the client's address in
    /// (`TRUSTED_CLIENT_IP_HEADER`, e.g. `X-Real-IP`). Unset: the peer
    /// address, as a client could write any header itself.
    pub client_ip_header: Option<HeaderName>,
}

impl RateLimits {
    /// Every limit off: for benchmarks and tests that load one service from
    /// one address with one token.
    pub fn off() -> Self {
        Self {
            joins_per_minute: None,
            commands_per_second: None,
            auth_failures_per_minute: None,
            client_ip_header: None,
        }
    }
}

impl Default for RateLimits {
    /// 60 joins a minute per address, 50 commands a second per caller, 20
    /// refused tokens a minute per address; the peer address.
    fn default() -> Self {
        Self {
            joins_per_minute: NonZeroU32::new(60),
            commands_per_second: NonZeroU32::new(50),
            auth_failures_per_minute: NonZeroU32::new(20),
            client_ip_header: None,
        }
    }
}

/// Which limit refused a request: the problem's code and the metric label.
#[derive(Clone, Copy)]
enum Limit {
    Joins,
    Commands,
    AuthFailures,
}

impl Limit {
    const ALL: [Self; 3] = [Self::Joins, Self::Commands, Self::AuthFailures];

    fn code(self) -> &'static str {
        match self {
            Self::Joins => "rate_limit.joins",
            Self::Commands => "rate_limit.commands",
            Self::AuthFailures => "rate_limit.auth_failures",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Self::Joins => "too many joins from this address; retry after the time given",
            Self::Commands => "too many commands from this caller; retry after the time given",
            Self::AuthFailures => {
                "too many refused tokens from this address; retry after the time given"
            }
        }
    }
}

/// Puts every limit's refusal count (`rate_limited_total`) at zero, so it
/// has a series from the first scrape.
pub(crate) fn refusals_at_zero() {
    for limit in Limit::ALL {
        metrics::counter!("rate_limited_total", "limit" => limit.code()).increment(0);
    }
}

type Limiter<K> = DefaultKeyedRateLimiter<K>;

/// The limits one group of routes applies, as middleware state
/// ([`limit`]).
#[derive(Clone)]
pub struct Guard(Arc<Limiters>);

struct Limiters {
    per_address: Option<Limiter<IpAddr>>,
    per_caller: Option<(Arc<Verifier>, Limiter<String>)>,
    auth_failures: Option<(Arc<Verifier>, Limiter<IpAddr>)>,
    client_ip_header: Option<HeaderName>,
}

impl Guard {
    /// The public join: limited per client address.
    pub fn joins(settings: &RateLimits) -> Self {
        Self::new(Limiters {
            per_address: settings
                .joins_per_minute
                .map(|n| Limiter::keyed(Quota::per_minute(n))),
            per_caller: None,
            auth_failures: None,
            client_ip_header: settings.client_ip_header.clone(),
        })
    }

    /// Commands with a token: limited per verified caller, and refused
    /// tokens per client address.
    pub fn commands(settings: &RateLimits, verifier: &Arc<Verifier>) -> Self {
        Self::new(Limiters {
            per_address: None,
            per_caller: settings
                .commands_per_second
                .map(|n| (Arc::clone(verifier), Limiter::keyed(Quota::per_second(n)))),
            auth_failures: auth_failures(settings, verifier),
            client_ip_header: settings.client_ip_header.clone(),
        })
    }

    /// Reads with a token: refused tokens limited per client address.
    pub fn reads(settings: &RateLimits, verifier: &Arc<Verifier>) -> Self {
        Self::new(Limiters {
            per_address: None,
            per_caller: None,
            auth_failures: auth_failures(settings, verifier),
            client_ip_header: settings.client_ip_header.clone(),
        })
    }

    fn new(limiters: Limiters) -> Self {
        let guard = Self(Arc::new(limiters));
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(forget_idle_keys(Arc::downgrade(&guard.0)));
        }
        guard
    }

    fn client_ip(&self, request: &Request) -> IpAddr {
        self.0
            .client_ip_header
            .as_ref()
            .and_then(|name| request.headers().get(name))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok())
            .or_else(|| {
                request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|info| info.0.ip())
            })
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

fn auth_failures(
    settings: &RateLimits,
    verifier: &Arc<Verifier>,
) -> Option<(Arc<Verifier>, Limiter<IpAddr>)> {
    settings
        .auth_failures_per_minute
        .map(|n| (Arc::clone(verifier), Limiter::keyed(Quota::per_minute(n))))
}

/// Drops the state of keys that have been quiet for a full quota, once a
/// minute, so that many addresses or subjects cannot grow memory without
/// bound. Ends with the guard.
async fn forget_idle_keys(limiters: Weak<Limiters>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(limiters) = limiters.upgrade() else {
            return;
        };
        forget(limiters.per_address.as_ref());
        forget(limiters.per_caller.as_ref().map(|(_, l)| l));
        forget(limiters.auth_failures.as_ref().map(|(_, l)| l));
    }
}

fn forget<K: std::hash::Hash + Eq + Clone>(limiter: Option<&Limiter<K>>) {
    if let Some(limiter) = limiter {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &Limiter<K>,
    key: &K,
    limit: Limit,
) -> Result<(), ApiError> {
    limiter.check_key(key).map_err(|not_until| {
        metrics::counter!("rate_limited_total", "limit" => limit.code()).increment(1);
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::RateLimited {
            code: limit.code(),
            detail: limit.detail().to_owned(),
            // Whole seconds, rounded up: never 0, which would invite a
            // retry that is refused again.
            retry_after: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
        }
    })
}

/// The middleware: checks the guard's limits, in order address, token,
/// caller. A verified token is handed on as the request's [`Caller`], so the
/// handler does not verify it again; a refused one is left for the handler
/// to answer 401 until its address has used up its refusals.
pub async fn limit(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    match admit(&guard, &mut request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

fn admit(guard: &Guard, request: &mut Request) -> Result<(), ApiError> {
    let limiters = &guard.0;
    if let Some(limiter) = &limiters.per_address {
        check(limiter, &guard.client_ip(request), Limit::Joins)?;
    }
    let ((Some((verifier, _)), _) | (None, Some((verifier, _)))) =
        (&limiters.per_caller, &limiters.auth_failures)
    else {
        return Ok(());
    };
    let Some(header) = request.headers().get(AUTHORIZATION) else {
        return Ok(());
    };
    let claims = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|token| verifier.verify(token.trim()).ok());
    match claims {
        Some(claims) => {
            if let Some((_, limiter)) = &limiters.per_caller {
                let caller = format!("{}:{}", claims.role.as_str(), claims.sub);
                check(limiter, &caller, Limit::Commands)?;
            }
            request.extensions_mut().insert(Caller(claims));
            Ok(())
        }
        None => match &limiters.auth_failures {
            Some((_, limiter)) => check(limiter, &guard.client_ip(request), Limit::AuthFailures),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use axum::{Extension, Router};
    use tower::ServiceExt;

    use super::{Guard, RateLimits, limit};
    use crate::auth::{Caller, Role, Verifier, mint_hs256};

    const SECRET: &[u8] = b"unit-test-secret-of-32-bytes-or-more!";

    fn app(guard: Guard) -> Router {
        Router::new()
            .route(
                "/",
                post(|caller: Option<Extension<Caller>>| async move {
                    caller.map_or_else(|| "anonymous".to_owned(), |c| c.0.0.sub)
                }),
            )
            .layer(axum::middleware::from_fn_with_state(guard, limit))
    }

    async fn send(app: &Router, token: Option<&str>, ip: &str) -> (StatusCode, Option<String>) {
        let mut request = Request::post("/").header("x-real-ip", ip);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), retry)
    }

    fn settings() -> RateLimits {
        RateLimits {
            joins_per_minute: NonZeroU32::new(2),
            commands_per_second: NonZeroU32::new(2),
            auth_failures_per_minute: NonZeroU32::new(2),
            client_ip_header: Some("x-real-ip".parse().unwrap()),
        }
    }

    #[tokio::test]
    async fn joins_are_counted_per_address() {
        let app = app(Guard::joins(&settings()));
        assert_eq!(send(&app, None, "10.0.0.1").await.0, StatusCode::OK);
        assert_eq!(send(&app, None, "10.0.0.1").await.0, StatusCode::OK);
        let (status, retry) = send(&app, None, "10.0.0.1").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        assert_eq!(send(&app, None, "10.0.0.2").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn commands_are_counted_per_verified_caller_and_refused_tokens_per_address() {
        let verifier = Arc::new(Verifier::hs256(SECRET));
        let app = app(Guard::commands(&settings(), &verifier));
        let ops = mint_hs256(SECRET, "ops", Role::Manager, 600).unwrap();
        let shop = mint_hs256(SECRET, "shop", Role::Partner, 600).unwrap();
        let forged = mint_hs256(
            b"another-secret-of-32-bytes-or-more!!",
            "ops",
            Role::Manager,
            600,
        )
        .unwrap();
        for _ in 0..2 {
            assert_eq!(send(&app, Some(&ops), "10.0.0.1").await.0, StatusCode::OK);
        }
        assert_eq!(
            send(&app, Some(&ops), "10.0.0.9").await.0,
            StatusCode::TOO_MANY_REQUESTS,
            "the caller, wherever it calls from"
        );
        assert_eq!(send(&app, Some(&shop), "10.0.0.1").await.0, StatusCode::OK);
        for _ in 0..2 {
            assert_eq!(
                send(&app, Some(&forged), "10.0.0.3").await.0,
                StatusCode::OK,
                "the handler answers a refused token"
            );
        }
        assert_eq!(
            send(&app, Some(&forged), "10.0.0.3").await.0,
            StatusCode::TOO_MANY_REQUESTS,
            "a forged token does not spend the caller it names"
        );
        assert_eq!(send(&app, Some(&shop), "10.0.0.3").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_verified_caller_is_handed_on_and_off_limits_let_everything_through() {
        let verifier = Arc::new(Verifier::hs256(SECRET));
        let app = app(Guard::commands(&RateLimits::off(), &verifier));
        let ops = mint_hs256(SECRET, "ops", Role::Manager, 600).unwrap();
        for _ in 0..10 {
            assert_eq!(send(&app, Some(&ops), "10.0.0.1").await.0, StatusCode::OK);
            assert_eq!(send(&app, Some("junk"), "10.0.0.1").await.0, StatusCode::OK);
        }
    }
}
