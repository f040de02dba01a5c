//! The auth matrix: who may do what, and how refusals look.

use mileage_service::auth::{Role, mint_expired_hs256, mint_hs256};
use serde_json::json;

use crate::helpers::{JWT_SECRET, spawn_app, token};

#[tokio::test]
async fn joining_needs_no_token() {
    let app = spawn_app().await;
    let reply = app
        .post_as(
            None,
            "/members",
            json!({ "phoneNo": "01020000001", "nickname": "pub" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn no_token_is_401_with_a_challenge() {
    let app = spawn_app().await;
    let id = app.join("01020000002", "A").await;
    let reply = app
        .post_as(
            None,
            &format!("/members/{id}/points/earn"),
            json!({ "amount": 1 }),
        )
        .await;
    reply.assert_problem(401, "auth.missing_token");
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    app.post_as(
        None,
        "/dormantMembers",
        json!({ "phoneNo": "01020000009", "nickname": "D", "memberId": "1" }),
    )
    .await
    .assert_problem(401, "auth.missing_token");
}

#[tokio::test]
async fn expired_and_forged_tokens_are_401() {
    let app = spawn_app().await;
    let id = app.join("01020000003", "B").await;
    let path = format!("/members/{id}/points/earn");
    let expired = mint_expired_hs256(JWT_SECRET.as_bytes(), "ops", Role::Manager).unwrap();
    app.post_as(Some(&expired), &path, json!({ "amount": 1 }))
        .await
        .assert_problem(401, "auth.token_expired");
    let forged = mint_hs256(
        b"another-secret-of-at-least-32-bytes!!",
        "ops",
        Role::Manager,
        600,
    )
    .unwrap();
    app.post_as(Some(&forged), &path, json!({ "amount": 1 }))
        .await
        .assert_problem(401, "auth.invalid_token");
    app.post_as(Some("not.a.jwt"), &path, json!({ "amount": 1 }))
        .await
        .assert_problem(401, "auth.invalid_token");
}

#[tokio::test]
async fn a_member_acts_for_themselves_only() {
    let app = spawn_app().await;
    let mine = app.join("01020000004", "Me").await;
    let theirs = app.join("01020000005", "Them").await;
    let me = token(&mine, Role::Member);
    let ok = app
        .post_as(
            Some(&me),
            &format!("/members/{mine}/points/earn"),
            json!({ "amount": 3 }),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    app.post_as(
        Some(&me),
        &format!("/members/{theirs}/points/earn"),
        json!({ "amount": 3 }),
    )
    .await
    .assert_problem(403, "auth.forbidden");
}

#[tokio::test]
async fn dormant_management_needs_the_manager_role() {
    let app = spawn_app().await;
    let member = token("2", Role::Member);
    let register = json!({ "phoneNo": "01020000006", "nickname": "D", "memberId": "2" });
    app.post_as(Some(&member), "/dormantMembers", register.clone())
        .await
        .assert_problem(403, "auth.forbidden");
    assert_eq!(app.post("/dormantMembers", register).await.status, 201);
    app.post_as(Some(&member), "/dormantMembers/1/dormant", json!({}))
        .await
        .assert_problem(403, "auth.forbidden");
}

#[tokio::test]
async fn a_member_may_release_their_own_dormant_target_only() {
    let app = spawn_app().await;
    app.post(
        "/dormantMembers",
        json!({ "phoneNo": "01020000007", "nickname": "D", "memberId": "2" }),
    )
    .await;
    app.patch("/dormantMembers/1", json!({ "memberStatus": "DORMANT" }))
        .await;
    app.post_as(
        Some(&token("3", Role::Member)),
        "/dormantMembers/1/release",
        json!({}),
    )
    .await
    .assert_problem(403, "auth.forbidden");
    let released = app
        .post_as(
            Some(&token("2", Role::Member)),
            "/dormantMembers/1/release",
            json!({}),
        )
        .await;
    assert_eq!(released.status, 200, "{}", released.body);
    assert_eq!(released.body["memberStatus"], "CLEARED");
}
