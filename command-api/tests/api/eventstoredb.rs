//! The command API on EventStoreDB, through the wire-level double
//! (`mileage_store::esdb_double`): what a client sees when the server lets
//! an append's deadline pass after storing it, or answers a retry without a
//! position. (The conformance and end-to-end suites against a real server
//! prove EventStoreDB's own rules.)

use mileage_store::esdb_double::Double;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

async fn on_double() -> (Double, TestApp) {
    let double = Double::start().await;
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
