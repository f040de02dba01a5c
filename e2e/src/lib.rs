//! End-to-end test support (a dev-only crate: nothing ships it): the
//! services started together in-process against a throwaway PostgreSQL (the
//! command API, a projector), a real loopback HTTP endpoint standing in for
//! the SMS gateway, tokens, and bounded polling. The tests that use it are
//! this crate's `tests/`; the read benchmark is its `benches/`.

pub mod search;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mileage_command_api::config::Settings as CommandSettings;
use mileage_command_api::startup::Application;
use mileage_service::auth::{Role, mint_hs256};
use serde_json::Value;

use mileage_projector::config::{NotifierSettings, Settings};
pub use mileage_projector::startup::Running;
/// Shared with every crate's tests (`mileage_testkit`); `metrics` is its
/// `scrape`.
pub use mileage_testkit::{Sample, eventually, scrape as metrics};

/// The EventStoreDB the end-to-end tests run on, when `EVENTSTOREDB_URL`
/// is set (`deploy/ci/e2e-eventstoredb.sh`; the PostgreSQL log otherwise),
/// in the namespace of the test whose throwaway database is
/// `database_url`, so tests share the server without seeing each other's
/// events.
pub fn eventstoredb_url(database_url: &str) -> Option<String> {
    let url = std::env::var("EVENTSTOREDB_URL")
        .ok()
        .filter(|url| !url.is_empty())?;
    let database: String = database_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}namespace={database}"))
}

/// The event store the services of a test use: EventStoreDB when
/// [`eventstoredb_url`] is set, else the PostgreSQL log in `database_url`.
pub async fn event_store(database_url: &str) -> Arc<dyn mileage_store::EventStore> {
    match eventstoredb_url(database_url) {
        Some(url) => Arc::new(
            mileage_store::eventstoredb::EsdbEventStore::connect(&url)
                .expect("EVENTSTOREDB_URL should be a valid connection string"),
        ),
        None => Arc::new(
            mileage_store::postgres::PgEventStore::connect(database_url)
                .await
                .expect("the test database should accept the store"),
        ),
    }
}

/// The person keys of a test's services (always in PostgreSQL).
pub async fn person_keys(database_url: &str) -> mileage_store::keys::PgKeyStore {
    let pg = mileage_store::postgres::PgEventStore::connect(database_url)
        .await
        .expect("the test database should accept the store");
    mileage_store::keys::PgKeyStore::new(pg.pool().clone())
}

/// The environment that points a service process (or `replay`) over
/// `database_url` at the same event store: `EVENTSTOREDB_URL` when set.
pub fn store_env(database_url: &str) -> Vec<(&'static str, String)> {
    eventstoredb_url(database_url)
        .map(|url| ("EVENTSTOREDB_URL", url))
        .into_iter()
        .collect()
}

/// The HS256 secret of test services.
pub const JWT_SECRET: &str = "test-jwt-secret-of-at-least-32-bytes!";

/// A request the gateway received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The `Idempotency-Key` header.
    pub idempotency_key: String,
    /// `to` of the body.
    pub to: String,
    /// `text` of the body.
    pub text: String,
    /// The `traceparent` header, when sent.
    pub traceparent: Option<String>,
}

/// The development SMS gateway (`mileage_sms_gateway`, what `run.sh`
/// runs) on a loopback port: 422 for numbers that are not mobile numbers
/// and for the ones a test names (with a body that repeats the number, as
/// real gateways do), 503 while told to fail, a chosen status for
/// everything when told to refuse (a wrong endpoint, expired credentials),
/// 202 otherwise.
#[derive(Clone)]
pub struct Gateway {
    sms: mileage_sms_gateway::LocalSms,
    /// `http://127.0.0.1:{port}/sms`.
    pub url: String,
}

impl Gateway {
    /// Starts it; `rejected` numbers (as the notifier sends them) get 422.
    pub async fn start(rejected: &[&str]) -> Self {
        let sms = mileage_sms_gateway::LocalSms::new(mileage_sms_gateway::Behaviour {
            refused: rejected.iter().map(|s| (*s).to_owned()).collect(),
            ..mileage_sms_gateway::Behaviour::default()
        });
        let app = sms.clone().router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sms", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { sms, url }
    }

    /// The next `n` requests answer 503.
    pub fn fail_next(&self, n: u32) {
        self.sms.behave(|b| b.fail_next = n);
    }

