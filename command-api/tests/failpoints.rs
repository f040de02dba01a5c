//! Crash safety at step boundaries, with failpoints (`fail`, compiled into
//! test builds only). Each test stops a command at a boundary (after its
//! append committed but before the answer got out; after the command but
//! before its answer was kept under its key; after a withdrawal but before
//! the key deletion), then retries it the way a client or the gateway
//! does, with the same `Idempotency-Key`, and checks that the operation
//! happened exactly once.
//!
//! Failpoints are process-wide, so this binary holds only these tests, and
//! `FailScenario` runs them one at a time.

#[path = "api/helpers.rs"]
#[allow(dead_code, reason = "shared with the api tests, which use all of it")]
mod helpers;

use std::time::Duration;

use fail::FailScenario;
use mileage_store::EventStore;
use serde_json::{Value, json};

use helpers::{Reply, TestApp, spawn_app, spawn_app_with};

async fn keyed(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("Idempotency-Key", key)
        .bearer_auth(&app.manager_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.send(request).await
}

async fn types(app: &TestApp, stream: &str) -> Vec<String> {
    app.store()
        .await
        .read_stream(stream, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test]
async fn an_earn_whose_answer_was_lost_is_applied_once_when_retried_with_its_key() {
    let scenario = FailScenario::setup();
    let app = spawn_app().await;
    let id = app.join("01070000001", "fp").await;
    let path = format!("/members/{id}/points/earn");

    fail::cfg("executor::after_append", "return").unwrap();
    let lost = keyed(
        &app,
        reqwest::Method::POST,
        &path,
        "earn-1",
        Some(json!({ "amount": 30 })),
    )
    .await;
    lost.assert_problem(503, "service.unavailable");
    fail::remove("executor::after_append");

    let retried = keyed(
        &app,
        reqwest::Method::POST,
        &path,
        "earn-1",
        Some(json!({ "amount": 30 })),
    )
    .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["balance"], 30, "the first outcome");
    assert_eq!(
        types(&app, &format!("member-{id}")).await,
        ["MemberJoined", "PointsEarned"]
    );

    let other = keyed(
        &app,
        reqwest::Method::POST,
        &path,
        "earn-2",
        Some(json!({ "amount": 30 })),
    )
    .await;
    assert_eq!(other.body["balance"], 60, "another key is another command");
    scenario.teardown();
}

#[tokio::test]
async fn a_join_whose_answer_was_lost_answers_the_same_member_and_holds_the_number_once() {
    let scenario = FailScenario::setup();
    let app = spawn_app().await;
    let body = json!({ "phoneNo": "01070000002", "nickname": "fp" });

    fail::cfg("executor::after_append", "return").unwrap();
    let lost = keyed(
        &app,
        reqwest::Method::POST,
        "/members",
        "join-1",
        Some(body.clone()),
    )
    .await;
    lost.assert_problem(503, "service.unavailable");
    fail::remove("executor::after_append");

    let retried = keyed(
        &app,
        reqwest::Method::POST,
        "/members",
        "join-1",
        Some(body.clone()),
    )
    .await;
    assert_eq!(retried.status, 201, "{}", retried.body);
    let member = retried.body["memberId"].as_str().unwrap().to_owned();
    assert_eq!(
        types(&app, &format!("member-{member}")).await,
        ["MemberJoined"]
    );
    let store = app.store().await;
    let all = store.read_all(None, 1000).await.unwrap();
    let claims: Vec<_> = all
        .iter()
        .filter(|e| e.event_type == "PhoneClaimed")
        .collect();
    assert_eq!(claims.len(), 1, "the number was claimed once");
    let joined: Vec<_> = all
        .iter()
        .filter(|e| e.event_type == "MemberJoined")
        .collect();
    assert_eq!(joined.len(), 1, "one member");
    assert_eq!(
        claims[0].position.commit, joined[0].position.commit,
        "in one transaction"
    );

    let someone_else = app.post("/members", body).await;
    someone_else.assert_problem(409, "member.phone_taken");
    scenario.teardown();
}

/// The ids of the keys that still open something, starting with `prefix`,
/// in order: what the key table holds, which these tests are about.
async fn live_keys(store: &mileage_store::postgres::PgEventStore, prefix: &str) -> Vec<String> {
    let rows = store
        .pool()
        .get()
        .await
        .unwrap()
        .query(
            "SELECT key_id FROM person_keys
              WHERE secret IS NOT NULL AND starts_with(key_id, $1) ORDER BY key_id",
            &[&prefix],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn a_key_left_by_a_join_stopped_before_its_append_is_swept_and_used_keys_stay() {
    let scenario = FailScenario::setup();
    let app = spawn_app().await;
    let body = json!({ "phoneNo": "01070000009", "nickname": "fp" });
    fail::cfg("join::after_key", "return").unwrap();
    let stopped = keyed(
        &app,
        reqwest::Method::POST,
        "/members",
        "join-9",
        Some(body.clone()),
    )
    .await;
    assert_eq!(stopped.status, 500, "{}", stopped.body);
    fail::remove("join::after_key");
    let retried = keyed(
        &app,
        reqwest::Method::POST,
        "/members",
        "join-9",
        Some(body),
    )
    .await;
    assert_eq!(retried.status, 201, "{}", retried.body);
    let member = retried.body["memberId"].as_str().unwrap().to_owned();

    let store = app.store().await;
    let key_ids = || live_keys(&store, "");
    let before = key_ids().await;
    assert_eq!(
        before.len(),
        3,
        "the stopped join's key, the member's, and the claim's (one name for every attempt): {before:?}"
    );
    let keys = mileage_store::keys::PgKeyStore::new(store.pool().clone());
    let young = keys
        .sweep_unused(&store, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        young,
        mileage_store::keys::Swept::default(),
        "within the grace, nothing"
    );
    let swept = keys.sweep_unused(&store, Duration::ZERO).await.unwrap();
    assert_eq!((swept.deleted, swept.in_use), (1, 2), "{swept:?}");
    let left = key_ids().await;
    assert_eq!(left[0], format!("member-{member}"), "{left:?}");
    assert!(left[1].starts_with("memberPhone-"), "{left:?}");
    let again = keys.sweep_unused(&store, Duration::ZERO).await.unwrap();
    assert_eq!(
        again,
        mileage_store::keys::Swept::default(),
        "each key is checked once"
    );
    let read = app
        .client
        .delete(format!("{}/members/{member}", app.address))
        .bearer_auth(&app.manager_token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "the member is unaffected");
    scenario.teardown();
}

#[tokio::test]
async fn a_refused_joins_claim_key_stays_for_its_other_attempts_and_is_swept_once_the_log_shows_no_claim_of_it()
 {
    let scenario = FailScenario::setup();
    let app = spawn_app().await;
    let body = json!({ "phoneNo": "01070000019", "nickname": "holder" });
    let held = keyed(&app, reqwest::Method::POST, "/members", "hold", Some(body)).await;
    assert_eq!(held.status, 201, "{}", held.body);
    let body = json!({ "phoneNo": "01070000019", "nickname": "second" });
    let refused = keyed(&app, reqwest::Method::POST, "/members", "late", Some(body)).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.body["code"], "member.phone_taken");

    let store = app.store().await;
    let claim_keys = || live_keys(&store, "memberPhone-");
    // An attempt of the refused join running beside this one (a store that
    // appends in order, a retry at once) may be sealing its claim with it.
    assert_eq!(
        claim_keys().await.len(),
        2,
        "the holder's and the refused join's"
    );
    let keys = mileage_store::keys::PgKeyStore::new(store.pool().clone());
    let swept = keys.sweep_unused(&store, Duration::ZERO).await.unwrap();
    assert_eq!(swept.deleted, 1, "{swept:?}");
    let left = claim_keys().await;
    let claim = store
        .read_all(None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "PhoneClaimed")
        .unwrap();
    assert_eq!(
        left,
        [format!("{}#{}", claim.stream, claim.event_id)],
        "the holder's claim still opens"
    );
    scenario.teardown();
}

#[tokio::test]
async fn a_withdrawal_stopped_after_its_append_completes_once_when_retried() {
    let scenario = FailScenario::setup();
    let app = spawn_app().await;
    let id = app.join("01070000003", "fp").await;
    app.post(
        &format!("/members/{id}/points/earn"),
        json!({ "amount": 5 }),
    )
    .await;
    let path = format!("/members/{id}");

    fail::cfg("withdraw::before_key_delete", "return").unwrap();
    let stopped = keyed(&app, reqwest::Method::DELETE, &path, "leave-1", None).await;
    assert_eq!(stopped.status, 500, "{}", stopped.body);
    fail::remove("withdraw::before_key_delete");
    assert_eq!(
        types(&app, &format!("member-{id}")).await,
        [
            "MemberJoined",
            "PointsEarned",
            "PointsForfeited",
            "MemberWithdrawn"
        ],
        "forfeit and withdrawal are in the log"
    );

    let retried = keyed(&app, reqwest::Method::DELETE, &path, "leave-1", None).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(
        types(&app, &format!("member-{id}")).await,
        [
            "MemberJoined",
            "PointsEarned",
            "PointsForfeited",
            "MemberWithdrawn"
        ],
        "nothing twice"
    );
    let store = app.store().await;
    let keys = store
        .pool()
        .get()
        .await
        .unwrap()
        .query(
            "SELECT key_id FROM person_keys WHERE key_id = $1 AND secret IS NOT NULL",
            &[&format!("member-{id}")],
        )
        .await
        .unwrap();
    assert!(keys.is_empty(), "the retry deleted the person key");
    let all = store.read_all(None, 1000).await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|e| e.event_type == "PhoneReleased")
            .count(),
        1,
        "the number was given back once, with the withdrawal"
    );
    let rejoin = app
        .post(
            "/members",
            json!({ "phoneNo": "01070000003", "nickname": "back" }),
        )
        .await;
    assert_eq!(
        rejoin.status, 201,
        "the number is free again: {}",
        rejoin.body
    );
    scenario.teardown();
}

