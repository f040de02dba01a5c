//! `spawn_app()`: the service on port 0 over a fresh database, in one line,
//! and the requests tests make.

use mileage_service::auth::{Role, mint_hs256};

use mileage_command_api::config::Settings;
use mileage_command_api::startup::Application;
use mileage_store::postgres::PgEventStore;
use mileage_store::{EventStore, RecordedEvent};
use serde_json::Value;

/// A running service and how to reach it.
pub(crate) struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub database_url: String,
    /// Sent by `post`, `patch` and `delete`: an operator.
    pub manager_token: String,
}

/// The HS256 secret test services check tokens with.
pub(crate) const JWT_SECRET: &str = "test-jwt-secret-of-at-least-32-bytes!";

/// A response's status, headers and JSON body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_on(mileage_store::testing::fresh_database().await).await
}

/// Another instance over an existing database (a restart, or a replica).
pub(crate) async fn spawn_app_on(database_url: String) -> TestApp {
    spawn_app_with(database_url, |_| {}).await
}

/// An instance with settings adjusted by `adjust`.
pub(crate) async fn spawn_app_with(
    database_url: String,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings =
        Settings::with_defaults(&database_url, JWT_SECRET, "test-phone-index-secret")
            .expect("valid settings");
    settings.addr = "127.0.0.1:0".parse().expect("a valid address");
    // Tests send many commands from one address with one token; the rate
    // limits' own tests turn them back on.
    settings.rate_limits = mileage_service::settings::RateLimits::off();
    adjust(&mut settings);
    let app = Application::build(&settings)
        .await
        .expect("the service should start");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        database_url,
        manager_token: token("ops", Role::Manager),
    }
}

impl TestApp {
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the service should answer");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Reply {
        self.post_as(Some(&self.manager_token), path, body).await
    }

    /// POST with this bearer token, or none.
    pub(crate) async fn post_as(&self, token: Option<&str>, path: &str, body: Value) -> Reply {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// A POST as the manager with this `Idempotency-Key`, to send.
    pub(crate) fn keyed(&self, path: &str, key: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.address))
            .header("Idempotency-Key", key)
            .bearer_auth(&self.manager_token)
            .json(body)
    }

    pub(crate) async fn patch(&self, path: &str, body: Value) -> Reply {
        let request = self
            .client
            .patch(format!("{}{path}", self.address))
            .json(&body);
        self.send(request.bearer_auth(&self.manager_token)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        let request = self.client.delete(format!("{}{path}", self.address));
        self.send(request.bearer_auth(&self.manager_token)).await
    }

    /// Joins a member; returns its id.
    pub(crate) async fn join(&self, phone: &str, nickname: &str) -> String {
        let reply = self
            .post(
                "/members",
                serde_json::json!({ "phoneNo": phone, "nickname": nickname }),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["memberId"]
            .as_str()
            .expect("memberId")
            .to_owned()
    }

    /// The events of the global log with this correlation id, once at least
    /// `count` are visible (the log may show a commit a moment late), or
    /// whatever is there after 10 s.
    pub(crate) async fn events_correlated_with(
        &self,
        correlation: uuid::Uuid,
        count: usize,
    ) -> Vec<RecordedEvent> {
        let store = self.store().await;
        let look = || async {
            let all = store.read_all(None, 10_000).await.expect("read the log");
            all.into_iter()
                .filter(|e| e.metadata.correlation_id == correlation)
                .collect::<Vec<RecordedEvent>>()
        };
        mileage_testkit::until(std::time::Duration::from_secs(10), look, |ours| {
            ours.len() >= count
        })
        .await
    }

    /// The event store under the service, to check what was written.
    pub(crate) async fn store(&self) -> PgEventStore {
        PgEventStore::connect(&self.database_url)
            .await
            .expect("the test database")
    }
}

impl Reply {
    /// Asserts a problem+json error with this status and code.
    #[track_caller]
    pub(crate) fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status);
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/problem+json"));
    }
}

/// A valid token for `sub` in `role`.
pub(crate) fn token(sub: &str, role: Role) -> String {
    mint_hs256(JWT_SECRET.as_bytes(), sub, role, 600).expect("a token")
}
