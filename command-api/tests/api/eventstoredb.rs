//! The command API on EventStoreDB, through the wire-level double
//! (`mileage_store::esdb_double`): what a client sees when the server lets
//! an append's deadline pass after storing it, when a command's second part
//! is lost after its first (before 25.1, whose atomic append stores both or
//! neither), and when the server is too old. (The conformance and
//! end-to-end suites against a real server prove EventStoreDB's own rules.)

use mileage_store::esdb_double::Double;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

async fn on_double() -> (Double, TestApp) {
    on_double_reporting(mileage_store::esdb_double::VERSION).await
}

/// A server before the atomic multi-stream append (25.1): a command's
/// parts go in one by one, and a part can be lost after another.
async fn on_double_before_sessions() -> (Double, TestApp) {
    on_double_reporting(mileage_store::esdb_double::VERSION_BEFORE_SESSIONS).await
}

async fn on_double_reporting(version: &str) -> (Double, TestApp) {
    let double = Double::start().await;
    double.behave(|b| b.version = Some(version.to_owned()));
    let url = double.url();
    let app = spawn_app_with(mileage_store::testing::fresh_database().await, |s| {
        s.eventstoredb_url = Some(url);
    })
    .await;
    (double, app)
}

fn earn(app: &TestApp, id: &str, key: &str) -> reqwest::RequestBuilder {
    app.client
        .post(format!("{}/members/{id}/points/earn", app.address))
        .header("Idempotency-Key", key)
        .bearer_auth(&app.manager_token)
        .json(&json!({ "amount": 300 }))
}

#[tokio::test]
async fn an_append_whose_deadline_passed_is_a_503_and_its_retry_applies_it_exactly_once() {
    let (double, app) = on_double().await;
    let id = app.join("01077770001", "timed").await;
    let before = double.log().len();

    double.behave(|b| b.store_then_deadline = true);
    let timed_out = app.send(earn(&app, &id, "earn-1")).await;
    assert_eq!(timed_out.status, 503, "{}", timed_out.body);
    assert_eq!(timed_out.body["code"], "service.unavailable");
    assert!(
        timed_out.body["detail"]
            .as_str()
            .unwrap()
            .contains("same Idempotency-Key"),
        "{}",
        timed_out.body
    );
    assert_eq!(double.log().len(), before + 1, "the server did store it");

    double.behave(|b| b.store_then_deadline = false);
    let retried = app.send(earn(&app, &id, "earn-1")).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(
        retried.body["balance"], 300,
        "earned once: {}",
        retried.body
    );
    assert_eq!(double.log().len(), before + 1, "the retry appended nothing");
    let position = retried.headers["x-position"].to_str().unwrap().to_owned();
    assert_ne!(position, "0-0", "the stored event's position");

    let next = app.send(earn(&app, &id, "earn-2")).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body["balance"], 600);
    assert_eq!(double.log().len(), before + 2);
}

