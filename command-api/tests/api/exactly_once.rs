//! Exactly-once by construction: the log, not the key table, decides which
//! attempt of a keyed command counts. Every test here runs attempts that the
//! key table cannot tell apart: at the same time on two instances with the
//! table's lease at zero (every attempt takes the key over and runs), or one
//! after another with the key's row deleted (as after the retention period,
//! or a crash before the answer was kept). Whatever the table says, one
//! append counts and every attempt answers it.

use std::time::Duration;

use futures::future::join_all;
use mileage_store::EventStore;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, spawn_app, spawn_app_with};

/// Attempts sent at once in the concurrent tests.
const ATTEMPTS: usize = 12;

/// Two instances over one fresh database whose key table never holds a
/// second attempt back: the key's lease is zero.
async fn two_instances_without_lease() -> (TestApp, TestApp) {
    let database = mileage_store::testing::fresh_database().await;
    let no_lease = |s: &mut mileage_command_api::config::Settings| {
        s.idempotency_lease = Duration::ZERO;
    };
    let first = spawn_app_with(database.clone(), no_lease).await;
    let second = spawn_app_with(database, no_lease).await;
    (first, second)
}

/// `ATTEMPTS` attempts of one keyed command, alternating between the two
/// instances, all sent at once.
async fn at_once(apps: (&TestApp, &TestApp), path: &str, key: &str, body: &Value) -> Vec<Reply> {
    join_all((0..ATTEMPTS).map(|n| {
        let app = if n % 2 == 0 { apps.0 } else { apps.1 };
        app.send(app.keyed(path, key, body))
    }))
    .await
}

/// The answers that ran the command (not the table's courtesy 409 for an
/// attempt still in flight): at least one, and all the same.
#[track_caller]
fn one_answer(replies: &[Reply], status: u16, id_field: &str) -> String {
    let ran: Vec<&Reply> = replies
        .iter()
        .filter(|r| !(r.status == 409 && r.body["code"] == "idempotency.in_flight"))
        .collect();
    assert!(!ran.is_empty(), "some attempt ran");
    for reply in &ran {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(
            reply.body[id_field], ran[0].body[id_field],
            "every attempt answers the same"
        );
    }
    ran[0].body[id_field].as_str().expect("an id").to_owned()
}

/// The log's events of `event_type`, once at least `expected` are visible
/// (a transaction open elsewhere on the server can hide the newest commits
/// from readers for a moment), or whatever is there after 10 s.
async fn events_of(
    app: &TestApp,
    event_type: &str,
    expected: usize,
) -> Vec<mileage_store::RecordedEvent> {
    let store = app.store().await;
    let look = || async {
        let all = store.read_all(None, 100_000).await.expect("read the log");
        all.into_iter()
            .filter(|e| e.event_type == event_type)
            .collect::<Vec<_>>()
    };
    mileage_testkit::until(Duration::from_secs(10), look, |ours| ours.len() >= expected).await
}

/// Forgets every key the table holds (its retention passed, or it never
/// kept the answer).
async fn forget_keys(app: &TestApp) {
    let store = app.store().await;
    let client = store.pool().get().await.expect("a connection");
    client
        .batch_execute("DELETE FROM idempotency_keys; DELETE FROM request_keys")
        .await
        .expect("keys deleted");
}

#[tokio::test]
async fn attempts_of_one_registration_at_once_create_one_target_and_all_answer_it() {
    let (a, b) = two_instances_without_lease().await;
    let body = json!({ "memberId": "m-1", "phoneNo": "01070000001", "nickname": "T" });
    let replies = at_once((&a, &b), "/dormantMembers", "register-1", &body).await;
    let id = one_answer(&replies, 201, "id");
    let registered = events_of(&a, "DormantMemberRegistered", 1).await;
    assert_eq!(registered.len(), 1, "one target for one key");
    assert_eq!(
        registered[0].stream,
        format!("dormantMember-{id}"),
        "the answered target exists"
    );
}

