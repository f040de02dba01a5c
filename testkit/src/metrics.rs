//! A service's Prometheus text, as the tests that check a counter read it.

/// The `/metrics` text of the service at `base` (its URL).
pub async fn scrape(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("the service answers /metrics")
        .text()
        .await
        .expect("a text body")
}