/// On EventStoreDB, where nothing beside the events is written in an
/// append's transaction, a keyed command claims its key first: a second
/// attempt while the first runs is told so (409), and once the first
/// attempt's lease passes (its request died) a retry runs, finds the first
/// attempt's earn in the log and answers it.
#[tokio::test]
async fn a_key_whose_request_died_in_flight_is_taken_over_after_its_lease() {
    let scenario = FailScenario::setup();
    let double = mileage_store::esdb_double::Double::start().await;
    let url = double.url();
    let app = spawn_app_with(mileage_store::testing::fresh_database().await, |s| {
        s.idempotency_lease = Duration::from_secs(2);
        s.eventstoredb_url = Some(url);
    })
    .await;
    let id = app.join("01070000004", "fp").await;
    let path = format!("/members/{id}/points/earn");
    let body = json!({ "amount": 7 });

    fail::cfg("idempotency::before_record", "return").unwrap();
    let died = keyed(
        &app,
        reqwest::Method::POST,
        &path,
        "earn-lease",
        Some(body.clone()),
    )
    .await;
    assert_eq!(died.status, 500, "{}", died.body);
    fail::remove("idempotency::before_record");

    let at_once = keyed(
        &app,
        reqwest::Method::POST,
        &path,
        "earn-lease",
        Some(body.clone()),
    )
    .await;
    at_once.assert_problem(409, "idempotency.in_flight");
    let metrics = mileage_testkit::scrape(&app.client, &app.address).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("idempotency_in_flight_total ") && !l.ends_with(" 0")),
        "the refusal is counted for the alert: {metrics}"
    );

    let taken_over = mileage_testkit::until_every(
        Duration::from_millis(250),
        Duration::from_secs(60),
        || {
            keyed(
                &app,
                reqwest::Method::POST,
                &path,
                "earn-lease",
                Some(body.clone()),
            )
        },
        |reply| reply.status != 409,
    )
    .await;
    assert_eq!(taken_over.status, 200, "{}", taken_over.body);
    assert_eq!(
        taken_over.body["balance"], 7,
        "the earn the dead request made, once"
    );
    let member_stream = format!("member-{id}");
    let logged: Vec<String> = double
        .log()
        .into_iter()
        .filter(|e| e.stream == member_stream)
        .map(|e| e.event_type)
        .collect();
    assert_eq!(logged, ["MemberJoined", "PointsEarned"]);

    let replayed = keyed(&app, reqwest::Method::POST, &path, "earn-lease", Some(body)).await;
    assert_eq!(
        replayed.headers["idempotent-replayed"], "true",
        "now kept under the key"
    );
    scenario.teardown();
}