#[tokio::test]
async fn attempts_of_one_join_at_once_join_one_member_and_all_answer_the_one_the_claim_names() {
    let (a, b) = two_instances_without_lease().await;
    let body = json!({ "phoneNo": "01070000002", "nickname": "J" });
    let replies = at_once((&a, &b), "/members", "join-1", &body).await;
    let id = one_answer(&replies, 201, "memberId");
    let joined = events_of(&a, "MemberJoined", 1).await;
    assert_eq!(joined.len(), 1, "one member for one key");
    assert_eq!(
        joined[0].stream,
        format!("member-{id}"),
        "the answered member exists"
    );
    assert_eq!(events_of(&a, "PhoneClaimed", 1).await.len(), 1);
}

#[tokio::test]
async fn attempts_of_one_earn_at_once_earn_once() {
    let (a, b) = two_instances_without_lease().await;
    let member = a.join("01070000003", "E").await;
    let path = format!("/members/{member}/points/earn");
    let replies = at_once((&a, &b), &path, "earn-1", &json!({ "amount": 7 })).await;
    let ran: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.body["code"] != "idempotency.in_flight")
        .collect();
    for reply in &ran {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["balance"], 7, "{}", reply.body);
    }
    assert_eq!(events_of(&a, "PointsEarned", 1).await.len(), 1);
}

#[tokio::test]
async fn a_retry_the_key_table_forgot_answers_the_first_outcome_from_the_log() {
    let app = spawn_app().await;
    let register = json!({ "memberId": "m-2", "phoneNo": "01070000004", "nickname": "R" });
    let join = json!({ "phoneNo": "01070000005", "nickname": "S" });
    let first_target = app.send(app.keyed("/dormantMembers", "r", &register)).await;
    let first_member = app.send(app.keyed("/members", "j", &join)).await;
    let member = first_member.body["memberId"].as_str().unwrap().to_owned();
    let earn = format!("/members/{member}/points/earn");
    let first_earn = app
        .send(app.keyed(&earn, "e", &json!({ "amount": 5 })))
        .await;
    forget_keys(&app).await;

    let target = app.send(app.keyed("/dormantMembers", "r", &register)).await;
    assert_eq!(target.status, 201, "{}", target.body);
    assert_eq!(target.body["id"], first_target.body["id"]);
    let member_again = app.send(app.keyed("/members", "j", &join)).await;
    assert_eq!(member_again.status, 201, "{}", member_again.body);
    assert_eq!(member_again.body["memberId"], first_member.body["memberId"]);
    let earned = app
        .send(app.keyed(&earn, "e", &json!({ "amount": 5 })))
        .await;
    assert_eq!(earned.status, 200, "{}", earned.body);
    assert_eq!(earned.body["position"], first_earn.body["position"]);
    assert_eq!(earned.body["balance"], 5);

    assert_eq!(events_of(&app, "DormantMemberRegistered", 1).await.len(), 1);
    assert_eq!(events_of(&app, "MemberJoined", 1).await.len(), 1);
    assert_eq!(events_of(&app, "PointsEarned", 1).await.len(), 1);
}

#[tokio::test]
async fn another_registration_under_a_forgotten_key_is_refused_by_the_log() {
    let app = spawn_app().await;
    let first = json!({ "memberId": "m-3", "phoneNo": "01070000006", "nickname": "A" });
    let other = json!({ "memberId": "m-4", "phoneNo": "01070000007", "nickname": "B" });
    assert_eq!(
        app.send(app.keyed("/dormantMembers", "k", &first))
            .await
            .status,
        201
    );
    forget_keys(&app).await;
    app.send(app.keyed("/dormantMembers", "k", &other))
        .await
        .assert_problem(422, "idempotency.key_reused");
    assert_eq!(events_of(&app, "DormantMemberRegistered", 1).await.len(), 1);
}

