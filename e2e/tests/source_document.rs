//! The source document's requests as written, slashes included, sent to the
//! whole system as `deploy/local/run.sh` starts it: the binaries (a member
//! service and a dormant-member service, both the command API; the
//! projector; the query API; the local SMS gateway) behind nginx. Its five
//! deployed scenarios in order, then its local examples, including the
//! release that fails while the member side is down and succeeds once it is
//! back.

use std::process::Command;
use std::time::Duration;

use mileage_e2e::{
    JWT_SECRET, binary, eventually, free_port, start_gateway_for, token, wait_ready,
};
use mileage_service::auth::Role;
use mileage_store::testing::Service;
use serde_json::{Value, json};

const PHONE_SECRET: &str = "source-document-phone-secret";

fn command_api(database: &str, port: u16, member_api: Option<u16>) -> Service {
    let mut command = Command::new(binary("mileage-command-api"));
    command
        .env_clear()
        .envs(mileage_e2e::store_env(database))
        .env("DATABASE_URL", database)
        .env("COMMAND_API_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_HS256_SECRET", JWT_SECRET)
        .env("PHONE_INDEX_SECRET", PHONE_SECRET)
        .env("TRUSTED_CLIENT_IP_HEADER", "X-Real-IP")
        .env("RUST_LOG", "warn");
    if let Some(member_api) = member_api {
        command.env("MEMBER_API_URL", format!("http://127.0.0.1:{member_api}"));
    }
    Service(command.spawn().expect("the command API starts"))
}

/// The system, and how to reach it through the gateway.
struct System {
    gateway: String,
    http: reqwest::Client,
    token: String,
    database: String,
    member_port: u16,
    member: Service,
    _rest: Vec<Service>,
    dir: std::path::PathBuf,
}

impl System {
    async fn start() -> Self {
        let database = mileage_store::testing::fresh_database().await;
        let http = reqwest::Client::new();
        let (member_port, dormant_port) = (free_port(), free_port());
        let (query_port, sms_port) = (free_port(), free_port());
        let member = command_api(&database, member_port, None);
        wait_ready(&http, &format!("http://127.0.0.1:{member_port}/ready")).await;
        let dormant = command_api(&database, dormant_port, Some(member_port));
        let sms = Service(
            Command::new(binary("sms-gateway"))
                .env_clear()
                .env("SMS_GATEWAY_ADDR", format!("127.0.0.1:{sms_port}"))
                .env("RUST_LOG", "warn")
                .spawn()
                .expect("the SMS gateway starts"),
        );
        let projector = Service(
            Command::new(binary("mileage-projector"))
                .env_clear()
                .envs(mileage_e2e::store_env(&database))
                .env("DATABASE_URL", &database)
                .env("PROJECTOR_ADDR", "127.0.0.1:0")
                .env("NOTIFIER_URL", format!("http://127.0.0.1:{sms_port}/sms"))
                .env("NOTIFIER_BACKOFF_MS", "20")
                .env("RUST_LOG", "warn")
                .spawn()
                .expect("the projector starts"),
        );
        let query = Service(
            Command::new(binary("mileage-query-api"))
                .env_clear()
                .envs(mileage_e2e::store_env(&database))
                .env("DATABASE_URL", &database)
                .env("QUERY_API_ADDR", format!("127.0.0.1:{query_port}"))
                .env("JWT_HS256_SECRET", JWT_SECRET)
                .env("TRUSTED_CLIENT_IP_HEADER", "X-Real-IP")
                .env("RUST_LOG", "warn")
                .spawn()
                .expect("the query API starts"),
        );
        for port in [dormant_port, query_port] {
            wait_ready(&http, &format!("http://127.0.0.1:{port}/ready")).await;
        }
        wait_ready(&http, &format!("http://127.0.0.1:{sms_port}/health")).await;
        let (gateway_process, gateway, dir) =
            start_gateway_for(&http, &[dormant_port], &[query_port], 60).await;
        Self {
            gateway,
            http,
            token: token("ops", Role::Manager),
            database,
            member_port,
            member,
            _rest: vec![gateway_process, dormant, sms, projector, query],
            dir,
        }
    }