/// On PostgreSQL nothing is claimed: an attempt of a keyed command runs at
/// once even while another one of it is stalled, and the first append
/// wins. Here the first attempt stalls after its append and a second one
/// is sent meanwhile, with a lease of an hour: the second appends nothing
/// and answers the first's earn (no 409, no wait for a lease), and the
/// first answers it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_beside_a_stalled_one_answers_the_first_append_without_waiting_for_it() {
    let scenario = FailScenario::setup();
    let app = spawn_app_with(mileage_store::testing::fresh_database().await, |s| {
        s.idempotency_lease = Duration::from_secs(3600);
    })
    .await;
    let id = app.join("01070000014", "stall").await;
    let path = format!("/members/{id}/points/earn");
    let body = json!({ "amount": 7 });

    // The first attempt to pass this point stalls there for a while (its
    // thread asleep); later ones go on.
    fail::cfg("executor::after_append", "1*sleep(3000)->off").unwrap();
    let stalled = tokio::spawn({
        let (client, address, token) = (
            app.client.clone(),
            app.address.clone(),
            app.manager_token.clone(),
        );
        let (path, body) = (path.clone(), body.clone());
        async move {
            client
                .post(format!("{address}{path}"))
                .header("Idempotency-Key", "earn-stall")
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
        }
    });
    mileage_testkit::eventually(
        "the first attempt's earn to be in the log",
        Duration::from_secs(30),
        || async {
            let logged = types(&app, &format!("member-{id}")).await;
            (logged.len() == 2).then_some(())
        },
    )
    .await;
    let second = keyed(
        &app,
        reqwest::Method::POST,
        &path,
        "earn-stall",
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (second.status, second.body["balance"].clone()),
        (200, json!(7)),
        "{}",
        second.body
    );
    assert_eq!(second.headers["idempotent-replayed"], "true");
    fail::remove("executor::after_append");
    let first = stalled
        .await
        .expect("the stalled attempt")
        .expect("its answer");
    assert_eq!(first.status(), 200);
    let first: serde_json::Value = first.json().await.expect("json");
    assert_eq!(first["balance"], 7);
    assert_eq!(
        types(&app, &format!("member-{id}")).await,
        ["MemberJoined", "PointsEarned"]
    );
    scenario.teardown();
}

