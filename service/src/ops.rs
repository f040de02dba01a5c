//! What operators and orchestrators ask of every service, answered the same
//! way everywhere: `/health` (the process answers), `/ready` (its
//! dependencies answer; one body shape naming each), `/metrics` (Prometheus
//! text) and `/openapi.json` (the service's description, when it has one).

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

/// A service's dependencies, as `/ready` and `/metrics` see them.
#[async_trait]
pub trait Probe: Send + Sync + 'static {
    /// Each dependency by name (`eventStore`, `readDatabase`) and whether it
    /// answers now.
    async fn dependencies(&self) -> Vec<(&'static str, bool)>;

    /// Gauges measured for this scrape whose series come and go with what
    /// they measure (lag per live consumer), as Prometheus text appended to
    /// the process's metrics (see [`crate::telemetry::render_current`]);
    /// none by default.
    async fn current_gauges(&self) -> String {
        String::new()
    }
}

/// The ops routes' state: the probe and the description.
#[derive(Clone)]
pub struct Ops {
    probe: Arc<dyn Probe>,
    openapi: Option<Arc<Value>>,
}

/// The four routes, for a service whose description is `openapi` (a JSON
/// document, served as is) or that has none.
pub fn router<S>(probe: Arc<dyn Probe>, openapi: Option<&str>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let openapi = openapi
        .map(|text| Arc::new(serde_json::from_str(text).expect("the OpenAPI description is JSON")));
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    if openapi.is_some() {
        router = router.route("/openapi.json", get(openapi_json));
    }
    router.with_state(Ops { probe, openapi })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: every dependency answers; the body names each and whether it did.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "Ready: every dependency answers", content_type = "application/json",
     example = json!({"status": "ready", "checks": {"eventStore": true}})),
    (status = 503, description = "A dependency does not answer", content_type = "application/json",
     example = json!({"status": "unavailable", "checks": {"eventStore": false}})),
))]
pub async fn ready(State(ops): State<Ops>) -> (StatusCode, Json<Value>) {
    let checks = ops.probe.dependencies().await;
    let ready = checks.iter().all(|(_, up)| *up);
    for (name, up) in &checks {
        if !up {
            tracing::warn!(dependency = name, "not ready: a dependency does not answer");
        }
    }
    let checks: Map<String, Value> = checks
        .into_iter()
        .map(|(name, up)| (name.to_owned(), Value::Bool(up)))
        .collect();
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (status, Json(json!({ "status": word, "checks": checks })))
}

async fn metrics(State(ops): State<Ops>) -> String {
    let current = ops.probe.current_gauges().await;
    let mut text = crate::telemetry::prometheus().render();
    text.push_str(&current);
    text
}

async fn openapi_json(State(ops): State<Ops>) -> Json<Value> {
    Json(ops.openapi.as_deref().cloned().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::{Probe, router};

    struct Fixed(bool);

    #[async_trait]
    impl Probe for Fixed {
        async fn dependencies(&self) -> Vec<(&'static str, bool)> {
            vec![("eventStore", true), ("readDatabase", self.0)]
        }
    }

    async fn get(up: bool, path: &str, openapi: Option<&str>) -> (StatusCode, Value) {
        let app: axum::Router = router(Arc::new(Fixed(up)), openapi);
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn ready_names_every_dependency_and_fails_when_one_is_down() {
        let (status, body) = get(true, "/ready", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["readDatabase"], true);
        let (status, body) = get(false, "/ready", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["checks"]["eventStore"], true);
        assert_eq!(body["checks"]["readDatabase"], false);
    }

    #[tokio::test]
    async fn the_description_is_served_only_when_there_is_one() {
        let (status, body) = get(true, "/openapi.json", Some(r#"{"openapi":"3.1.0"}"#)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["openapi"], "3.1.0");
        let (status, _) = get(true, "/openapi.json", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = get(true, "/health", None).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("ok"))
        );
    }
}