    /// `http METHOD {gateway}{path} body` as the source document writes it,
    /// with an operator's token.
    async fn http(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.gateway))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `http POST {gateway}{path} body`.
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.http(reqwest::Method::POST, path, Some(body)).await
    }

    /// `http PATCH {gateway}{path} memberStatus=STATUS`.
    async fn patch(&self, path: &str, status: &str) -> (u16, Value) {
        let body = json!({ "memberStatus": status });
        self.http(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// GET `path` until `check` holds (the read side follows the log).
    async fn until(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(path, Duration::from_secs(60), || async {
            let (status, body) = self.http(reqwest::Method::GET, path, None).await;
            (status == 200 && check(&body)).then_some(body)
        })
        .await
    }
}

fn status_of(body: &Value) -> &str {
    body["memberStatus"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_source_documents_requests_as_written_through_the_gateway() {
    let mut system = System::start().await;
    saga(&system).await;
    register_and_notify(&system).await;
    release_while_the_member_side_is_down_then_up(&mut system).await;
    list_and_local_examples(&system).await;
    let _ = std::fs::remove_dir_all(&system.dir);
}

async fn saga(system: &System) {
    // (Scenario 1) A target whose phone cannot receive the notice is
    // destroyed (saga): http POST .../dormantMembers phoneNo=1234567
    // nickname=DOR-Saga memberStatus=Pre-Dormant memberId=1
    let (status, saga) = system
        .post(
            "/dormantMembers",
            json!({ "phoneNo": "1234567", "nickname": "DOR-Saga", "memberStatus": "Pre-Dormant", "memberId": "1" }),
        )
        .await;
    assert_eq!(status, 201, "{saga}");
    assert_eq!(saga["id"], "1");
    // http PATCH ...//dormantMembers/1 memberStatus=DORMANT
    let (status, body) = system.patch("//dormantMembers/1", "DORMANT").await;
    assert_eq!((status, status_of(&body)), (200, "DORMANT"), "{body}");
    // http GET .../dormantMembers/1
    let destroyed = system
        .until("/dormantMembers/1", |b| status_of(b) == "DESTRUCTION")
        .await;
    assert!(
        !destroyed.to_string().contains("1234567"),
        "the destroyed target's number is gone: {destroyed}"
    );
}

async fn register_and_notify(system: &System) {
    // (Scenario 2) http POST .../dormantMembers phoneNo=01052995000
    // nickname=DOR1 memberStatus=Pre-Dormant memberId=2
    let (status, body) = system
        .post(
            "/dormantMembers",
            json!({ "phoneNo": "01052995000", "nickname": "DOR1", "memberStatus": "Pre-Dormant", "memberId": "2" }),
        )
        .await;
    assert_eq!((status, body["id"].as_str()), (201, Some("2")), "{body}");
    // http GET .../dormantMembers/2
    system
        .until("/dormantMembers/2", |b| status_of(b) == "PRE_DORMANT")
        .await;

    // (Scenario 3) http PATCH .../dormantMembers/2 memberStatus=DORMANT; the
    // notice goes out: http GET .../managerMessages/2
    let (status, body) = system.patch("/dormantMembers/2", "DORMANT").await;
    assert_eq!((status, status_of(&body)), (200, "DORMANT"), "{body}");
    let message = system
        .until("/managerMessages/2", |b| b["messageStatus"] == "SENT")
        .await;
    assert!(!message.to_string().contains("52995000"), "{message}");
}

async fn release_while_the_member_side_is_down_then_up(system: &mut System) {
    // (Scenario 4) http PATCH .../dormantMembers/2 memberStatus=CLEAR, first
    // with the member service down (#Fail), then back up (#Success).
    let exit = system.member.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}");
    let (status, body) = system.patch("//dormantMembers/2", "CLEAR").await;
    assert_eq!(status, 503, "the member side is down: {body}");
    system.member = command_api(&system.database, system.member_port, None);
    wait_ready(
        &system.http,
        &format!("http://127.0.0.1:{}/ready", system.member_port),
    )
    .await;
    let (status, body) = system.patch("//dormantMembers/2", "CLEAR").await;
    assert_eq!((status, status_of(&body)), (200, "CLEARED"), "{body}");
    let rejoined = body["rejoinedMemberId"]
        .as_str()
        .expect("a member")
        .to_owned();
    system
        .until(&format!("/members/{rejoined}"), |b| {
            b["memberStatus"] == "READY"
        })
        .await;
}

async fn list_and_local_examples(system: &System) {
    // (Scenario 5) http GET .../managerpages/
    let page = system
        .until("/managerpages/", |b| {
            // Both targets, the release projected too (the read side is
            // eventually consistent).
            b["items"].as_array().is_some_and(|items| {
                let mut statuses: Vec<&str> = items.iter().map(status_of).collect();
                statuses.sort_unstable();
                statuses == ["CLEARED", "DESTRUCTION"]
            })
        })
        .await;
    let mut statuses: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(status_of)
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["CLEARED", "DESTRUCTION"]);

    // The local examples: http POST :8082//dormantMembers ..., http PATCH
    // :8082//dormantMembers/3 memberStatus=DORMANT, http GET
    // :8084/managerpages/3; and the load test's join.
    let (status, body) = system
        .post(
            "//dormantMembers",
            json!({ "phoneNo": "01085581234", "nickname": "DOR1", "memberStatus": "Pre-Dormant", "memberId": "2" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, _) = system
        .patch(&format!("//dormantMembers/{id}"), "DORMANT")
        .await;
    assert_eq!(status, 200);
    system
        .until(&format!("/managerpages/{id}"), |b| {
            status_of(b) == "DORMANT"
        })
        .await;
    let (status, body) = system
        .post(
            "/members",
            json!({ "phoneNo": "01085580000", "nickname": "SEQ1", "memberStatus": "READY" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}
