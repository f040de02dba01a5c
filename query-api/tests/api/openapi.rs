//! The committed `schemas/openapi/query-api.json` must equal what the code
//! generates, and the service must serve it.
//!
//! To regenerate after an intended change:
//! `UPDATE_SCHEMAS=1 cargo test -p mileage-query-api --test api openapi`

use std::path::Path;

use mileage_query_api::routes::openapi::spec;

use crate::helpers::Stack;

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
    let stack = Stack::start_with(std::time::Duration::from_millis(100), false).await;
    let served = stack.query.get("/openapi.json").await;
    assert_eq!(served.body, doc);
}