#[tokio::test]
async fn a_retry_recognised_after_other_commands_answers_its_own_outcome_and_keeps_the_state_right()
{
    // Instance a earns with a key; instance b earns meanwhile; a's retry
    // (its key forgotten) decides on the newer state, and the store finds
    // its events at the earlier version: the answer is the first outcome,
    // and a's next command still sees b's earn.
    let database = mileage_store::testing::fresh_database().await;
    let a = crate::helpers::spawn_app_on(database.clone()).await;
    let b = crate::helpers::spawn_app_on(database).await;
    let member = a.join("01070000008", "C").await;
    let earn = format!("/members/{member}/points/earn");
    let first = a.send(a.keyed(&earn, "k", &json!({ "amount": 10 }))).await;
    assert_eq!(first.body["balance"], 10, "{}", first.body);
    let other = b.post(&earn, json!({ "amount": 5 })).await;
    assert_eq!(other.body["balance"], 15, "{}", other.body);
    forget_keys(&a).await;

    let retried = a.send(a.keyed(&earn, "k", &json!({ "amount": 10 }))).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(
        retried.body["balance"], 10,
        "the first outcome: {}",
        retried.body
    );
    assert_eq!(retried.body["position"], first.body["position"]);
    let next = a.post(&earn, json!({ "amount": 1 })).await;
    assert_eq!(next.body["balance"], 16, "{}", next.body);
    assert_eq!(events_of(&a, "PointsEarned", 3).await.len(), 3);
}

#[tokio::test]
async fn a_join_naming_a_release_needs_the_key_that_release_made() {
    let app = spawn_app().await;
    let body = json!({ "phoneNo": "01070000009", "nickname": "X", "rejoining": "1" });
    app.post("/members", body.clone())
        .await
        .assert_problem(403, "auth.forbidden");
    for key in [
        "release-1-2",
        "release-1-2-00000000000000000000000000000000",
    ] {
        app.send(app.keyed("/members", key, &body))
            .await
            .assert_problem(403, "auth.forbidden");
    }
    assert!(events_of(&app, "MemberJoined", 0).await.is_empty());
}

#[tokio::test]
async fn a_release_over_http_names_its_target_and_a_public_key_cannot_block_it() {
    let database = mileage_store::testing::fresh_database().await;
    let members = crate::helpers::spawn_app_on(database.clone()).await;
    let url = members.address.clone();
    let dormant = spawn_app_with(database, move |s| {
        s.join.member_api_url = Some(url);
    })
    .await;
    let target = json!({ "memberId": "m-5", "phoneNo": "01070000010", "nickname": "H" });
    assert_eq!(dormant.post("/dormantMembers", target).await.status, 201);
    assert_eq!(
        dormant
            .post("/dormantMembers/1/dormant", json!({}))
            .await
            .status,
        200
    );
    // What the release's key was before it was made with the secret: a
    // public join under it, with the number taken, would have kept a 409
    // that blocked the release for a day.
    members.join("01070000010", "taken").await;
    let squat = json!({ "phoneNo": "01070000010", "nickname": "Q" });
    for version in 0..4 {
        let key = format!("release-1-{version}");
        members.send(members.keyed("/members", &key, &squat)).await;
    }
    let withdrawn = members.delete("/members/1").await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);

    let released = dormant.post("/dormantMembers/1/release", json!({})).await;
    assert_eq!(released.status, 200, "{}", released.body);
    let rejoined = released.body["rejoinedMemberId"]
        .as_str()
        .unwrap()
        .to_owned();
    let joined = events_of(&dormant, "MemberJoined", 2).await;
    let event = joined
        .iter()
        .find(|e| e.stream == format!("member-{rejoined}"))
        .expect("the re-joined member");
    let data: Value = serde_json::from_slice(&event.data).unwrap();
    assert_eq!(data["rejoining"], "1", "the join names its release: {data}");
}
