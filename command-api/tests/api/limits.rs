//! Rate limits (#14): joins per client address, commands per caller,
//! refused tokens per address; each answers 429 with `Retry-After` and a
//! problem+json body, and claims no idempotency key.

use std::num::NonZeroU32;
use std::time::Duration;

use mileage_service::auth::Role;
use mileage_service::settings::RateLimits;
use mileage_store::EventStore;
use serde_json::json;

use crate::helpers::{Reply, TestApp, spawn_app_with, token};

/// A service whose limits are tiny, and which trusts `X-Real-IP` as a
/// gateway would write it.
async fn limited(joins: u32, commands: u32, failures: u32) -> TestApp {
    let database = mileage_store::testing::fresh_database().await;
    spawn_app_with(database, |settings| {
        settings.rate_limits = RateLimits {
            joins_per_minute: NonZeroU32::new(joins),
            commands_per_second: NonZeroU32::new(commands),
            auth_failures_per_minute: NonZeroU32::new(failures),
            client_ip_header: Some("x-real-ip".parse().unwrap()),
        };
    })
    .await
}

async fn join_from(app: &TestApp, ip: &str, n: u32) -> Reply {
    let request = app
        .client
        .post(format!("{}/members", app.address))
        .header("x-real-ip", ip)
        .json(&json!({ "phoneNo": format!("0107{n:07}"), "nickname": "limited" }));
    app.send(request).await
}

#[track_caller]
fn assert_limited(reply: &Reply, code: &str) {
    reply.assert_problem(429, code);
    let wait: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
}

#[tokio::test]
async fn joins_past_the_limit_of_an_address_answer_429_and_other_addresses_still_join() {
    let app = limited(3, 1000, 1000).await;
    for n in 0..3 {
        assert_eq!(join_from(&app, "192.0.2.1", n).await.status, 201);
    }
    let refused = join_from(&app, "192.0.2.1", 3).await;
    assert_limited(&refused, "rate_limit.joins");
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait <= 20, "one join in 20 s comes back: {wait}");
    assert_eq!(join_from(&app, "192.0.2.2", 3).await.status, 201);
    let store = app.store().await;
    // Read once the four joins show: the log hides commits behind a
    // transaction still open elsewhere on the server (another test's).
    let joins = || async {
        store
            .read_all(None, 1000)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event_type == "MemberJoined")
            .count()
    };
    let joined =
        mileage_testkit::until(std::time::Duration::from_secs(10), joins, |n| *n >= 4).await;
    assert_eq!(joined, 4, "the refused join appended nothing");
}

#[tokio::test]
async fn commands_past_the_limit_of_a_caller_answer_429_and_claim_no_key() {
    let app = limited(1000, 2, 1000).await;
    let member = app.join("01012345678", "earner").await;
    let earn = |key: &'static str, who: String| {
        let request = app
            .client
            .post(format!("{}/members/{member}/points/earn", app.address))
            .bearer_auth(who)
            .header("idempotency-key", key)
            .json(&json!({ "amount": 10 }));
        app.send(request)
    };
    let ops = token("ops", Role::Manager);
    assert_eq!(earn("first", ops.clone()).await.status, 200);
    assert_eq!(earn("second", ops.clone()).await.status, 200);
    let refused = earn("third", ops.clone()).await;
    assert_limited(&refused, "rate_limit.commands");
    assert_eq!(
        earn("other-caller", token("shop", Role::Partner))
            .await
            .status,
        200,
        "another caller has its own quota"
    );
    let retried = mileage_testkit::until_every(
        Duration::from_millis(250),
        Duration::from_secs(30),
        || earn("third", ops.clone()),
        |reply| reply.status != 429,
    )
    .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert!(
        retried.headers.get("idempotent-replayed").is_none(),
        "the 429 was not kept under the key"
    );
}

#[tokio::test]
async fn refused_tokens_from_an_address_are_answered_429_once_they_are_used_up() {
    let app = limited(1000, 1000, 2).await;
    let forged = mileage_service::auth::mint_hs256(
        b"not-the-service-secret-but-32-bytes-long",
        "ops",
        Role::Manager,
        600,
    )
    .unwrap();
    let send = |token: String, ip: &'static str| {
        let request = app
            .client
            .post(format!("{}/dormantMembers", app.address))
            .bearer_auth(token)
            .header("x-real-ip", ip)
            .json(&json!({ "phoneNo": "01011112222", "nickname": "DOR", "memberStatus": "Pre-Dormant", "memberId": "7" }));
        app.send(request)
    };
    for _ in 0..2 {
        send(forged.clone(), "198.51.100.7")
            .await
            .assert_problem(401, "auth.invalid_token");
    }
    assert_limited(
        &send(forged.clone(), "198.51.100.7").await,
        "rate_limit.auth_failures",
    );
    send(forged, "198.51.100.8")
        .await
        .assert_problem(401, "auth.invalid_token");
    let good = send(app.manager_token.clone(), "198.51.100.7").await;
    assert_eq!(
        good.status, 201,
        "a valid token is never refused: {}",
        good.body
    );
}

#[tokio::test]
async fn the_limits_are_on_by_default() {
    let settings = mileage_command_api::config::Settings::with_defaults(
        "postgres://localhost/mileage",
        crate::helpers::JWT_SECRET,
        "test-phone-index-secret",
    )
    .unwrap();
    assert_eq!(settings.rate_limits, RateLimits::default());
    assert!(settings.rate_limits.joins_per_minute.is_some());
}
