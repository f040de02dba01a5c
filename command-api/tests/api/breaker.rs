//! Release behind the circuit breaker, against a real HTTP member endpoint
//! on loopback that is slowed down and then recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use mileage_command_api::config::GuardSettings;
use mileage_store::EventStore;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

/// A stand-in member service: `POST /members` answers after `delay_ms`.
struct FakeMembers {
    url: String,
    delay_ms: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
}

impl FakeMembers {
    async fn start() -> Self {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let state = (Arc::clone(&delay_ms), Arc::clone(&calls));
        let app = axum::Router::new()
            .route(
                "/members",
                post(
                    |State((delay, calls)): State<(Arc<AtomicU64>, Arc<AtomicU64>)>,
                     Json(_): Json<Value>| async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(delay.load(Ordering::SeqCst)))
                            .await;
                        (
                            StatusCode::CREATED,
                            Json(json!({ "memberId": format!("{}", 100 + n) })),
                        )
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            delay_ms,
            calls,
        }
    }
}

async fn dormant_targets(app: &TestApp, count: u32) {
    for n in 1..=count {
        let body = json!({ "phoneNo": format!("0105000000{n}"), "nickname": "D", "memberId": n.to_string() });
        assert_eq!(app.post("/dormantMembers", body).await.status, 201);
        assert_eq!(
            app.post(&format!("/dormantMembers/{n}/dormant"), json!({}))
                .await
                .status,
            200
        );
    }
}

// Seconds, not milliseconds, so a loaded machine cannot blur the three
// phases: slow calls time out after JOIN_TIMEOUT, the breaker stays open for
// OPEN_FOR, and recovery is polled for.
const JOIN_TIMEOUT: Duration = Duration::from_secs(1);
const OPEN_FOR: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_slow_member_service_opens_the_breaker_and_it_closes_after_recovery() {
    let fake = FakeMembers::start().await;
    let url = fake.url.clone();
    let app = spawn_app_with(mileage_store::testing::fresh_database().await, move |s| {
        s.join = GuardSettings {
            member_api_url: Some(url),
            timeout: JOIN_TIMEOUT,
            failures_to_open: 3,
            open_for: OPEN_FOR,
        };
    })
    .await;
    dormant_targets(&app, 5).await;

    // Slow: each release times out, fails well before the member service
    // would have answered, and appends nothing.
    fake.delay_ms.store(30_000, Ordering::SeqCst);
    for id in 1..=3 {
        let started = Instant::now();
        let reply = app
            .post(&format!("/dormantMembers/{id}/release"), json!({}))
            .await;
        reply.assert_problem(503, "service.unavailable");
        assert!(reply.headers.contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "bounded by the timeout, not the member service: {:?}",
            started.elapsed()
        );
    }

    // Open: rejected without calling the member service, faster than a call
    // could time out.
    let calls = fake.calls.load(Ordering::SeqCst);
    let started = Instant::now();
    let rejected = app.post("/dormantMembers/4/release", json!({})).await;
    rejected.assert_problem(503, "service.unavailable");
    assert!(
        started.elapsed() < JOIN_TIMEOUT,
        "fast: {:?}",
        started.elapsed()
    );
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        calls,
        "no call while open"
    );

    let store = app.store().await;
    for id in 1..=4 {
        let stream = store
            .read_stream(&format!("dormantMember-{id}"), 0, 10)
            .await
            .unwrap();
        assert_eq!(stream.len(), 2, "target {id}: registered and dormant only");
    }

    // Recovered: after the open period one probe goes through and closes it.
    fake.delay_ms.store(0, Ordering::SeqCst);
    let probe = mileage_testkit::until_every(
        Duration::from_millis(250),
        OPEN_FOR * 6,
        || app.post("/dormantMembers/4/release", json!({})),
        |reply| reply.status != 503,
    )
    .await;
    assert_eq!(probe.status, 200, "{}", probe.body);
    assert_eq!(probe.body["memberStatus"], "CLEARED");
    let closed = app.post("/dormantMembers/5/release", json!({})).await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert!(
        closed.body["rejoinedMemberId"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 100
    );
}
