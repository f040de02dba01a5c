use crate::helpers::spawn_app;

#[tokio::test]
async fn health_answers_ok() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn ready_when_the_event_store_answers() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["eventStore"], true);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    let id = app.join("01030000001", "M").await;
    app.post(
        &format!("/members/{id}/points/use"),
        serde_json::json!({ "amount": 5 }),
    )
    .await;
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let has = |needle: &str| {
        text.lines()
            .any(|l| l.contains("http_requests_total") && l.contains(needle))
    };
    assert!(
        has(r#"route="/members""#) && has(r#"status="201""#),
        "{text}"
    );
    assert!(
        has(r#"route="/members/{id}/points/use""#) && has(r#"status="422""#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("event_store_append_seconds"), "{text}");
}

/// Labels come from bounded sets: a thousand made-up methods and paths add
/// one `other` method and one `unmatched` route, never a series each.
#[tokio::test]
async fn metrics_stay_bounded_whatever_clients_send() {
    let app = spawn_app().await;
    // The recorder is shared by every service this test binary runs, so
    // count what these requests add, not what is there.
    let before = request_series(&app).await.len();
    for n in 0..1_000 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{n}").as_bytes()).unwrap();
        let path = if n % 2 == 0 {
            "/members/1".to_owned()
        } else {
            format!("/nothing/{n}")
        };
        app.client
            .request(method, format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
    }
    let series = request_series(&app).await;
    let text = series.join("\n");
    assert!(!text.contains("MADEUP"), "a made-up method became a label");
    assert!(
        !text.contains("/nothing/"),
        "an unmatched path became a label"
    );
    assert!(
        series.iter().any(|l| l.contains(r#"method="other""#)),
        "{series:#?}"
    );
    assert!(
        series.len() < before + 40,
        "{} series, {before} before: {series:#?}",
        series.len()
    );
}

/// The `http_requests_total` series the service exports now.
async fn request_series(app: &crate::helpers::TestApp) -> Vec<String> {
    let text = mileage_testkit::scrape(&app.client, &app.address).await;
    text.lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .map(str::to_owned)
        .collect()
}