#[tokio::test]
async fn commands_on_eventstoredb_answer_positions_readers_can_wait_for() {
    let (double, app) = on_double().await;
    let id = app.join("01077770002", "positions").await;
    let reply = app.send(earn(&app, &id, "p-1")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let position = reply.headers["x-position"].to_str().unwrap();
    let stored = double.log().last().unwrap().position;
    assert_eq!(position, format!("{stored}-{stored}"));
    assert!(
        double
            .log()
            .iter()
            .all(|e| !String::from_utf8_lossy(&e.data).contains("01077770002")),
        "no phone number in clear in what EventStoreDB stores"
    );
}

/// The events of `event_type` the server stores.
fn stored(double: &Double, event_type: &str) -> Vec<mileage_store::esdb_double::Stored> {
    double
        .log()
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

#[tokio::test]
async fn a_join_whose_member_part_was_lost_is_completed_by_its_retry_for_the_member_its_claim_names()
 {
    let (double, app) = on_double_before_sessions().await;
    let body = json!({ "phoneNo": "01077770003", "nickname": "half" });
    double.behave(|b| b.refuse_streams_starting = Some("member-".into()));
    let cut = app.send(app.keyed("/members", "join-half", &body)).await;
    assert_eq!(cut.status, 503, "{}", cut.body);
    assert_eq!(
        stored(&double, "PhoneClaimed").len(),
        1,
        "the claim went in first"
    );
    assert!(stored(&double, "MemberJoined").is_empty());

    double.behave(|b| b.refuse_streams_starting = None);
    let retried = app.send(app.keyed("/members", "join-half", &body)).await;
    assert_eq!(retried.status, 201, "{}", retried.body);
    let member = retried.body["memberId"].as_str().unwrap();
    let claimed: serde_json::Value =
        serde_json::from_slice(&stored(&double, "PhoneClaimed")[0].data).unwrap();
    let holder: mileage_domain::pii::Sealed =
        serde_json::from_value(claimed["holder"].clone()).expect("a sealed holder");
    let keys = mileage_store::keys::PgKeyStore::new(app.store().await.pool().clone());
    let key = mileage_store::keys::KeyStore::get(&keys, &holder.key_id)
        .await
        .unwrap()
        .expect("the claim's key");
    assert_eq!(
        key.open(&holder).unwrap(),
        member,
        "the member the claim names"
    );
    let joined = stored(&double, "MemberJoined");
    assert_eq!(joined.len(), 1, "joined once");
    assert_eq!(joined[0].stream, format!("member-{member}"));
    assert_eq!(stored(&double, "PhoneClaimed").len(), 1, "claimed once");
}

#[tokio::test]
async fn a_registration_whose_target_part_was_lost_is_completed_by_its_retry_under_the_recorded_id()
{
    let (double, app) = on_double_before_sessions().await;
    let body = json!({ "memberId": "m-9", "phoneNo": "01077770004", "nickname": "half" });
    double.behave(|b| b.refuse_streams_starting = Some("dormantMember-".into()));
    let cut = app
        .send(app.keyed("/dormantMembers", "register-half", &body))
        .await;
    assert_eq!(cut.status, 503, "{}", cut.body);
    assert_eq!(
        stored(&double, "KeyAssigned").len(),
        1,
        "the key's record went in first"
    );

    double.behave(|b| b.refuse_streams_starting = None);
    let retried = app
        .send(app.keyed("/dormantMembers", "register-half", &body))
        .await;
    assert_eq!(retried.status, 201, "{}", retried.body);
    let assigned: serde_json::Value =
        serde_json::from_slice(&stored(&double, "KeyAssigned")[0].data).unwrap();
    assert_eq!(
        assigned["id"], retried.body["id"],
        "the id the record names"
    );
    let registered = stored(&double, "DormantMemberRegistered");
    assert_eq!(registered.len(), 1, "registered once");
    assert_eq!(
        registered[0].stream,
        format!("dormantMember-{}", retried.body["id"].as_str().unwrap())
    );
    let again = app
        .send(app.keyed("/dormantMembers", "register-half", &body))
        .await;
    assert_eq!(again.body["id"], retried.body["id"]);
    assert_eq!(stored(&double, "DormantMemberRegistered").len(), 1);
}

#[tokio::test]
async fn a_withdrawal_whose_number_release_was_lost_gives_the_number_back_on_its_retry() {
    let (double, app) = on_double_before_sessions().await;
    let member = app.join("01077770005", "leaving").await;
    double.behave(|b| b.refuse_streams_starting = Some("memberPhone-".into()));
    let path = format!("{}/members/{member}", app.address);
    let withdraw = || {
        app.client
            .delete(&path)
            .header("Idempotency-Key", "withdraw-half")
            .bearer_auth(&app.manager_token)
    };
    let cut = app.send(withdraw()).await;
    assert_eq!(cut.status, 503, "{}", cut.body);
    assert_eq!(
        stored(&double, "MemberWithdrawn").len(),
        1,
        "the member part went in first"
    );
    assert!(stored(&double, "PhoneReleased").is_empty());

    double.behave(|b| b.refuse_streams_starting = None);
    let retried = app.send(withdraw()).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(
        stored(&double, "PhoneReleased").len(),
        1,
        "the number was given back"
    );
    assert_eq!(
        stored(&double, "MemberWithdrawn").len(),
        1,
        "withdrawn once"
    );
    let again = app.join("01077770005", "back").await;
    assert_ne!(again, member, "the number joins again");
}

#[tokio::test]
async fn the_service_refuses_to_start_on_a_server_older_than_the_minimum() {
    let double = Double::start().await;
    double.behave(|b| b.version = Some("21.10.0".into()));
    let mut settings = mileage_command_api::config::Settings::with_defaults(
        &mileage_store::testing::fresh_database().await,
        crate::helpers::JWT_SECRET,
        "test-phone-index-secret",
    )
    .expect("valid settings");
    settings.addr = "127.0.0.1:0".parse().unwrap();
    settings.eventstoredb_url = Some(double.url());
    let refused = mileage_command_api::startup::Application::build(&settings).await;
    let error = refused.err().expect("refused").to_string();
    assert!(
        error.contains("eventstoredb_url"),
        "names the setting: {error}"
    );
    assert!(
        error.contains("21.10.0"),
        "names the server's version: {error}"
    );
    assert!(error.contains("22.10 or later"), "and the minimum: {error}");
}

#[tokio::test]
async fn on_kurrentdb_25_1_a_join_refused_in_part_stores_nothing_and_its_retry_joins_once() {
    let (double, app) = on_double().await;
    let body = json!({ "phoneNo": "01077770009", "nickname": "whole" });
    double.behave(|b| b.refuse_streams_starting = Some("member-".into()));
    let cut = app.send(app.keyed("/members", "join-whole", &body)).await;
    assert_eq!(cut.status, 503, "{}", cut.body);
    assert!(
        stored(&double, "PhoneClaimed").is_empty(),
        "one atomic append: no claim without its member"
    );
    double.behave(|b| b.refuse_streams_starting = None);
    let retried = app.send(app.keyed("/members", "join-whole", &body)).await;
    assert_eq!(retried.status, 201, "{}", retried.body);
    assert_eq!(stored(&double, "PhoneClaimed").len(), 1);
    assert_eq!(stored(&double, "MemberJoined").len(), 1);
}
