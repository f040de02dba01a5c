//! The committed `schemas/openapi/command-api.json` must equal what the code
//! generates, and the service must serve it.
//!
//! To regenerate after an intended change:
//! `UPDATE_SCHEMAS=1 cargo test -p mileage-command-api --test api openapi`

use std::path::Path;

use mileage_command_api::openapi::spec;

use crate::helpers::spawn_app;

#[test]
fn committed_openapi_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi/command-api.json");
    let generated = spec();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from the code; regenerate with \
         UPDATE_SCHEMAS=1 cargo test -p mileage-command-api --test api openapi",
        path.display()
    );
}

#[test]
fn every_command_route_is_described() {
    let doc: serde_json::Value = serde_json::from_str(&spec()).unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/members", "post"),
        ("/members/{id}", "delete"),
        ("/members/{id}/points/earn", "post"),
        ("/members/{id}/points/use", "post"),
        ("/dormantMembers", "post"),
        ("/dormantMembers/{id}", "patch"),
        ("/dormantMembers/{id}/dormant", "post"),
        ("/dormantMembers/{id}/release", "post"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is not described");
        assert!(
            operation["responses"]["400"].is_object() || method == "delete",
            "{method} {path} does not describe its 400"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (path, item) in paths.as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let ids: Vec<_> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["name"] == "id" && p["in"] == "path")
                .collect();
            assert_eq!(
                ids.len(),
                usize::from(path.contains("{id}")),
                "{method} {path}"
            );
            for id in ids {
                assert_eq!(
                    id["schema"]["pattern"],
                    mileage_service::docs::ID_PATTERN,
                    "{method} {path}: the id's pattern"
                );
                assert!(id["description"].is_string(), "{method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn the_service_serves_its_description() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served: serde_json::Value = response.json().await.unwrap();
    let generated: serde_json::Value = serde_json::from_str(&spec()).unwrap();
    assert_eq!(served, generated);
}
