//! The search of everything: the three services as real processes (logs
//! at debug for our crates, spans exported over OTLP to a collector
//! stand-in), every path that erases a person run through them, then every
//! place searched for every person erased: every table of the database
//! (events, keys, read models, idempotency answers, bookkeeping), the log
//! opened with the keys that remain (`replay inspect --reveal`), a `replay
//! export`, the services' logs, their metrics, the exported spans and the
//! query API's answers. A person who stays is searched for too, and must be
//! found where the keys that remain open their data: the search can find.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mileage_e2e::search::{Person, Search, claim_stream, span_collector};
use mileage_e2e::{Gateway, JWT_SECRET, binary, eventually, free_port, read_client, wait_ready};
use mileage_service::auth::Role;
use mileage_store::testing::Service;
use serde_json::{Value, json};

const PHONE_SECRET: &str = "erasure-search-phone-secret";
const WAIT: Duration = Duration::from_secs(90);
/// Our crates at debug, everything else at info.
const LOG_FILTER: &str = "info,mileage_command_api=debug,mileage_projector=debug,\
    mileage_query_api=debug,mileage_service=debug,mileage_store=debug,mileage_read_model=debug";
/// Numbers whose notice the SMS gateway stand-in rejects.
const UNREACHABLE: [&str; 2] = ["01071110002", "01071110005"];

/// The system as processes, each logging to a file of its own.
struct System {
    database: String,
    dir: PathBuf,
    http: reqwest::Client,
    token: String,
    commands: String,
    query: String,
    projector: String,
    services: Vec<Service>,
    spans: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn service(name: &str, database: &str, dir: &Path, settings: &[(&str, String)]) -> Service {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Service(
        Command::new(binary(name))
            .env_clear()
            .envs(mileage_e2e::store_env(database))
            .env("DATABASE_URL", database)
            .env("JWT_HS256_SECRET", JWT_SECRET)
            .env("PHONE_INDEX_SECRET", PHONE_SECRET)
            .env("RUST_LOG", LOG_FILTER)
            .envs(settings.iter().cloned())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}")),
    )
}

impl System {
    async fn start(gateway: &Gateway) -> Self {
        let database = mileage_store::testing::fresh_database().await;
        let dir = std::env::temp_dir().join(format!("mileage-erasure-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (traces, spans) = span_collector().await;
        let http = reqwest::Client::new();
        let ports = [free_port(), free_port(), free_port()];
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let otlp = ("OTEL_EXPORTER_OTLP_ENDPOINT", traces);
        let mut services = vec![service(
            "mileage-command-api",
            &database,
            &dir,
            &[
                ("COMMAND_API_ADDR", format!("127.0.0.1:{}", ports[0])),
                otlp.clone(),
            ],
        )];
        wait_ready(&http, &format!("{}/ready", url(ports[0]))).await;
        services.push(service(
            "mileage-projector",
            &database,
            &dir,
            &[
                ("PROJECTOR_ADDR", format!("127.0.0.1:{}", ports[1])),
                ("NOTIFIER_URL", gateway.url.clone()),
                ("NOTIFIER_BACKOFF_MS", "20".into()),
                ("NOTIFIER_MAX_ATTEMPTS", "2".into()),
                otlp.clone(),
            ],
        ));
        services.push(service(
            "mileage-query-api",
            &database,
            &dir,
            &[("QUERY_API_ADDR", format!("127.0.0.1:{}", ports[2])), otlp],
        ));
        for port in &ports[1..] {
            wait_ready(&http, &format!("{}/ready", url(*port))).await;
        }
        Self {
            database,
            dir,
            http,
            token: mileage_e2e::token("ops", Role::Manager),
            commands: url(ports[0]),
            projector: url(ports[1]),
            query: url(ports[2]),
            services,
            spans,
        }
    }

    /// A command with an `Idempotency-Key`, as clients send them.
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.commands))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .expect("the command API answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn join(&self, phone: &str, nickname: &str) -> String {
        let body = json!({ "phoneNo": phone, "nickname": nickname });
        let (status, body) = self.send(reqwest::Method::POST, "/members", body).await;
        assert_eq!(status, 201, "{body}");
        body["memberId"].as_str().unwrap().to_owned()
    }

    async fn register(&self, member: &str, phone: &str, nickname: &str) -> (u16, Value) {
        let body = json!({ "memberId": member, "phoneNo": phone, "nickname": nickname });
        self.send(reqwest::Method::POST, "/dormantMembers", body)
            .await
    }

