use mileage_domain::member::MemberEvent;
use mileage_store::EventStore;
use mileage_store::keys::{KeyStore, PgKeyStore};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app, token};
use mileage_service::auth::Role;

#[tokio::test]
async fn a_member_joins_with_a_phone_number_and_gets_a_sequential_id() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/members",
            json!({ "phoneNo": "01085580000", "nickname": "SEQ1", "memberStatus": "READY" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["memberId"], "1");
    assert_eq!(reply.body["version"], 0);
    let position = reply.body["position"].as_str().expect("a position");
    assert_eq!(reply.headers["x-position"], position);
    assert_eq!(app.join("01012345678", "SEQ2").await, "2");
}

#[tokio::test]
async fn one_phone_number_one_active_member() {
    let app = spawn_app().await;
    app.join("010-8558-0000", "A").await;
    app.post(
        "/members",
        json!({ "phoneNo": "01085580000", "nickname": "B" }),
    )
    .await
    .assert_problem(409, "member.phone_taken");
}

/// A join decides on what its instance knows without reading (a new number
/// is free, a cached claim is as cached); another instance's claim must
/// still win, whatever this one has cached or not.
#[tokio::test]
async fn instances_with_stale_or_cold_caches_never_give_one_number_twice() {
    let a = spawn_app().await;
    let b = crate::helpers::spawn_app_on(a.database_url.clone()).await;
    let first = a.join("01070700000", "A").await;
    // B has never seen the number: it assumes it free, and must find out.
    b.post(
        "/members",
        json!({ "phoneNo": "01070700000", "nickname": "B" }),
    )
    .await
    .assert_problem(409, "member.phone_taken");
    // B caches the number as given back; A claims it again meanwhile.
    let second = b.join("01071710000", "B").await;
    assert_eq!(b.delete(&format!("/members/{second}")).await.status, 200);
    a.join("01071710000", "A again").await;
    b.post(
        "/members",
        json!({ "phoneNo": "01071710000", "nickname": "B again" }),
    )
    .await
    .assert_problem(409, "member.phone_taken");
    // The refused joins left no member behind. (The global log shows a
    // commit once every older transaction on the server has ended, so the
    // three joins may take a moment to be readable there.)
    let store = a.store().await;
    let look = || async {
        let all = store.read_all(None, 1000).await.unwrap();
        all.iter()
            .filter(|e| e.event_type == "MemberJoined")
            .map(|e| e.stream.clone())
            .collect::<Vec<String>>()
    };
    let members = mileage_testkit::until(std::time::Duration::from_secs(30), look, |members| {
        members.len() >= 3
    })
    .await;
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.contains(&format!("member-{first}")));
    // Nor a person key: only the members who hold data have one (the
    // withdrawn one's is gone). A refused join's claim key stays for its
    // other attempts until the sweep finds no claim of it in the log.
    let swept = mileage_store::keys::PgKeyStore::new(store.pool().clone())
        .sweep_unused(&store, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        swept.deleted, 2,
        "the two refused joins' claim keys: {swept:?}"
    );
    let client = store.pool().get().await.unwrap();
    let mut keys: Vec<String> = client
        .query(
            "SELECT key_id FROM person_keys WHERE secret IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    keys.sort();
    // Each claim seals its holder under a key of its own: one per number
    // held now (the withdrawn member's went with them; the refused joins'
    // were swept).
    let (claims, keys): (Vec<String>, Vec<String>) = keys
        .into_iter()
        .partition(|k| k.starts_with("memberPhone-"));
    assert_eq!(claims.len(), 2, "{claims:?}");
    let mut holders: Vec<String> = members
        .into_iter()
        .filter(|m| *m != format!("member-{second}"))
        .collect();
    holders.sort();
    assert_eq!(keys, holders);
}

#[tokio::test]
async fn points_are_earned_used_and_never_overdrawn() {
    let app = spawn_app().await;
    let id = app.join("01011112222", "P").await;
    let earned = app
        .post(
            &format!("/members/{id}/points/earn"),
            json!({ "amount": 100 }),
        )
        .await;
    assert_eq!(
        (earned.status, earned.body["balance"].clone()),
        (200, json!(100))
    );
    let used = app
        .post(
            &format!("/members/{id}/points/use"),
            json!({ "amount": 30 }),
        )
        .await;
    assert_eq!(
        (used.status, used.body["balance"].clone()),
        (200, json!(70))
    );
    let over = app
        .post(
            &format!("/members/{id}/points/use"),
            json!({ "amount": 71 }),
        )
        .await;
    over.assert_problem(422, "member.insufficient_points");
    assert_eq!(over.body["field"], "amount");
}

