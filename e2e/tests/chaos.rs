//! The crash loop and history checker: two command-API processes behind the
//! gateway and a projector, all real processes, under a random mix of
//! commands from 16 clients (join, earn, use, withdraw, register a target,
//! mark it dormant, release it), while a killer SIGKILLs one of them every
//! few seconds and starts it again. Clients retry every command with its own
//! `Idempotency-Key` until it gets a definitive answer, as a careful client
//! does; one command in five is sent twice at once with the same key (a
//! double click, or a retry that overlaps its first attempt, often on the
//! other instance), and the key's lease is a second, so retries after a
//! kill or a stall take the key over while the first attempt may still run.
//! At every third such moment, instead of a kill, every append stalls for
//! longer than the lease (on PostgreSQL a transaction holds a lock on the
//! events table; the EventStoreDB double holds its appends), so second
//! attempts take over while first ones wait. Each client keeps a sequential
//! model of what it was told. At the end (every process up again, every
//! retry answered) the log and the read models are checked against the
//! model:
//!
//! - both attempts of a duplicated command answered the same;
//! - every acknowledged command was applied exactly once and nothing else
//!   was (each member's earns and uses in the log are exactly the
//!   acknowledged ones, and the balance is their sum; as many members joined
//!   and targets registered as were acknowledged; each target's status and
//!   re-joined member are the acknowledged ones, and the member exists);
//! - no phone number is held by a member that does not exist or withdrew;
//! - every withdrawn member's person key is gone and their read-model rows
//!   show nothing of them;
//! - nothing of a withdrawn member is anywhere: every table, the log
//!   opened with the keys that remain and exported, the services' logs (at
//!   info) and their exported spans, searched for their number, nickname
//!   and claim ([`mileage_e2e::search`]);
//! - every read model equals a fresh rebuild (`replay verify`).
//!
//! It runs on the PostgreSQL log and on the EventStoreDB wire double (a
//! store that appends a command's parts in order, so a kill between them
//! leaves a part that the retry completes). `CHAOS_SECONDS` sets how long
//! the commands run (45 s on PostgreSQL and 20 s on the double by default,
//! so the test command stays short; `CHAOS_SECONDS=150` for the long form).
//! The counts are printed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mileage_e2e::search::{Person, Search, claim_stream, span_collector};
use mileage_e2e::{JWT_SECRET, binary, free_port, read_client, start_gateway, wait_ready};
use mileage_store::EventStore;
use mileage_store::testing::{Service, fresh_database};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Mutex;

const CLIENTS: u32 = 16;
const PHONE_SECRET: &str = "chaos-test-phone-index-secret";

