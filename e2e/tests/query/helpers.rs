//! `Stack::start()`: command API, projector (notices to a gateway stand-in)
//! and query API over one fresh database, in one line.

use std::time::Duration;

use mileage_e2e::{CommandApi, Gateway, JWT_SECRET, eventually, start_projector, token};
use mileage_projector::startup::Running;
use mileage_query_api::config::Settings;
use mileage_query_api::startup::Application;
use mileage_service::auth::Role;
use mileage_service::settings::JwtKey;
use serde_json::Value;

/// How long tests wait for the read side.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A number the gateway stand-in rejects.
pub(crate) const REJECTED_PHONE: &str = "01099990000";

/// The whole system.
pub(crate) struct Stack {
    pub database: String,
    pub commands: CommandApi,
    pub query: QueryApi,
    pub gateway: Gateway,
    /// The projector, running as long as the stack.
    pub projector: Option<Running>,
}

/// The query API and a client for it.
pub(crate) struct QueryApi {
    pub address: String,
    pub client: reqwest::Client,
    pub manager_token: String,
}

/// An answer: status, headers, JSON body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub(crate) fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
    }
}

impl Stack {
    /// Everything running.
    pub(crate) async fn start() -> Self {
        Self::start_with(Duration::from_secs(2), true).await
    }

    /// With this read-your-writes limit, with or without a projector.
    pub(crate) async fn start_with(wait_limit: Duration, projector: bool) -> Self {
        let database = mileage_store::testing::fresh_database().await;
        let gateway = Gateway::start(&[REJECTED_PHONE]).await;
        let commands = CommandApi::spawn(&database).await;
        let projector = if projector {
            Some(start_projector(&database, Some(&gateway)).await)
        } else {
            None
        };
        let query = QueryApi::spawn(&database, wait_limit, &commands.address).await;
        Self {
            database,
            commands,
            query,
            gateway,
            projector,
        }
    }
}

impl QueryApi {
    pub(crate) async fn spawn(database: &str, wait_limit: Duration, command_api: &str) -> Self {
        let settings = Settings {
            addr: "127.0.0.1:0".parse().unwrap(),
            read_database_url: database.to_owned(),
            keys_database_url: database.to_owned(),
            jwt: JwtKey::hs256(JWT_SECRET).into(),
            token_rules: mileage_service::settings::TokenRules::default(),
            rate_limits: mileage_service::settings::RateLimits::off(),
            wait_limit,
            command_api_url: command_api.to_owned(),
            pool_size: 8,
            phone_secret: Some(mileage_e2e::PHONE_INDEX_SECRET.into()),
        };
        let app = Application::build(&settings)
            .await
            .expect("the query API starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        Self {
            address,
            client: reqwest::Client::new(),
            manager_token: token("ops", Role::Manager),
        }
    }

    /// GET as a manager.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.get_as(Some(&self.manager_token), path, &[]).await
    }

    /// GET with this token (or none) and extra headers.
    pub(crate) async fn get_as(
        &self,
        token: Option<&str>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the query API answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// Polls `path` until `check` holds for its 200 answer.
    pub(crate) async fn until(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(path, WAIT, || async {
            let reply = self.get(path).await;
            (reply.status == 200 && check(&reply.body)).then_some(reply.body)
        })
        .await
    }
}