#[tokio::test]
async fn concurrent_uses_that_together_overdraw_never_both_succeed() {
    let app = spawn_app().await;
    let id = app.join("01033334444", "C").await;
    app.post(
        &format!("/members/{id}/points/earn"),
        json!({ "amount": 100 }),
    )
    .await;
    let path = format!("/members/{id}/points/use");
    let (a, b) = tokio::join!(
        app.post(&path, json!({ "amount": 60 })),
        app.post(&path, json!({ "amount": 60 }))
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 422], "{} / {}", a.body, b.body);
}

#[tokio::test]
async fn commands_for_unknown_members_are_not_found() {
    let app = spawn_app().await;
    app.post("/members/404/points/earn", json!({ "amount": 1 }))
        .await
        .assert_problem(404, "member.not_found");
    app.delete("/members/404")
        .await
        .assert_problem(404, "member.not_found");
}

#[tokio::test]
async fn withdrawal_forfeits_points_erases_the_person_and_frees_the_number() {
    let app = spawn_app().await;
    let id = app.join("01055556666", "W").await;
    app.post(
        &format!("/members/{id}/points/earn"),
        json!({ "amount": 40 }),
    )
    .await;
    let reply = app.delete(&format!("/members/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["memberStatus"], "WITHDRAWN");

    let store = app.store().await;
    let events = store
        .read_stream(&format!("member-{id}"), 0, 10)
        .await
        .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "MemberJoined",
            "PointsEarned",
            "PointsForfeited",
            "MemberWithdrawn"
        ]
    );
    let MemberEvent::PointsForfeited(forfeited) = events[2].decode::<MemberEvent>().unwrap() else {
        panic!("third event should be PointsForfeited");
    };
    assert_eq!(forfeited.amount.0, 40);
    let keys = PgKeyStore::new(store.pool().clone());
    assert_eq!(
        keys.get(&format!("member-{id}")).await.unwrap(),
        None,
        "personal data erased"
    );

    app.post(
        &format!("/members/{id}/points/earn"),
        json!({ "amount": 1 }),
    )
    .await
    .assert_problem(409, "member.withdrawn");
    app.join("01055556666", "W again").await;
}

#[tokio::test]
async fn every_event_carries_the_requests_correlation_id() {
    let app = spawn_app().await;
    let correlation = uuid::Uuid::new_v4();
    let reply = app
        .send(
            app.client
                .post(format!("{}/members", app.address))
                .header("X-Correlation-Id", correlation.to_string())
                .json(&json!({ "phoneNo": "01077778888", "nickname": "K" })),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.headers["x-correlation-id"],
        correlation.to_string().as_str()
    );
    let ours = app.events_correlated_with(correlation, 2).await;
    assert_eq!(ours.len(), 2, "the phone claim and the join");
    assert!(
        ours.iter()
            .all(|e| e.metadata.causation_id == ours[0].metadata.causation_id)
    );
}

/// The actors the events of a request with a fresh correlation id record.
async fn actors_of(app: &TestApp, request: reqwest::RequestBuilder, events: usize) -> Vec<String> {
    let correlation = uuid::Uuid::new_v4();
    let reply = app
        .send(request.header("X-Correlation-Id", correlation.to_string()))
        .await;
    assert!(reply.status < 300, "{}", reply.body);
    app.events_correlated_with(correlation, events)
        .await
        .iter()
        .map(|e| {
            e.metadata
                .actor
                .as_ref()
                .map_or("none".into(), ToString::to_string)
        })
        .collect()
}