    /// From now on every request answers `status` (401: credentials
    /// expired; 404: a wrong endpoint).
    pub fn refuse_everything_with(&self, status: u16) {
        self.sms.behave(|b| b.status = Some(status));
    }

    /// How many requests it took and how many distinct messages (by
    /// idempotency key) among them, all of them counted.
    pub fn tally(&self) -> mileage_sms_gateway::Tally {
        self.sms.tally()
    }

    /// Every accepted or rejected request, in order (503s excluded).
    pub fn received(&self) -> Vec<Received> {
        self.sms
            .deliveries()
            .into_iter()
            .map(|d| Received {
                idempotency_key: d.idempotency_key,
                to: d.to,
                text: d.text,
                traceparent: d.traceparent,
            })
            .collect()
    }
}

/// The command API in-process on a random port.
pub struct CommandApi {
    /// `http://127.0.0.1:{port}`.
    pub address: String,
    /// A manager's bearer token.
    pub token: String,
    client: reqwest::Client,
}

impl CommandApi {
    /// Starts it over `database_url`.
    pub async fn spawn(database_url: &str) -> Self {
        Self::spawn_on(database_url, eventstoredb_url(database_url)).await
    }

    /// Starts it over `database_url`, with EventStoreDB at `eventstoredb_url`
    /// as the event store when given.
    pub async fn spawn_on(database_url: &str, eventstoredb_url: Option<String>) -> Self {
        let mut settings =
            CommandSettings::with_defaults(database_url, JWT_SECRET, PHONE_INDEX_SECRET)
                .expect("valid settings");
        settings.addr = "127.0.0.1:0".parse().unwrap();
        settings.cors_allowed_origins = vec!["*".into()];
        settings.rate_limits = mileage_service::settings::RateLimits::off();
        settings.eventstoredb_url = eventstoredb_url;
        let app = Application::build(&settings)
            .await
            .expect("the command API starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        Self {
            address,
            token: token("ops", Role::Manager),
            client: reqwest::Client::new(),
        }
    }

