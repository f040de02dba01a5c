//! Malformed requests get our problem+json, name the field, and append nothing.

use mileage_store::EventStore;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn malformed_fields_name_the_field_and_append_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({ "phoneNo": "12-ab", "nickname": "N" }),
            "validation.phone_number",
            "phoneNo",
        ),
        (
            json!({ "phoneNo": "01012341234", "nickname": "" }),
            "validation.nickname",
            "nickname",
        ),
        (
            json!({ "phoneNo": "01012341234", "nickname": "x".repeat(51) }),
            "validation.nickname",
            "nickname",
        ),
    ];
    for (body, code, field) in cases {
        let reply = app.post("/members", body).await;
        reply.assert_problem(400, code);
        assert_eq!(reply.body["field"], field);
    }
    let id = app.join("01012341234", "N").await;
    for amount in [json!(0), json!(-5)] {
        let reply = app
            .post(
                &format!("/members/{id}/points/earn"),
                json!({ "amount": amount }),
            )
            .await;
        reply.assert_problem(400, "validation.amount_not_positive");
        assert_eq!(reply.body["field"], "amount");
    }
    let store = app.store().await;
    let joined = store
        .read_stream(&format!("member-{id}"), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        joined.len(),
        1,
        "only MemberJoined: the refused earns appended nothing"
    );
    assert_eq!(id, "1", "refused joins took no id and wrote no member");
    assert!(
        store
            .read_stream("member-2", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn malformed_bodies_are_400_with_our_shape() {
    let app = spawn_app().await;
    let url = format!("{}/members", app.address);
    let not_json = app
        .send(
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("{nope"),
        )
        .await;
    not_json.assert_problem(400, "request.malformed_body");
    let unknown_field = app
        .post(
            "/members",
            json!({ "phoneNo": "01012341234", "nickname": "N", "admin": true }),
        )
        .await;
    unknown_field.assert_problem(400, "request.malformed_body");
    assert!(
        unknown_field.body["detail"]
            .as_str()
            .unwrap()
            .contains("admin")
    );
    let overflow = app
        .post("/members/1/points/earn", json!({ "amount": 1e30 }))
        .await;
    overflow.assert_problem(400, "validation.whole_number");
    assert_eq!(overflow.body["field"], "amount");
    let fraction = app
        .post("/members/1/points/earn", json!({ "amount": 2.5 }))
        .await;
    fraction.assert_problem(400, "validation.whole_number");
}

#[tokio::test]
async fn wrong_content_type_and_oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let url = format!("{}/members", app.address);
    app.send(
        app.client
            .post(&url)
            .header("content-type", "text/plain")
            .body("phoneNo=1"),
    )
    .await
    .assert_problem(415, "request.unsupported_media_type");
    let huge = json!({ "phoneNo": "01012341234", "nickname": "x".repeat(20_000) });
    app.post("/members", huge)
        .await
        .assert_problem(413, "request.payload_too_large");
}

#[tokio::test]
async fn a_malformed_correlation_id_is_refused_and_an_upstream_one_is_kept_as_a_uuid() {
    let app = spawn_app().await;
    let join = |correlation: String, phone: &'static str| {
        app.send(
            app.client
                .post(format!("{}/members", app.address))
                .header("X-Correlation-Id", correlation)
                .json(&json!({ "phoneNo": phone, "nickname": "N" })),
        )
    };
    join("x".repeat(129), "01012341234")
        .await
        .assert_problem(400, "request.bad_header");
    let first = join("nginx-0f3a9c".into(), "01012341234").await;
    assert_eq!(first.status, 201, "{}", first.body);
    let echoed = first.headers["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let uuid = uuid::Uuid::parse_str(&echoed).expect("the events' UUID comes back");
    let second = join("nginx-0f3a9c".into(), "01012341235").await;
    assert_eq!(
        second.headers["x-correlation-id"].to_str().unwrap(),
        echoed,
        "the same upstream id, the same correlation"
    );
    assert_eq!(app.events_correlated_with(uuid, 4).await.len(), 4);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems_too() {
    let app = spawn_app().await;
    app.send(app.client.get(format!("{}/nowhere", app.address)))
        .await
        .assert_problem(404, "request.no_route");
    app.send(app.client.put(format!("{}/members", app.address)))
        .await
        .assert_problem(405, "request.method_not_allowed");
    app.send(
        app.client
            .get(format!("{}/members/1/points/earn", app.address)),
    )
    .await
    .assert_problem(405, "request.method_not_allowed");
}