#[tokio::test]
async fn every_event_records_the_verified_caller_as_its_actor() {
    let app = spawn_app().await;
    let join = json!({ "phoneNo": "01077770001", "nickname": "A" });
    let url = |path: &str| format!("{}{path}", app.address);
    let joined = actors_of(&app, app.client.post(url("/members")).json(&join), 2).await;
    assert_eq!(joined, ["public", "public"], "the join needs no token");
    let id = app.join("01077770002", "B").await;
    let earn = url(&format!("/members/{id}/points/earn"));
    let shop = token("shop", Role::Partner);
    let partner = app.client.post(&earn).bearer_auth(&shop);
    let earned = actors_of(&app, partner.json(&json!({ "amount": 5 })), 1).await;
    assert_eq!(earned, ["partner:shop"]);
    let keyed = app
        .client
        .post(&earn)
        .bearer_auth(&app.manager_token)
        .header("Idempotency-Key", "actor-1")
        .json(&json!({ "amount": 5 }));
    assert_eq!(
        actors_of(&app, keyed, 1).await,
        ["manager:ops"],
        "keyed too"
    );
    let member = token(&id, Role::Member);
    let spend = app
        .client
        .post(url(&format!("/members/{id}/points/use")))
        .bearer_auth(&member)
        .json(&json!({ "amount": 1 }));
    assert_eq!(actors_of(&app, spend, 1).await, [format!("member:{id}")]);

    for sub in ["x".repeat(129), "kim\nroot".into(), String::new()] {
        let odd = token(&sub, Role::Manager);
        for key in [None, Some("odd")] {
            let mut request = app.client.post(&earn).bearer_auth(&odd);
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            app.send(request.json(&json!({ "amount": 1 })))
                .await
                .assert_problem(401, "auth.invalid_subject");
        }
    }
}

#[tokio::test]
async fn replicas_with_stale_caches_still_decide_on_the_latest_state() {
    let one = spawn_app().await;
    let two = crate::helpers::spawn_app_on(one.database_url.clone()).await;
    let id = one.join("01099990000", "R").await;
    let earn = format!("/members/{id}/points/earn");
    let spend = format!("/members/{id}/points/use");
    // Each replica caches the member, then the other one moves it on.
    for round in 1..=5 {
        let app = if round % 2 == 0 { &one } else { &two };
        let reply = app.post(&earn, json!({ "amount": 10 })).await;
        assert_eq!(reply.body["balance"], round * 10, "{}", reply.body);
    }
    let used = one.post(&spend, json!({ "amount": 50 })).await;
    assert_eq!(used.body["balance"], 0, "{}", used.body);
    two.post(&spend, json!({ "amount": 1 }))
        .await
        .assert_problem(422, "member.insufficient_points");
}

#[tokio::test]
async fn a_member_with_version_1_events_is_commanded_through_the_upcaster() {
    let app = spawn_app().await;
    let id = app.join("01030009999", "veteran").await;
    let store = app.store().await;
    let v1: Vec<mileage_store::NewEvent> = (1..=3u64)
        .map(|n| mileage_store::NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "PointsEarned".into(),
            schema_version: 1,
            data: serde_json::to_vec(&json!({
                "memberId": id, "amount": 10, "balance": 10 * n, "at": "2025-01-01T00:00:00Z"
            }))
            .unwrap()
            .into(),
            causation: mileage_domain::envelope::Causation::root(uuid::Uuid::new_v4()),
            recorded_at: None,
            request: None,
        })
        .collect();
    store
        .append(
            &format!("member-{id}"),
            mileage_store::ExpectedVersion::Exact(0),
            &v1,
        )
        .await
        .unwrap();
    let reply = app
        .post(
            &format!("/members/{id}/points/use"),
            json!({ "amount": 25 }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["balance"], 5, "30 earned under v1, 25 used");
    let stream = store
        .read_stream(&format!("member-{id}"), 0, 10)
        .await
        .unwrap();
    let versions: Vec<u16> = stream.iter().map(|e| e.schema_version).collect();
    assert_eq!(
        versions,
        [1, 1, 1, 1, 1],
        "stored events are never rewritten"
    );
    let MemberEvent::PointsEarned(earned) = stream[1].decode::<MemberEvent>().unwrap() else {
        panic!("PointsEarned")
    };
    assert_eq!(earned.expires_at.to_rfc3339(), "2026-01-01T00:00:00+00:00");
}