/// Where a run's services keep their data: a throwaway database, and the
/// event store (its PostgreSQL log, or EventStoreDB when `eventstoredb` is
/// set).
struct Place {
    database: String,
    eventstoredb: Option<String>,
    /// The EventStoreDB double, when the log is there.
    double: Option<mileage_store::esdb_double::Double>,
    /// Where the services' logs go, one file each, appended to across
    /// restarts.
    logs: std::path::PathBuf,
    /// The span collector's URL, and what it was sent.
    traces: String,
    spans: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Place {
    /// A fresh database, the log there or on `double`.
    async fn new(double: Option<mileage_store::esdb_double::Double>) -> Self {
        let logs = std::env::temp_dir().join(format!("mileage-chaos-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&logs).expect("a folder for the logs");
        let (traces, spans) = span_collector().await;
        Self {
            database: fresh_database().await,
            eventstoredb: double.as_ref().map(mileage_store::esdb_double::Double::url),
            double,
            logs,
            traces,
            spans,
        }
    }

    /// The settings every service gets: the store, its log file (at info,
    /// searched for the erased at the end) and the span collector.
    fn service(&self, binary_name: &str) -> std::process::Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{binary_name}.log")))
            .expect("the log file opens");
        let mut command = std::process::Command::new(binary(binary_name));
        command
            .env_clear()
            .envs(self.store_env())
            .env("DATABASE_URL", &self.database)
            .env("RUST_LOG", "info")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &self.traces)
            .stdout(std::process::Stdio::from(
                log.try_clone().expect("a second handle"),
            ))
            .stderr(std::process::Stdio::from(log));
        command
    }

    /// The event store settings the services get.
    fn store_env(&self) -> Vec<(&'static str, String)> {
        match &self.eventstoredb {
            Some(url) => vec![("EVENTSTOREDB_URL", url.clone())],
            None => mileage_e2e::store_env(&self.database),
        }
    }

    /// Holds every append back for `stall`, as a writer holding a lock
    /// does: on PostgreSQL a transaction locking the events table against
    /// inserts; on the double, its own stall.
    async fn stall_appends(&self, stall: Duration) {
        if let Some(double) = &self.double {
            double.behave(|b| b.stall_appends = Some(stall));
            tokio::time::sleep(stall).await;
            double.behave(|b| b.stall_appends = None);
            return;
        }
        let client = read_client(&self.database).await;
        client
            .batch_execute("BEGIN; LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
            .await
            .expect("the lock is taken");
        tokio::time::sleep(stall).await;
        client
            .batch_execute("COMMIT")
            .await
            .expect("the lock is let go");
    }

    /// The event store, to check the log.
    async fn event_store(&self) -> Arc<dyn EventStore> {
        match &self.eventstoredb {
            Some(url) => Arc::new(
                mileage_store::eventstoredb::EsdbEventStore::connect(url)
                    .expect("the double's URL is valid"),
            ),
            None => mileage_e2e::event_store(&self.database).await,
        }
    }
}

fn command_api(place: &Place, port: u16) -> Service {
    Service(
        place
            .service("mileage-command-api")
            .env("COMMAND_API_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_HS256_SECRET", JWT_SECRET)
            .env("PHONE_INDEX_SECRET", PHONE_SECRET)
            .env("IDEMPOTENCY_LEASE_SECS", "1")
            // One address, one token, as fast as it can: not what the
            // limits are for (they have their own tests).
            .env("RATE_LIMIT_JOINS_PER_MINUTE", "0")
            .env("RATE_LIMIT_COMMANDS_PER_SECOND", "0")
            .spawn()
            .expect("the command API starts"),
    )
}

fn projector(place: &Place) -> Service {
    Service(
        place
            .service("mileage-projector")
            .env("PROJECTOR_ADDR", "127.0.0.1:0")
            .spawn()
            .expect("the projector starts"),
    )
}

/// What the clients were told: the sequential model the log is checked
/// against.
#[derive(Default)]
struct Acknowledged {
    /// Acknowledged earns and uses, signed, per member.
    points: HashMap<String, Vec<i64>>,
    withdrawn: Vec<String>,
    /// Members joined, by a join or by a release.
    joined: Vec<String>,
    /// The number and nickname each member joined with (by a join).
    people: HashMap<String, (String, String)>,
    /// Each registered target's acknowledged status.
    targets: HashMap<String, &'static str>,
    /// The member each released target re-joined as.
    rejoined: HashMap<String, String>,
}

#[derive(Default)]
struct Counts {
    commands: AtomicU64,
    stalls: AtomicU64,
    duplicates: AtomicU64,
    retries: AtomicU64,
    in_flight: AtomicU64,
    refusals: AtomicU64,
    kills: AtomicU64,
}

/// Sends one command with a new key until it has a definitive answer; one
/// time in five, two attempts with that key at once, which must answer the
/// same.
async fn command(
    http: &reqwest::Client,
    gateway: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
    counts: &Counts,
) -> (u16, Value) {
    let key = uuid::Uuid::new_v4().to_string();
    counts.commands.fetch_add(1, Ordering::Relaxed);
    let attempt = || until_definitive(http, gateway, method.clone(), path, &body, &key, counts);
    if rand::rng().random_range(0..5) > 0 {
        return attempt().await;
    }
    counts.duplicates.fetch_add(1, Ordering::Relaxed);
    let (first, second) = tokio::join!(attempt(), attempt());
    assert_eq!(
        first, second,
        "{method} {path}: two attempts of one key answered differently"
    );
    first
}

/// Sends one attempt of a command until it has a definitive answer:
/// transport errors, 5xx and 409 `idempotency.in_flight` are retried with
/// the same key.
async fn until_definitive(
    http: &reqwest::Client,
    gateway: &str,
    method: reqwest::Method,
    path: &str,
    body: &Value,
    key: &str,
    counts: &Counts,
) -> (u16, Value) {
    let token = mileage_e2e::token("chaos", mileage_service::auth::Role::Manager);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let answer = http
            .request(method.clone(), format!("{gateway}{path}"))
            .header("Idempotency-Key", key)
            .bearer_auth(&token)
            .json(body)
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        if let Ok(response) = answer {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let in_flight = status == 409 && body["code"] == "idempotency.in_flight";
            if status < 500 && !in_flight {
                return (status, body);
            }
            if in_flight {
                counts.in_flight.fetch_add(1, Ordering::Relaxed);
            }
        }
        assert!(Instant::now() < deadline, "{method} {path} never answered");
        counts.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One client: joins members and earns, uses, withdraws for them; registers
/// targets for them, marks those dormant and releases them.
async fn client(
    n: u32,
    http: reqwest::Client,
    gateway: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acknowledged>>,
    counts: Arc<Counts>,
) {
    let mut members: Vec<String> = Vec::new();
    // Each target: id, status as acknowledged, the member it is for.
    let mut targets: Vec<(String, &'static str, String)> = Vec::new();
    let mut phones = 0u32;
    let send = |method, path: String, body| {
        let (http, gateway, counts) = (http.clone(), gateway.clone(), Arc::clone(&counts));
        async move { command(&http, &gateway, method, &path, body, &counts).await }
    };
    while !stop.load(Ordering::Relaxed) {
        let roll = rand::rng().random_range(0..100);
        if members.is_empty() || roll < 12 {
            phones += 1;
            let phone = format!("0105{n:03}{phones:04}");
            // Fixed width, so no nickname is part of another.
            let nickname = format!("chaos{n:03}x{phones:04}");
            let body = json!({ "phoneNo": phone, "nickname": nickname });
            let (status, body) = send(reqwest::Method::POST, "/members".into(), body).await;
            assert_eq!(status, 201, "a new number always joins: {body}");
            let member = body["memberId"].as_str().unwrap().to_owned();
            let mut acked = acked.lock().await;
            acked.joined.push(member.clone());
            acked.people.insert(member.clone(), (phone, nickname));
            members.push(member);
            continue;
        }
        let member = members[rand::rng().random_range(0..members.len())].clone();
        // Members with targets stay: what a withdrawal erases of their
        // targets, and when, is for the erasure tests to search.
        let has_targets = targets.iter().any(|t| t.2 == member);
        if roll < 15 && !has_targets {
            let path = format!("/members/{member}");
            let (status, body) = send(reqwest::Method::DELETE, path, Value::Null).await;
            assert_eq!(status, 200, "a member of ours withdraws: {body}");
            let mut acked = acked.lock().await;
            acked.withdrawn.push(member.clone());
            members.retain(|m| *m != member);
            continue;
        }
        if roll < 24 {
            phones += 1;
            let phone = format!("0106{n:03}{phones:04}");
            let body = json!({ "memberId": member, "phoneNo": phone, "nickname": "target" });
            let (status, body) = send(reqwest::Method::POST, "/dormantMembers".into(), body).await;
            assert_eq!(status, 201, "a target is registered: {body}");
            let id = body["id"].as_str().unwrap().to_owned();
            acked.lock().await.targets.insert(id.clone(), "PRE_DORMANT");
            targets.push((id, "PRE_DORMANT", member));
            continue;
        }
        let next = |from: &str| targets.iter().position(|(_, status, _)| *status == from);
        if let (true, Some(i)) = (roll < 30, next("PRE_DORMANT")) {
            let path = format!("/dormantMembers/{}/dormant", targets[i].0);
            let (status, body) = send(reqwest::Method::POST, path, json!({})).await;
            assert_eq!(status, 200, "a registered target becomes dormant: {body}");
            targets[i].1 = "DORMANT";
            acked
                .lock()
                .await
                .targets
                .insert(targets[i].0.clone(), "DORMANT");
            continue;
        }
        if let (true, Some(i)) = (roll < 36, next("DORMANT")) {
            let path = format!("/dormantMembers/{}/release", targets[i].0);
            let (status, body) = send(reqwest::Method::POST, path, json!({})).await;
            assert_eq!(status, 200, "a dormant target is released: {body}");
            assert_eq!(body["memberStatus"], "CLEARED", "{body}");
            let rejoined = body["rejoinedMemberId"].as_str().unwrap().to_owned();
            targets[i].1 = "CLEARED";
            let mut acked = acked.lock().await;
            acked.targets.insert(targets[i].0.clone(), "CLEARED");
            acked
                .rejoined
                .insert(targets[i].0.clone(), rejoined.clone());
            acked.joined.push(rejoined);
            continue;
        }
        let (kind, sign) = if roll < 75 { ("earn", 1) } else { ("use", -1) };
        let amount: i64 = rand::rng().random_range(1..=5);
        let path = format!("/members/{member}/points/{kind}");
        let (status, body) = send(reqwest::Method::POST, path, json!({ "amount": amount })).await;
        match status {
            200 => acked
                .lock()
                .await
                .points
                .entry(member)
                .or_default()
                .push(sign * amount),
            422 if body["code"] == "member.insufficient_points" => {
                counts.refusals.fetch_add(1, Ordering::Relaxed);
            }
            other => panic!("{kind} for {member} answered {other}: {body}"),
        }
    }
}

/// How long the commands run: `CHAOS_SECONDS`, or `default`.
fn seconds(default: u64) -> u64 {
    std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_under_sigkill_apply_exactly_once_and_the_read_models_equal_a_rebuild() {
    let place = Place::new(None).await;
    chaos(&place, seconds(45)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_the_eventstoredb_double_commands_under_sigkill_apply_exactly_once_too() {
    // A store that appends the parts of a command in order: a kill between
    // them leaves a part that the retry completes.
    let double = mileage_store::esdb_double::Double::start().await;
    let place = Place::new(Some(double)).await;
    chaos(&place, seconds(20)).await;
}

/// One run: the services at `place`, the clients and the killer for
/// `seconds`, then every check.
async fn chaos(place: &Place, seconds: u64) {
    let http = reqwest::Client::new();
    let ports = [free_port(), free_port()];
    let mut apis = [command_api(place, ports[0]), command_api(place, ports[1])];
    for port in ports {
        wait_ready(&http, &format!("http://127.0.0.1:{port}/ready")).await;
    }
    let mut projector_process = projector(place);
    // The gateway's join limit well beyond anything the clients can send
    // (a million a second): after a command API restarts, the joins queued
    // behind it arrive within a millisecond, more than a limit's burst of
    // 20 at a thousand a second lets through. The limit has its own tests.
    let (_gateway, gateway, dir) = start_gateway(&http, &ports, 60_000_000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let counts = Arc::new(Counts::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client(
                n,
                http.clone(),
                gateway.clone(),
                Arc::clone(&stop),
                Arc::clone(&acked),
                Arc::clone(&counts),
            ))
        })
        .collect();

    // The killer: every 2 to 5 seconds, SIGKILL one process and start it
    // again, or stall every append for longer than the key's lease (a
    // held lock), so retries take over from attempts still running.
    let started = Instant::now();
    let mut round = 0u32;
    while started.elapsed() < Duration::from_secs(seconds) {
        let pause = rand::rng().random_range(2_000..5_000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        round += 1;
        // Every third moment a stall, so every run has some.
        let victim = if round % 3 == 1 {
            3
        } else {
            rand::rng().random_range(0..3)
        };
        if victim == 3 {
            counts.stalls.fetch_add(1, Ordering::Relaxed);
            let stall = rand::rng().random_range(1_200..2_500);
            place.stall_appends(Duration::from_millis(stall)).await;
            continue;
        }
        counts.kills.fetch_add(1, Ordering::Relaxed);
        if victim < 2 {
            let _ = apis[victim].0.kill();
            let _ = apis[victim].0.wait();
            apis[victim] = command_api(place, ports[victim]);
        } else {
            let _ = projector_process.0.kill();
            let _ = projector_process.0.wait();
            projector_process = projector(place);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for port in ports {
        wait_ready(&http, &format!("http://127.0.0.1:{port}/ready")).await;
    }
    for client in clients {
        client.await.expect("a client finishes");
    }
    let acked = acked.lock().await;

    let store = place.event_store().await;
    let mut checks = exactly_once(&*store, &acked).await;
    let all = the_log_once_every_join_shows(&*store, &acked).await;
    checks += nothing_else_applied(&all, &acked);
    checks += targets_as_acknowledged(&*store, &acked).await;
    checks += numbers_held_by_members(&*store, &place.database, &all).await;
    checks += withdrawn_are_erased(&*store, &place.database, &acked).await;
    projector_process.terminate(Duration::from_secs(60)).await;
    checks += read_models_equal_a_rebuild(place);
    checks += nothing_of_the_withdrawn_anywhere(place, &acked).await;
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(&place.logs);

    println!(
        "chaos{}: {seconds} s, {} commands ({} joins, {} withdrawals, {} targets, {} releases, {} refusals), {} sent twice at once, {} retries ({} answered in flight), {} kills, {} stalls past the lease, {} log events, {checks} invariant checks",
        if place.eventstoredb.is_some() {
            " (EventStoreDB double)"
        } else {
            " (PostgreSQL)"
        },
        counts.commands.load(Ordering::Relaxed),
        acked.joined.len(),
        acked.withdrawn.len(),
        acked.targets.len(),
        acked.rejoined.len(),
        counts.refusals.load(Ordering::Relaxed),
        counts.duplicates.load(Ordering::Relaxed),
        counts.retries.load(Ordering::Relaxed),
        counts.in_flight.load(Ordering::Relaxed),
        counts.kills.load(Ordering::Relaxed),
        counts.stalls.load(Ordering::Relaxed),
        all.len(),
    );
}

/// Each member's earns and uses in the log are exactly the acknowledged
/// ones, and a withdrawal is there once if it was acknowledged.
async fn exactly_once(store: &dyn EventStore, acked: &Acknowledged) -> u64 {
    let mut checks = 0u64;
    for member in &acked.joined {
        let log = store
            .read_stream(&format!("member-{member}"), 0, 100_000)
            .await
            .unwrap();
        let mut applied: Vec<i64> = Vec::new();
        for event in &log {
            let data: Value = serde_json::from_slice(&event.data).unwrap();
            match event.event_type.as_str() {
                "PointsEarned" => applied.push(data["amount"].as_i64().unwrap()),
                "PointsUsed" => applied.push(-data["amount"].as_i64().unwrap()),
                _ => {}
            }
        }
        let mut expected = acked.points.get(member).cloned().unwrap_or_default();
        expected.sort_unstable();
        applied.sort_unstable();
        assert_eq!(
            applied, expected,
            "member {member}: the log has exactly the acknowledged commands"
        );
        let withdrawals = log
            .iter()
            .filter(|e| e.event_type == "MemberWithdrawn")
            .count();
        assert_eq!(
            withdrawals,
            usize::from(acked.withdrawn.contains(member)),
            "member {member}: withdrawn once if acknowledged, else not"
        );
        checks += 2;
    }

    checks
}

/// The global log as a reader sees it once every acknowledged join shows
/// (or after 30 s): a transaction still open elsewhere on the server (a
/// consumer's) hides the newest commits from the gap-free read for a
/// moment. What it holds is then checked to be exactly what was
/// acknowledged, no more.
async fn the_log_once_every_join_shows(
    store: &dyn EventStore,
    acked: &Acknowledged,
) -> Vec<mileage_store::RecordedEvent> {
    let joins = |all: &Vec<mileage_store::RecordedEvent>| {
        all.iter()
            .filter(|e| e.event_type == "MemberJoined")
            .count()
    };
    mileage_testkit::until(
        Duration::from_secs(30),
        || async { store.read_all(None, 10_000_000).await.unwrap() },
        |all| joins(all) >= acked.joined.len(),
    )
    .await
}

/// Nothing was applied that was not acknowledged: as many members joined
/// and targets registered as the clients were told, each once.
fn nothing_else_applied(all: &[mileage_store::RecordedEvent], acked: &Acknowledged) -> u64 {
    let count = |event_type: &str| all.iter().filter(|e| e.event_type == event_type).count();
    assert_eq!(
        count("MemberJoined"),
        acked.joined.len(),
        "one member per acknowledged join or release, none for a retry"
    );
    assert_eq!(
        count("DormantMemberRegistered"),
        acked.targets.len(),
        "one target per acknowledged registration, none for a retry"
    );
    assert_eq!(count("DormantMemberCleared"), acked.rejoined.len());
    3
}

/// Each target's stream says what its client was told: its status, one
/// event per step, and the member a release answered, who joined.
async fn targets_as_acknowledged(store: &dyn EventStore, acked: &Acknowledged) -> u64 {
    let mut checks = 0u64;
    for (target, status) in &acked.targets {
        let log = store
            .read_stream(&format!("dormantMember-{target}"), 0, 1_000)
            .await
            .unwrap();
        let steps: Vec<&str> = log.iter().map(|e| e.event_type.as_str()).collect();
        let expected: &[&str] = match *status {
            "PRE_DORMANT" => &["DormantMemberRegistered"],
            "DORMANT" => &["DormantMemberRegistered", "DormantMemberChanged"],
            _ => &[
                "DormantMemberRegistered",
                "DormantMemberChanged",
                "DormantMemberCleared",
            ],
        };
        assert_eq!(
            steps, expected,
            "target {target} is {status}, each step once"
        );
        if let Some(member) = acked.rejoined.get(target) {
            let cleared: Value = serde_json::from_slice(&log[2].data).unwrap();
            assert_eq!(
                cleared["rejoinedMemberId"],
                member.as_str(),
                "target {target}"
            );
            let joined = store
                .read_stream(&format!("member-{member}"), 0, 1)
                .await
                .unwrap();
            assert!(
                joined
                    .first()
                    .is_some_and(|e| e.event_type == "MemberJoined"),
                "the member target {target} re-joined as exists"
            );
            checks += 1;
        }
        checks += 1;
    }
    checks
}

/// No number is held by a member that does not exist or withdrew.
async fn numbers_held_by_members(
    store: &dyn EventStore,
    database: &str,
    all: &[mileage_store::RecordedEvent],
) -> u64 {
    let mut checks = 0u64;
    let mut holders: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for event in all.iter().filter(|e| e.stream.starts_with("memberPhone-")) {
        let data: Value = serde_json::from_slice(&event.data).unwrap();
        let holder = (event.event_type == "PhoneClaimed").then(|| data["holder"].clone());
        holders.insert(event.stream.clone(), holder);
    }
    let keys = mileage_e2e::person_keys(database).await;
    for holder in holders.values().flatten() {
        // The claim names its holder sealed under its own key, which lives
        // as long as the holder does.
        let sealed: mileage_domain::pii::Sealed = serde_json::from_value(holder.clone()).unwrap();
        let key = mileage_store::keys::KeyStore::get(&keys, &sealed.key_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("a held number's claim opens: {sealed:?}"));
        let holder = key.open(&sealed).unwrap();
        let log = store
            .read_stream(&format!("member-{holder}"), 0, 100_000)
            .await
            .unwrap();
        assert!(
            log.iter().any(|e| e.event_type == "MemberJoined")
                && !log.iter().any(|e| e.event_type == "MemberWithdrawn"),
            "the number held by {holder} belongs to an active member"
        );
        checks += 1;
    }

    checks
}

/// Once the projector has caught up, withdrawn members' keys are gone and
/// their rows show nothing of them.
async fn withdrawn_are_erased(store: &dyn EventStore, database: &str, acked: &Acknowledged) -> u64 {
    let mut checks = 0u64;
    let read = read_client(database).await;
    let head = store
        .head_position()
        .await
        .unwrap()
        .expect("the log has events");
    mileage_e2e::eventually(
        "every consumer reaches the head",
        Duration::from_secs(180),
        || async {
            let statuses = mileage_read_model::bookkeeping::statuses(&read)
                .await
                .ok()?;
            (statuses.len() >= 7 && statuses.iter().all(|s| s.checkpoint >= Some(head)))
                .then_some(())
        },
    )
    .await;
    let side = mileage_e2e::ReadSide::of(database);
    for member in &acked.withdrawn {
        let live = mileage_e2e::live_keys(database, &[format!("member-{member}")]).await;
        assert!(live.is_empty(), "member {member}'s key is gone");
        // The row holds the person sealed; with the key gone it opens to
        // nothing, which is what every read shows.
        let row = side.member(member).await.expect("the member's row");
        let sealed_with = mileage_read_model::people::key_ids([
            row.phone_sealed.as_deref(),
            row.nickname_sealed.as_deref(),
        ]);
        let live = mileage_e2e::live_keys(database, &sealed_with).await;
        assert!(live.is_empty(), "member {member} shows as erased: {live:?}");
        checks += 2;
    }

    checks
}

/// Every table and the log, opened with the keys that remain and exported,
/// searched for every withdrawn member's number and nickname.
async fn nothing_of_the_withdrawn_anywhere(place: &Place, acked: &Acknowledged) -> u64 {
    let erased: Vec<Person> = acked
        .withdrawn
        .iter()
        .map(|member| {
            let (phone, nickname) = acked.people[member].clone();
            Person {
                claim_stream: Some(claim_stream(PHONE_SECRET.as_bytes(), &phone)),
                phone,
                nickname,
                member_ids: vec![member.clone()],
            }
        })
        .collect();
    let mut search = Search::default();
    search.add_database(&place.database).await;
    search.add_replay(&place.database, &place.store_env());
    for name in ["mileage-command-api", "mileage-projector"] {
        let log = std::fs::read_to_string(place.logs.join(format!("{name}.log")))
            .expect("the service logged");
        assert!(!log.is_empty(), "{name} logged nothing");
        search.add_text(format!("{name} logs"), &log);
    }
    search.add_spans("exported spans", &place.spans);
    search.assert_nothing_of("chaos", &erased);
    erased.len() as u64
}

/// Every read model equals a fresh rebuild (`replay verify`).
fn read_models_equal_a_rebuild(place: &Place) -> u64 {
    let mut checks = 0u64;
    for projection in mileage_read_model::NAMES {
        let output = std::process::Command::new(binary("replay"))
            .env_clear()
            .envs(place.store_env())
            .env("DATABASE_URL", &place.database)
            .args(["verify", projection])
            .output()
            .expect("replay runs");
        assert!(
            output.status.success(),
            "{projection} differs from a rebuild: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        checks += 1;
    }

    checks
}
