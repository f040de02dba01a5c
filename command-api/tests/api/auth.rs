//! The auth matrix: who may do what, and how refusals look.

use mileage_service::auth::{Role, mint_expired_hs256, mint_hs256, mint_hs256_with_kid};
use mileage_service::settings::{JwtKey, JwtKeys};
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

/// Who may do what: a manager everything; a partner system only awards
/// points; a member uses their own points and withdraws themselves, never
/// awards points (not even to themselves) and never acts for another.
#[tokio::test]
async fn the_role_matrix() {
    let app = spawn_app().await;
    let mine = app.join("01020000004", "Me").await;
    let theirs = app.join("01020000005", "Them").await;
    let (me, partner, manager) = (
        token(&mine, Role::Member),
        token("card-issuer", Role::Partner),
        app.manager_token.clone(),
    );
    let earn = |id: &str| format!("/members/{id}/points/earn");
    let use_ = |id: &str| format!("/members/{id}/points/use");
    let amount = json!({ "amount": 3 });
    let cases: [(&str, String, &str, u16); 10] = [
        ("member earns for themselves", earn(&mine), &me, 403),
        ("member earns for another", earn(&theirs), &me, 403),
        ("partner earns", earn(&mine), &partner, 200),
        ("manager earns", earn(&mine), &manager, 200),
        ("member uses their own", use_(&mine), &me, 200),
        ("member uses another's", use_(&theirs), &me, 403),
        ("partner uses", use_(&mine), &partner, 403),
        ("manager uses", use_(&mine), &manager, 200),
        (
            "partner registers a target",
            "/dormantMembers".into(),
            &partner,
            403,
        ),
        (
            "member registers a target",
            "/dormantMembers".into(),
            &me,
            403,
        ),
    ];
    for (what, path, who, status) in cases {
        let body = if path == "/dormantMembers" {
            json!({ "phoneNo": "01020000009", "nickname": "D", "memberId": mine })
        } else {
            amount.clone()
        };
        let reply = app.post_as(Some(who), &path, body).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        if status == 403 {
            reply.assert_problem(403, "auth.forbidden");
        }
    }
    let withdraw = |who: &str, id: &str| {
        app.send(
            app.client
                .delete(format!("{}/members/{id}", app.address))
                .bearer_auth(who),
        )
    };
    withdraw(&partner, &mine)
        .await
        .assert_problem(403, "auth.forbidden");
    withdraw(&me, &theirs)
        .await
        .assert_problem(403, "auth.forbidden");
    assert_eq!(withdraw(&me, &mine).await.status, 200);
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

/// With an issuer and audience configured, a token must name both; and no
/// token may be valid for longer than the configured lifetime.
#[tokio::test]
async fn issuer_audience_and_lifetime_are_enforced_over_http() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let database = mileage_store::testing::fresh_database().await;
    let app = crate::helpers::spawn_app_with(database, |s| {
        s.token_rules = mileage_service::settings::TokenRules {
            issuer: Some("https://id.example".into()),
            audience: Some("mileage".into()),
            max_lifetime: std::time::Duration::from_secs(3600),
        };
    })
    .await;
    let id = app.join("01020000010", "J").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |claims: serde_json::Value| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(crate::helpers::JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let path = format!("/members/{id}/points/earn");
    let earn = |token: String| {
        let path = path.clone();
        let app = &app;
        async move {
            app.post_as(Some(&token), &path, json!({ "amount": 1 }))
                .await
        }
    };
    let good = json!({ "sub": "ops", "role": "manager", "iat": now, "exp": now + 600,
                       "iss": "https://id.example", "aud": "mileage" });
    assert_eq!(earn(sign(good.clone())).await.status, 200);
    let mut no_issuer = good.clone();
    no_issuer.as_object_mut().unwrap().remove("iss");
    earn(sign(no_issuer))
        .await
        .assert_problem(401, "auth.invalid_token");
    let mut other_audience = good.clone();
    other_audience["aud"] = json!("another-service");
    earn(sign(other_audience))
        .await
        .assert_problem(401, "auth.invalid_token");
    let mut too_long = good;
    too_long["exp"] = json!(now + 2 * 3600);
    earn(sign(too_long))
        .await
        .assert_problem(401, "auth.token_lifetime");
}

#[tokio::test]
async fn during_a_key_rotation_tokens_of_both_keys_are_accepted_and_an_unknown_kid_is_refused() {
    const NEW_SECRET: &str = "the-new-jwt-secret-of-at-least-32-bytes";
    let database = mileage_store::testing::fresh_database().await;
    let app = crate::helpers::spawn_app_with(database, |settings| {
        settings.jwt = JwtKeys {
            current: JwtKey::hs256(NEW_SECRET),
            current_id: Some("2026-12".into()),
            previous: Some(("2026-06".into(), JwtKey::hs256(JWT_SECRET))),
        };
    })
    .await;
    let id = app.join("01020000009", "ROT").await;
    let path = format!("/members/{id}/points/earn");
    let earn = |token: String| {
        let (app, path) = (&app, &path);
        async move {
            app.post_as(Some(&token), path, json!({ "amount": 1 }))
                .await
        }
    };
    let minted = |secret: &str, kid: &str| {
        mint_hs256_with_kid(secret.as_bytes(), kid, "ops", Role::Manager, 600).unwrap()
    };
    assert_eq!(earn(minted(NEW_SECRET, "2026-12")).await.status, 200);
    assert_eq!(earn(minted(JWT_SECRET, "2026-06")).await.status, 200);
    assert_eq!(
        earn(token("ops", Role::Manager)).await.status,
        200,
        "a token without kid is tried against each key"
    );
    earn(minted(JWT_SECRET, "2026-12"))
        .await
        .assert_problem(401, "auth.invalid_token");
    earn(minted(NEW_SECRET, "2025-01"))
        .await
        .assert_problem(401, "auth.unknown_key");
}