    /// `method path` with `body` as a manager; the status and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the command API answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Joins a member; its id.
    pub async fn join(&self, phone: &str, nickname: &str) -> String {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/members",
                Some(serde_json::json!({ "phoneNo": phone, "nickname": nickname })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["memberId"].as_str().unwrap().to_owned()
    }

    /// Registers a dormant target for a new member with `phone`; the
    /// target's id and the answer's position.
    pub async fn register_target(&self, phone: &str, nickname: &str) -> (String, String) {
        let member = self.join(phone, nickname).await;
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/dormantMembers",
                Some(serde_json::json!({ "memberId": member, "phoneNo": phone, "nickname": nickname })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().unwrap().to_owned(),
            body["position"].as_str().unwrap().to_owned(),
        )
    }

    /// Marks a target dormant (the source document's PATCH); the position.
    pub async fn mark_dormant(&self, id: &str) -> String {
        let (status, body) = self
            .send(
                reqwest::Method::PATCH,
                &format!("/dormantMembers/{id}"),
                Some(serde_json::json!({ "memberStatus": "DORMANT" })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["position"].as_str().unwrap().to_owned()
    }
}

/// A member who joined at `joined_at`, written straight to the log (the
/// command API joins at the present).
pub async fn seed_member(
    store: &dyn mileage_store::EventStore,
    keys: &dyn mileage_store::keys::KeyStore,
    id: &str,
    phone: &str,
    joined_at: chrono::DateTime<chrono::Utc>,
) {
    let stream = format!("member-{id}");
    let key = keys.get_or_create(&stream).await.unwrap();
    let joined = mileage_domain::member::MemberEvent::from(mileage_domain::member::MemberJoined {
        member_id: mileage_domain::ids::MemberId::parse(id).unwrap(),
        phone_no: mileage_store::keys::seal(&key, "phoneNo", phone),
        nickname: mileage_store::keys::seal(&key, "nickname", &format!("quiet {id}")),
        joined_at,
        rejoining: None,
    });
    let event = mileage_store::NewEvent::from_domain(
        uuid::Uuid::new_v4(),
        &joined,
        mileage_domain::envelope::Causation::root(uuid::Uuid::new_v4()),
    );
    store
        .append(&stream, mileage_store::ExpectedVersion::NoStream, &[event])
        .await
        .unwrap();
}

/// The `PHONE_INDEX_SECRET` the services of these tests share.
pub const PHONE_INDEX_SECRET: &str = "test-phone-index-secret";

/// A valid token for `sub` in `role`.
pub fn token(sub: &str, role: Role) -> String {
    mint_hs256(JWT_SECRET.as_bytes(), sub, role, 600).expect("a token")
}

/// Projector settings over one database, sending to `gateway` (or the
/// development adapter), with quick retries.
pub fn projector_settings(database_url: &str, gateway: Option<&Gateway>) -> Settings {
    Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        eventstoredb_url: eventstoredb_url(database_url),
        read_database_url: database_url.to_owned(),
        batch_size: 500,
        notifier: NotifierSettings {
            url: gateway.map(|g| g.url.clone()),
            timeout: Duration::from_secs(2),
            max_attempts: 3,
            backoff: Duration::from_millis(20),
        },
        dormancy: mileage_projector::config::DormancySettings::default(),
    }
}

/// Starts a projector in-process.
pub async fn start_projector(database_url: &str, gateway: Option<&Gateway>) -> Running {
    mileage_projector::startup::start(&projector_settings(database_url, gateway))
        .await
        .expect("the projector starts")
}

/// Waits until every consumer of `projector` (over `database_url`) runs on
/// the configured store and has handled every event it holds: a test that
/// stops the projector to look at checkpoints starts from a known state.
pub async fn caught_up(projector: &Running, database_url: &str) {
    caught_up_on(projector, database_url, &*event_store(database_url).await).await;
}

/// [`caught_up`] on `store`, for a projector configured with another
/// event store than its database's tests use (a move between stores).
pub async fn caught_up_on(
    projector: &Running,
    database_url: &str,
    store: &dyn mileage_store::EventStore,
) {
    let read = read_client(database_url).await;
    let expected = projector.consumers();
    eventually(
        "every consumer caught up with the log",
        Duration::from_secs(60),
        || async {
            let store_id = store.identity().await.ok()?;
            let statuses = mileage_read_model::bookkeeping::statuses(&read)
                .await
                .ok()?;
            let live: Vec<_> = statuses.iter().filter(|s| !s.is_scratch()).collect();
            if live.len() < expected {
                return None;
            }
            for consumer in live {
                let here = consumer.store_id.as_deref() == Some(store_id.as_str());
                let backlog = store.backlog(consumer.checkpoint, 1).await.ok()?;
                if consumer.state != "running" || !here || backlog.events > 0 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// The read models and the projector's bookkeeping, read through the
/// functions the query API and `replay` read them with (tests look at what
/// the services show, not at tables).
pub struct ReadSide(deadpool_postgres::Pool);

impl ReadSide {
    /// Reads the read side in the database at `database_url`.
    pub fn of(database_url: &str) -> Self {
        let config: tokio_postgres::Config = database_url.parse().expect("a database URL");
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        Self(
            deadpool_postgres::Pool::builder(manager)
                .max_size(2)
                .build()
                .expect("a pool"),
        )
    }

    /// The consumer `name`'s bookkeeping (state, checkpoint, events
    /// handled, why it stopped), as `replay status` reads it.
    pub async fn consumer(&self, name: &str) -> Option<mileage_read_model::bookkeeping::Status> {
        self.consumers().await?.into_iter().find(|s| s.name == name)
    }

    /// Every consumer's bookkeeping.
    pub async fn consumers(&self) -> Option<Vec<mileage_read_model::bookkeeping::Status>> {
        let client = self.0.get().await.ok()?;
        mileage_read_model::bookkeeping::statuses(&**client)
            .await
            .ok()
    }

    /// How many targets the managerpage holds (the query API's counts,
    /// summed).
    pub async fn target_count(&self) -> Option<i64> {
        let client = self.0.get().await.ok()?;
        let counts = mileage_read_model::managerpage::counts(&client)
            .await
            .ok()?;
        Some(counts.iter().map(|(_, n)| n).sum())
    }

    /// The target `id`'s status on the managerpage, once projected.
    pub async fn target_status(&self, id: &str) -> Option<String> {
        let client = self.0.get().await.ok()?;
        let targets = mileage_read_model::managerpage::by_id(&client, id)
            .await
            .ok()?;
        targets.first().map(|t| t.status.to_owned())
    }

    /// The member `id`'s balance in the members read model, once projected.
    pub async fn member_balance(&self, id: &str) -> Option<i64> {
        Some(self.member(id).await?.balance)
    }

    /// The member `id`'s row in the members read model, once projected.
    pub async fn member(&self, id: &str) -> Option<mileage_read_model::members::MemberRow> {
        let client = self.0.get().await.ok()?;
        mileage_read_model::members::by_id(&client, id).await.ok()?
    }
}

/// Which of `key_ids` still open personal data (not erased), asked of the
/// key store the services use.
pub async fn live_keys(database_url: &str, key_ids: &[String]) -> Vec<String> {
    use mileage_store::keys::KeyStore as _;
    let live = person_keys(database_url)
        .await
        .get_many(key_ids)
        .await
        .expect("the key store answers");
    live.into_keys().collect()
}

/// Runs the `replay` tool over the event store in `database` (and the
/// read models there unless `env` names `READ_DATABASE_URL`), with `env`
/// added to its otherwise empty environment: exit code, stdout, stderr.
pub async fn replay(database: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut command = std::process::Command::new(binary("replay"));
    command
        .env_clear()
        .envs(store_env(database))
        .env("DATABASE_URL", database)
        .envs(env.iter().copied())
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output().expect("replay runs"))
        .await
        .expect("replay's wait ends");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A client of the read database.
pub async fn read_client(database_url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .expect("the read database");
    tokio::spawn(connection);
    client
}

/// The rows of `tables` (in the database at `database_url`), as JSON, that
/// mention any of `needles`: where an erased person's data would show.
pub async fn rows_mentioning(database_url: &str, tables: &[&str], needles: &[&str]) -> Vec<String> {
    let client = read_client(database_url).await;
    let mut found = Vec::new();
    for table in tables {
        let rows = client
            .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
            .await
            .expect("the table reads");
        for row in rows {
            let text: String = row.get(0);
            if needles.iter().any(|needle| text.contains(needle)) {
                found.push(format!("{table}: {text}"));
            }
        }
    }
    found
}

/// `clients` loops sending the request `make(client, n)` builds (`n` counts
/// that client's requests) for `duration`; every answer must be a success.
pub async fn load<F>(clients: u64, duration: Duration, make: F) -> Sample
where
    F: Fn(u64, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let make = Arc::clone(&make);
            tokio::spawn(async move {
                let mut micros = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let response = make(client, n).send().await.expect("the service answers");
                    assert!(response.status().is_success(), "{}", response.status());
                    let _ = response.bytes().await;
                    micros.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    n += 1;
                }
                micros
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a load client"));
    }
    Sample::of(all, started.elapsed())
}

/// The path of another package's binary (`mileage-projector`, `replay`),
/// built beside this test's executable. `cargo test --workspace` builds
/// every service binary before it runs a test (each service package has
/// integration tests of its own); a run of this package alone needs them
/// built first, as the panic says.
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run the whole suite (`bash deploy/local/test.sh`) or \
         `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `url` until it answers 2xx, for up to a minute.
pub async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Debian's nginx from `deploy/gateway/gateway.conf.template` in front of
/// the command-API `ports` (`deploy/local/gateway.sh` installs and runs
/// it), letting `joins_per_minute` joins through per client address: the
/// process, the gateway's URL and its directory (configuration and error
/// log; the caller removes it).
pub async fn start_gateway(
    http: &reqwest::Client,
    ports: &[u16],
    joins_per_minute: u32,
) -> (mileage_store::testing::Service, String, std::path::PathBuf) {
    start_gateway_for(http, ports, &[free_port()], joins_per_minute).await
}

/// The gateway in front of the command-API `ports` and the query-API
/// `query_ports` (see [`start_gateway`]).
pub async fn start_gateway_for(
    http: &reqwest::Client,
    ports: &[u16],
    query_ports: &[u16],
    joins_per_minute: u32,
) -> (mileage_store::testing::Service, String, std::path::PathBuf) {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/gateway.sh");
    let gateway_port = free_port();
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let dir = std::env::temp_dir().join(format!("mileage-gateway-{}", uuid::Uuid::new_v4()));
    let rendered = std::process::Command::new("bash")
        .arg(&script)
        .arg("render")
        .arg(&dir)
        .arg(gateway_port.to_string())
        .arg(upstreams.join(" "))
        .arg(
            query_ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .env("GATEWAY_JOINS_PER_MINUTE", joins_per_minute.to_string())
        .status()
        .expect("gateway.sh runs");
    assert!(rendered.success(), "the gateway configuration renders");
    let process = mileage_store::testing::Service(
        std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&dir)
            .stderr(std::fs::File::create(dir.join("error.log")).expect("a log file"))
            .spawn()
            .expect("nginx starts"),
    );
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    wait_ready(http, &format!("{gateway}/health")).await;
    (process, gateway, dir)
}
