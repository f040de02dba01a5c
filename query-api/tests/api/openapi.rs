//! The committed `schemas/openapi/query-api.json` must equal what the code
//! generates, and the service must serve it.
//!
//! To regenerate after an intended change:
//! `UPDATE_SCHEMAS=1 cargo test -p mileage-query-api --test api openapi`

use std::path::Path;

use mileage_query_api::config::Settings;
use mileage_query_api::openapi::spec;
use mileage_query_api::startup::Application;
use mileage_service::settings::JwtKey;
use mileage_store::testing::fresh_database;

#[test]
fn committed_openapi_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi/query-api.json");
    let generated = spec();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from the code; regenerate with \
         UPDATE_SCHEMAS=1 cargo test -p mileage-query-api --test api openapi",
        path.display()
    );
}

/// The query API on an empty read database; its address.
async fn spawn() -> String {
    let database = fresh_database().await;
    let app = Application::build(&Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        read_database_url: database.clone(),
        keys_database_url: database,
        jwt: JwtKey::hs256("test-jwt-secret-of-at-least-32-bytes!").into(),
        token_rules: mileage_service::settings::TokenRules::default(),
        rate_limits: mileage_service::settings::RateLimits::off(),
        wait_limit: std::time::Duration::from_millis(100),
        command_api_url: String::new(),
        pool_size: 2,
        phone_secret: None,
    })
    .await
    .expect("the query API starts on an empty read database");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    address
}

#[tokio::test]
async fn every_read_route_is_described_and_served() {
    let doc: serde_json::Value = serde_json::from_str(&spec()).unwrap();
    for path in [
        "/managerpages",
        "/managerpages/counts",
        "/managerpages/{id}",
        "/dormantMembers/{id}",
        "/managerMessages/{id}",
        "/members/{id}",
    ] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} is not described"
        );
    }
    let address = spawn().await;
    let served: serde_json::Value = reqwest::get(format!("{address}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, doc);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems() {
    let address = spawn().await;
    let client = reqwest::Client::new();
    for (request, status, code) in [
        (
            client.get(format!("{address}/nowhere")),
            404,
            "request.no_route",
        ),
        (
            client.post(format!("{address}/managerpages")),
            405,
            "request.method_not_allowed",
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
    }
}