/// A dormant target for a fresh member, marked dormant; its id.
async fn dormant_target(app: &TestApp, phone: &str) -> String {
    let member = app.join(phone, "sleepy").await;
    let body = json!({ "memberId": member, "phoneNo": phone, "nickname": "sleepy" });
    let registered = app.post("/dormantMembers", body).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let id = registered.body["id"].as_str().unwrap().to_owned();
    let marked = app
        .post(&format!("/dormantMembers/{id}/dormant"), json!({}))
        .await;
    assert_eq!(marked.status, 200, "{}", marked.body);
    // The first member gives the number back, so the release can re-join.
    assert_eq!(app.delete(&format!("/members/{member}")).await.status, 200);
    id
}

async fn rejoins(app: &TestApp) -> Vec<mileage_store::RecordedEvent> {
    let store = app.store().await;
    store
        .read_all(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.event_type == "MemberJoined"
                && serde_json::from_slice::<Value>(&e.data).unwrap()["rejoining"].is_string()
        })
        .collect()
}

#[tokio::test]
async fn a_release_stopped_between_its_join_and_its_clear_finishes_with_the_same_member() {
    let scenario = FailScenario::setup();
    let app = spawn_app().await;
    let id = dormant_target(&app, "01070000005").await;
    let path = format!("/dormantMembers/{id}/release");

    fail::cfg("release::after_join", "return").unwrap();
    let stopped = keyed(
        &app,
        reqwest::Method::POST,
        &path,
        "release-1",
        Some(json!({})),
    )
    .await;
    assert_eq!(stopped.status, 500, "{}", stopped.body);
    fail::remove("release::after_join");
    assert_eq!(rejoins(&app).await.len(), 1, "the join happened");
    assert_eq!(
        types(&app, &format!("dormantMember-{id}")).await,
        ["DormantMemberRegistered", "DormantMemberChanged"],
        "the target is not cleared yet"
    );

    // Retried without the key (a different client, say): the release is
    // derived from the target, so it finds its join and finishes.
    let retried = app.post(&path, json!({})).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["memberStatus"], "CLEARED");
    let rejoined = rejoins(&app).await;
    assert_eq!(rejoined.len(), 1, "nobody joined twice");
    let member: Value = serde_json::from_slice(&rejoined[0].data).unwrap();
    assert_eq!(retried.body["rejoinedMemberId"], member["memberId"]);
    scenario.teardown();
}