    async fn target(&self, member: &str, phone: &str, nickname: &str) -> String {
        let (status, body) = self.register(member, phone, nickname).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn dormant(&self, target: &str) {
        let path = format!("/dormantMembers/{target}/dormant");
        let (status, body) = self.send(reqwest::Method::POST, &path, json!({})).await;
        assert_eq!(status, 200, "{body}");
    }

    async fn release(&self, target: &str) -> (u16, Value) {
        let path = format!("/dormantMembers/{target}/release");
        self.send(reqwest::Method::POST, &path, json!({})).await
    }

    async fn withdraw(&self, member: &str) {
        let path = format!("/members/{member}");
        let (status, body) = self.send(reqwest::Method::DELETE, &path, Value::Null).await;
        assert_eq!(status, 200, "{body}");
    }

    async fn get(&self, base: &str, path: &str) -> String {
        self.http
            .get(format!("{base}{path}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the service answers")
            .text()
            .await
            .unwrap_or_default()
    }

    /// Waits until every consumer has read the whole log and none of
    /// `keys` is left.
    async fn settled(&self, keys: &[String]) {
        let client = read_client(&self.database).await;
        let store = mileage_e2e::event_store(&self.database).await;
        eventually("the read side at the head, the keys gone", WAIT, || async {
            let head = store.head_position().await.ok()??;
            let statuses = mileage_read_model::bookkeeping::statuses(&client)
                .await
                .ok()?;
            let at_head =
                statuses.len() >= 7 && statuses.iter().all(|s| s.checkpoint >= Some(head));
            let left = mileage_e2e::live_keys(&self.database, keys).await;
            (at_head && left.is_empty()).then_some(())
        })
        .await;
    }
}

/// What the paths erased, and where to look.
#[derive(Default)]
struct Outcome {
    erased: Vec<Person>,
    /// Keys that must be gone.
    keys: Vec<String>,
    /// Query API paths to read and search.
    paths: Vec<String>,
}

fn person(phone: &str, nickname: &str, member_ids: &[&str]) -> Person {
    Person {
        phone: phone.to_owned(),
        nickname: nickname.to_owned(),
        member_ids: member_ids.iter().map(|s| (*s).to_owned()).collect(),
        claim_stream: Some(claim_stream(PHONE_SECRET.as_bytes(), phone)),
    }
}

/// A member earns, then withdraws.
async fn withdraw(system: &System, out: &mut Outcome) {
    let member = system.join("01071110001", "erase-wd").await;
    let (status, _) = system
        .send(
            reqwest::Method::POST,
            &format!("/members/{member}/points/earn"),
            json!({ "amount": 5 }),
        )
        .await;
    assert_eq!(status, 200);
    system.withdraw(&member).await;
    out.erased
        .push(person("01071110001", "erase-wd", &[&member]));
    out.keys.push(format!("member-{member}"));
    out.paths.push(format!("/members/{member}"));
}

/// A member's target is destroyed: the notice to their number fails.
async fn destroy(system: &System, out: &mut Outcome) {
    let member = system.join(UNREACHABLE[0], "erase-ds").await;
    let target = system.target(&member, UNREACHABLE[0], "erase-ds").await;
    system.dormant(&target).await;
    out.erased
        .push(person(UNREACHABLE[0], "erase-ds", &[&member]));
    out.keys.extend([
        format!("member-{member}"),
        format!("dormantMember-{target}"),
    ]);
    out.paths.extend([
        format!("/members/{member}"),
        format!("/managerpages/{target}"),
        format!("/managerMessages/{target}"),
    ]);
}

/// A target is released (re-joined as a member), who then withdraws.
async fn release_then_withdraw(system: &System, out: &mut Outcome) {
    let target = system.target("quiet-rw", "01071110003", "erase-rw").await;
    system.dormant(&target).await;
    let (status, released) = system.release(&target).await;
    assert_eq!(status, 200, "{released}");
    let member = released["rejoinedMemberId"].as_str().unwrap().to_owned();
    system.withdraw(&member).await;
    out.erased
        .push(person("01071110003", "erase-rw", &["quiet-rw", &member]));
    out.keys.extend([
        format!("member-{member}"),
        format!("dormantMember-{target}"),
    ]);
    out.paths.extend([
        format!("/members/{member}"),
        format!("/managerpages/{target}"),
    ]);
}

/// A member withdraws, then is registered as a target: refused.
async fn withdraw_then_register(system: &System, out: &mut Outcome) {
    let member = system.join("01071110004", "erase-wr").await;
    system.withdraw(&member).await;
    let (status, refused) = system.register(&member, "01071110004", "erase-wr").await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "dormant_member.member_withdrawn");
    out.erased
        .push(person("01071110004", "erase-wr", &[&member]));
    out.keys.push(format!("member-{member}"));
}

/// A release racing the destruction its failed notice starts; whoever
/// wins, the person ends erased (re-joined, they withdraw).
async fn release_racing_destruction(system: &System, out: &mut Outcome) {
    let target = system.target("quiet-rc", UNREACHABLE[1], "erase-rc").await;
    system.dormant(&target).await;
    let (status, raced) = system.release(&target).await;
    let mut ids = vec!["quiet-rc".to_owned()];
    if status == 200 {
        let member = raced["rejoinedMemberId"].as_str().unwrap().to_owned();
        system.withdraw(&member).await;
        out.keys.push(format!("member-{member}"));
        ids.push(member);
    } else {
        assert_eq!(status, 409, "{raced}");
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    out.erased.push(person(UNREACHABLE[1], "erase-rc", &ids));
    out.keys.push(format!("dormantMember-{target}"));
    out.paths.push(format!("/managerpages/{target}"));
}

/// Every path that erases someone, once, and someone who stays (with a
/// target of their own).
async fn every_path(system: &System) -> (Outcome, Person) {
    let mut out = Outcome::default();
    withdraw(system, &mut out).await;
    destroy(system, &mut out).await;
    release_then_withdraw(system, &mut out).await;
    withdraw_then_register(system, &mut out).await;
    release_racing_destruction(system, &mut out).await;
    let member = system.join("01071119999", "kept-ctl").await;
    let target = system.target(&member, "01071119999", "kept-ctl").await;
    out.paths.extend([
        format!("/members/{member}"),
        format!("/managerpages/{target}"),
    ]);
    (out, person("01071119999", "kept-ctl", &[&member]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_every_erasing_path_nothing_of_the_erased_is_left_anywhere() {
    let gateway = Gateway::start(&UNREACHABLE).await;
    let mut system = System::start(&gateway).await;
    let (out, kept) = every_path(&system).await;
    system.settled(&out.keys).await;

    let mut search = Search::default();
    let mut answers = Vec::new();
    for path in &out.paths {
        answers.push(format!("{path}: {}", system.get(&system.query, path).await));
    }
    answers.push(system.get(&system.query, "/managerpages").await);
    search.add("query API answers", answers);
    for (name, base) in [
        ("command API", &system.commands),
        ("projector", &system.projector),
        ("query API", &system.query),
    ] {
        let text = mileage_e2e::metrics(&system.http, base).await;
        search.add_text(format!("{name} metrics"), &text);
    }
    // Stopped as an orchestrator stops them: logs and spans flushed.
    for service in &mut system.services {
        service.terminate(Duration::from_secs(60)).await;
    }
    for name in [
        "mileage-command-api",
        "mileage-projector",
        "mileage-query-api",
    ] {
        let log = std::fs::read_to_string(system.dir.join(format!("{name}.log"))).unwrap();
        assert!(!log.is_empty(), "{name} logged nothing");
        search.add_text(format!("{name} log"), &log);
    }
    assert!(
        !system.spans.lock().unwrap().is_empty(),
        "no span was exported"
    );
    search.add_spans("exported spans", &system.spans);
    search.add_database(&system.database).await;
    search.add_replay(&system.database, &mileage_e2e::store_env(&system.database));

    let found = search.hits(&kept);
    let claim = kept.claim_stream.as_deref().unwrap_or_default();
    assert!(
        found
            .iter()
            .any(|hit| hit.starts_with("replay inspect --reveal"))
            && found.iter().any(|hit| hit.starts_with("query API answers"))
            && found.iter().any(|hit| hit.contains(claim)),
        "the one who stays is found where live keys open their data (their number's claim too): {found:#?}"
    );
    search.assert_nothing_of("every path", &out.erased);
    inventory_names_every_place(&system.database).await;
    let _ = std::fs::remove_dir_all(&system.dir);
}

/// The inventory (`docs/erasure.md`, "Where personal data is") names every
/// table the system made and every event type that carries sealed data: a
/// new place cannot hold personal data without the page saying how it is
/// erased.
async fn inventory_names_every_place(database: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let page = std::fs::read_to_string(root.join("docs/erasure.md")).expect("the erasure page");
    let inventory = page
        .split("## Where personal data is")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the inventory section");
    let client = read_client(database).await;
    let tables: Vec<String> = client
        .query(
            "SELECT CASE WHEN table_schema = 'public' THEN table_name
                         ELSE table_schema || '.' || table_name END
               FROM information_schema.tables
              WHERE table_type = 'BASE TABLE'
                AND table_schema NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut missing: Vec<String> = tables
        .iter()
        .filter(|table| !inventory.contains(&format!("`{table}`")))
        .map(|table| format!("table {table}"))
        .collect();
    for entry in std::fs::read_dir(root.join("schemas/events")).unwrap() {
        let path = entry.unwrap().path();
        let schema = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let event_type = name.split('.').next().unwrap_or_default().to_owned();
        if schema.contains("\"keyId\"") && !inventory.contains(&format!("`{event_type}`")) {
            missing.push(format!("event {event_type} (sealed data)"));
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "docs/erasure.md does not say how these are erased: {missing:?}"
    );
    println!(
        "inventory: {} tables and every event type with sealed data named",
        tables.len()
    );
}