#[tokio::test]
async fn amounts_and_balances_stay_within_the_operators_limits() {
    let database = mileage_store::testing::fresh_database().await;
    let app = crate::helpers::spawn_app_with(database, |s| {
        s.points = mileage_domain::member::PointLimits::new(100, 250).unwrap();
    })
    .await;
    let id = app.join("01033330000", "L").await;
    let path = format!("/members/{id}/points/earn");
    let earn = |amount: i64| app.post(&path, json!({ "amount": amount }));
    earn(101)
        .await
        .assert_problem(422, "member.amount_too_large");
    earn(i64::MAX)
        .await
        .assert_problem(422, "member.amount_too_large");
    assert_eq!(earn(100).await.status, 200);
    assert_eq!(earn(100).await.status, 200);
    let refused = earn(51).await;
    refused.assert_problem(422, "member.balance_limit");
    assert_eq!(refused.body["field"], "amount", "{}", refused.body);
    let reached = earn(50).await;
    assert_eq!(
        (reached.status, reached.body["balance"].clone()),
        (200, json!(250))
    );
    app.post(
        &format!("/members/{id}/points/use"),
        json!({ "amount": 101 }),
    )
    .await
    .assert_problem(422, "member.amount_too_large");
}

#[tokio::test]
async fn every_member_answer_names_its_id_and_status_the_same_way() {
    let app = spawn_app().await;
    let joined = app
        .post(
            "/members",
            json!({ "phoneNo": "01085580077", "nickname": "SHAPE", "memberStatus": "READY" }),
        )
        .await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    let id = joined.body["id"].as_str().expect("id").to_owned();
    assert_eq!(joined.body["memberId"], id.as_str());
    assert_eq!(joined.body["memberStatus"], "READY");
    let earned = app
        .post(
            &format!("/members/{id}/points/earn"),
            json!({ "amount": 5 }),
        )
        .await;
    assert_eq!(
        (&earned.body["id"], &earned.body["memberStatus"]),
        (&json!(id), &json!("READY")),
        "{}",
        earned.body
    );
    let left = app.delete(&format!("/members/{id}")).await;
    assert_eq!(
        (&left.body["id"], &left.body["memberStatus"]),
        (&json!(id), &json!("WITHDRAWN")),
        "{}",
        left.body
    );
}

/// An operator takes a member out of the dormancy policy with a reason and
/// puts them back; the log records both with the operator, a repeat
/// changes nothing, and nobody else may.
#[tokio::test]
async fn an_operator_excludes_a_member_from_the_policy_with_a_reason() {
    let app = spawn_app().await;
    let id = app.join("01077770101", "Q").await;
    let path = format!("/members/{id}/dormancy-exclusion");
    let url = format!("{}{path}", app.address);
    let put =
        |token: &str, body: serde_json::Value| app.client.put(&url).bearer_auth(token).json(&body);
    let reason = json!({ "reason": " VIP contract " });
    let out = app.send(put(&app.manager_token, reason.clone())).await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out.body["position"].is_string(), "{}", out.body);
    let again = app.send(put(&app.manager_token, reason.clone())).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(
        again.body["position"].is_null(),
        "already out: nothing appended"
    );
    for odd in [
        json!({ "reason": "" }),
        json!({ "reason": "a\u{7}b" }),
        json!({ "reason": "x".repeat(201) }),
    ] {
        app.send(put(&app.manager_token, odd))
            .await
            .assert_problem(400, "validation.reason");
    }
    let member = token(&id, Role::Member);
    app.send(put(&member, reason.clone()))
        .await
        .assert_problem(403, "auth.forbidden");
    // A PUT is a command: its key is checked and honoured like any other.
    app.send(put(&app.manager_token, reason.clone()).header("Idempotency-Key", "has space"))
        .await
        .assert_problem(400, "request.bad_header");
    let back = app.delete(&path).await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert!(back.body["position"].is_string());
    let events = app
        .store()
        .await
        .read_stream(&format!("member-{id}"), 0, 10)
        .await
        .unwrap();
    let told: Vec<(String, String, Option<String>)> = events
        .iter()
        .map(|e| {
            let reason = match e.decode::<MemberEvent>().unwrap() {
                MemberEvent::ExcludedFromDormancy(e) => Some(e.reason),
                _ => None,
            };
            (
                e.event_type.clone(),
                e.metadata
                    .actor
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                reason,
            )
        })
        .collect();
    assert_eq!(
        told[1..],
        [
            (
                "ExcludedFromDormancy".into(),
                "manager:ops".into(),
                Some("VIP contract".into())
            ),
            ("IncludedInDormancy".into(), "manager:ops".into(), None),
        ]
    );
    app.send(
        app.client
            .put(format!("{}/members/404/dormancy-exclusion", app.address))
            .bearer_auth(&app.manager_token)
            .json(&reason),
    )
    .await
    .assert_problem(404, "member.not_found");
}