/// Appends the destruction of target `id` (at version 1, dormant), as the
/// destruction process manager would, from a thread of its own: failpoint
/// callbacks run synchronously inside the handler.
fn destroy_from_outside(database_url: String, id: String) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = mileage_store::postgres::PgEventStore::connect(&database_url)
                .await
                .unwrap();
            let destroyed = mileage_domain::dormant_member::DormantMemberDestroyed {
                id: mileage_domain::ids::DormantMemberId::parse(&id).unwrap(),
                member_id: mileage_domain::ids::MemberId::parse("1").unwrap(),
                reason: "notice failed".into(),
                at: chrono::Utc::now(),
            };
            store
                .append(
                    &format!("dormantMember-{id}"),
                    mileage_store::ExpectedVersion::Exact(1),
                    &[mileage_store::NewEvent::from_domain(
                        uuid::Uuid::now_v7(),
                        &mileage_domain::dormant_member::DormantMemberEvent::from(destroyed),
                        mileage_domain::envelope::Causation::root(uuid::Uuid::now_v7()),
                    )],
                )
                .await
                .unwrap();
        });
    })
    .join()
    .expect("the destruction is appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_destroyed_during_its_release_leaves_no_member_with_its_data() {
    let scenario = FailScenario::setup();
    let app = spawn_app().await;
    let id = dormant_target(&app, "01070000006").await;

    // Between the release's join and its clear, the target is destroyed.
    let (database_url, target) = (app.database_url.clone(), id.clone());
    fail::cfg_callback("release::after_join", move || {
        destroy_from_outside(database_url.clone(), target.clone());
    })
    .unwrap();
    let answer = app
        .post(&format!("/dormantMembers/{id}/release"), json!({}))
        .await;
    fail::remove("release::after_join");

    answer.assert_problem(409, "dormant_member.destroyed_during_release");
    let rejoined: Value = serde_json::from_slice(&rejoins(&app).await[0].data).unwrap();
    let member = rejoined["memberId"].as_str().unwrap();
    assert_eq!(
        types(&app, &format!("member-{member}"))
            .await
            .last()
            .map(String::as_str),
        Some("MemberWithdrawn"),
        "the re-joined member is withdrawn"
    );
    let store = app.store().await;
    let keys = store
        .pool()
        .get()
        .await
        .unwrap()
        .query(
            "SELECT 1 FROM person_keys WHERE key_id = $1 AND secret IS NOT NULL",
            &[&format!("member-{member}")],
        )
        .await
        .unwrap();
    assert!(keys.is_empty(), "and their data erased");
    let again = app
        .post(
            "/members",
            json!({ "phoneNo": "01070000006", "nickname": "x" }),
        )
        .await;
    assert_eq!(
        again.status, 201,
        "the number is not held by the undone member: {}",
        again.body
    );
    scenario.teardown();
}
