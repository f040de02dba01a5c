//! Zero-downtime restarts behind the gateway: two command-API processes
//! behind Debian's nginx with `deploy/gateway/gateway.conf.template`; a
//! bounded request loop runs through the gateway while one instance, then
//! the other, is stopped with SIGTERM (draining what it is serving) and
//! started again; every request succeeds and every success is in the log.
//! And the reason it holds: a command whose answer is lost is passed to the
//! next instance with the gateway's idempotency key, and runs once.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mileage_service::auth::Role;
use mileage_store::testing::Service;
use serde_json::json;

use mileage_e2e::{JWT_SECRET, binary, eventually, free_port, start_gateway, token, wait_ready};

fn command_api(database: &str, port: u16) -> Service {
    Service(
        Command::new(binary("mileage-command-api"))
            .env_clear()
            .envs(mileage_e2e::store_env(database))
            .env("DATABASE_URL", database)
            .env("COMMAND_API_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_HS256_SECRET", JWT_SECRET)
            .env("PHONE_INDEX_SECRET", "gateway-test-phone-index-secret")
            .env("RUST_LOG", "warn")
            .env("RATE_LIMIT_JOINS_PER_MINUTE", "0")
            .env("RATE_LIMIT_COMMANDS_PER_SECOND", "0")
            .spawn()
            .expect("the command API starts"),
    )
}

/// One command-API instance on a fresh database behind the gateway,
/// letting `joins_per_minute` joins through per address.
struct Single {
    http: reqwest::Client,
    port: u16,
    gateway: String,
    dir: std::path::PathBuf,
    _processes: (Service, Service),
}

impl Single {
    async fn start(joins_per_minute: u32) -> Self {
        let database = mileage_store::testing::fresh_database().await;
        let http = reqwest::Client::new();
        let port = free_port();
        let instance = command_api(&database, port);
        wait_ready(&http, &format!("http://127.0.0.1:{port}/ready")).await;
        let (process, gateway, dir) = start_gateway(&http, &[port], joins_per_minute).await;
        Self {
            http,
            port,
            gateway,
            dir,
            _processes: (instance, process),
        }
    }
}

/// SIGTERM, a clean exit, then the same instance again, ready.
async fn restart(instance: &mut Service, database: &str, port: u16, http: &reqwest::Client) {
    let exit = instance.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "SIGTERM drains and exits cleanly: {exit}");
    *instance = command_api(database, port);
    wait_ready(http, &format!("http://127.0.0.1:{port}/ready")).await;
}

/// What one client of the loop did.
struct Tally {
    member: String,
    earned: u64,
    joins: u64,
    failures: Vec<String>,
}

/// One client of the loop: joins as its own member, then alternately joins
/// a new member and earns a point for its own, until `stop`.
async fn client_loop(
    http: reqwest::Client,
    gateway: String,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    client: u32,
) -> Tally {
    let joined = http
        .post(format!("{gateway}/members"))
        .json(&json!({ "phoneNo": format!("0107777000{client}"), "nickname": "steady" }))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 201);
    let member: serde_json::Value = joined.json().await.unwrap();
    let member = member["memberId"].as_str().unwrap().to_owned();
    let awarder_token = token("shop-1", Role::Partner);
    let (mut earned, mut joins, mut failures) = (0u64, 0u64, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        n += 1;
        let response = if n.is_multiple_of(2) {
            http.post(format!("{gateway}/members"))
                .json(&json!({ "phoneNo": format!("0108{client}{n:06}"), "nickname": "j" }))
                .send()
                .await
        } else {
            http.post(format!("{gateway}/members/{member}/points/earn"))
                .bearer_auth(&awarder_token)
                .json(&json!({ "amount": 1 }))
                .send()
                .await
        };
        answered.fetch_add(1, Ordering::Relaxed);
        match response {
            Ok(r) if r.status().is_success() => {
                if n.is_multiple_of(2) {
                    joins += 1;
                } else {
                    earned += 1;
                }
            }
            Ok(r) => failures.push(format!(
                "{}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Tally {
        member,
        earned,
        joins,
        failures,
    }
}

#[tokio::test]
async fn restarting_each_command_api_in_turn_behind_the_gateway_loses_no_request() {
    let database = mileage_store::testing::fresh_database().await;
    let http = reqwest::Client::new();
    let (a_port, b_port) = (free_port(), free_port());
    let mut first = command_api(&database, a_port);
    let mut second = command_api(&database, b_port);
    wait_ready(&http, &format!("http://127.0.0.1:{a_port}/ready")).await;
    wait_ready(&http, &format!("http://127.0.0.1:{b_port}/ready")).await;

    let (_gateway, gateway, dir) = start_gateway(&http, &[a_port, b_port], 60_000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..4u32 {
        let (http, gateway, stop) = (http.clone(), gateway.clone(), Arc::clone(&stop));
        let answered = Arc::clone(&answered);
        clients.push(tokio::spawn(client_loop(
            http, gateway, stop, answered, client,
        )));
    }
    // Traffic before, between and after the restarts: each time the
    // clients have had another 40 answers.
    let traffic = || async {
        let from = answered.load(Ordering::Relaxed);
        eventually("40 more answers", Duration::from_secs(60), || async {
            (answered.load(Ordering::Relaxed) >= from + 40).then_some(())
        })
        .await;
    };
    traffic().await;
    restart(&mut first, &database, a_port, &http).await;
    traffic().await;
    restart(&mut second, &database, b_port, &http).await;
    traffic().await;
    stop.store(true, Ordering::Relaxed);

    let (mut earned, mut joins, mut failures, mut members) = (0, 0, Vec::new(), Vec::new());
    for client in clients {
        let tally = client.await.unwrap();
        earned += tally.earned;
        joins += tally.joins;
        failures.extend(tally.failures);
        members.push(tally.member);
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        earned + joins + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(
        earned > 20 && joins > 20,
        "the loop ran throughout: {earned} earns, {joins} joins"
    );

    let store = mileage_e2e::event_store(&database).await;
    let mut points = 0;
    for member in members {
        let stream = store
            .read_stream(&format!("member-{member}"), 0, 100_000)
            .await
            .unwrap();
        points += stream
            .iter()
            .filter(|e| e.event_type == "PointsEarned")
            .count() as u64;
    }
    assert_eq!(points, earned, "every success is in the log, once");
    let _ = std::fs::remove_dir_all(dir);
}

/// What the lossy instance saw of one request: its path and the key it came
/// with.
type Seen = Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A command-API instance whose answers are lost: it passes each request on
/// to `real` (so the command runs) and then closes the connection without
/// answering, as an instance that dies after committing would. Returns its
/// port and what it saw.
async fn lossy_instance(real: String) -> (u16, Seen) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Seen::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while let Ok((socket, _)) = listener.accept().await {
            let mut reader = tokio::io::BufReader::new(socket);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = request_line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let mut headers = reqwest::header::HeaderMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                let Some((name, value)) = line.trim_end().split_once(':') else {
                    break;
                };
                headers.insert(
                    reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                    value.trim().parse().unwrap(),
                );
            }
            let length: usize = headers
                .get("content-length")
                .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.unwrap();
            let key = headers
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_owned());
            record.lock().unwrap().push((path.clone(), key));
            for hop in ["connection", "content-length", "host"] {
                headers.remove(hop);
            }
            let ran = http
                .request(method.parse().unwrap(), format!("{real}{path}"))
                .headers(headers)
                .body(body)
                .send()
                .await
                .expect("the real instance answers");
            assert!(
                ran.status().is_success(),
                "the command ran: {}",
                ran.status()
            );
            drop(reader);
        }
    });
    (port, seen)
}

#[tokio::test]
async fn a_command_whose_answer_is_lost_is_passed_to_the_next_instance_and_runs_once() {
    let database = mileage_store::testing::fresh_database().await;
    let http = reqwest::Client::new();
    let real_port = free_port();
    let _real = command_api(&database, real_port);
    let real = format!("http://127.0.0.1:{real_port}");
    wait_ready(&http, &format!("{real}/ready")).await;
    let (lossy_port, seen) = lossy_instance(real.clone()).await;
    let (_gateway, gateway, dir) = start_gateway(&http, &[lossy_port, real_port], 60_000).await;

    let joined = http
        .post(format!("{real}/members"))
        .json(&json!({ "phoneNo": "01066660000", "nickname": "lossy" }))
        .send()
        .await
        .unwrap();
    let member = joined.json::<serde_json::Value>().await.unwrap()["memberId"]
        .as_str()
        .unwrap()
        .to_owned();
    let awarder_token = token("shop-1", Role::Partner);
    let mut replayed = 0;
    let mut balance = 0;
    for n in 1..=8 {
        let mut request = http
            .post(format!("{gateway}/members/{member}/points/earn"))
            .bearer_auth(&awarder_token)
            .json(&json!({ "amount": 10 }));
        if n == 8 {
            request = request.header("Idempotency-Key", "the-client-s-own");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "earn {n} through the gateway");
        let answered_key = response
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if n == 8 {
            assert_eq!(answered_key.as_deref(), Some("the-client-s-own"));
        } else {
            assert!(
                answered_key.is_some_and(|k| k.len() == 32),
                "the gateway answers the key it made, for a retry"
            );
        }
        replayed += usize::from(response.headers().contains_key("idempotent-replayed"));
        balance = response.json::<serde_json::Value>().await.unwrap()["balance"]
            .as_i64()
            .unwrap();
        assert_eq!(
            balance,
            10 * n,
            "earn {n} ran once, whichever instance ran it"
        );
    }

    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the lossy instance got its turns");
    assert_eq!(replayed, seen.len(), "each lost answer was answered again");
    for (path, key) in &seen {
        let key = key
            .as_deref()
            .unwrap_or_else(|| panic!("{path} came without a key"));
        assert!(
            key == "the-client-s-own"
                || (key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit())),
            "the gateway keeps a client's key and makes one otherwise: {key}"
        );
    }
    let stream = mileage_e2e::event_store(&database)
        .await
        .read_stream(&format!("member-{member}"), 0, 100)
        .await
        .unwrap();
    assert_eq!(
        stream.len(),
        9,
        "joined, then earned eight times, each once"
    );
    assert_eq!(balance, 80);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_gateway_answers_429_to_joins_past_its_limit_per_address() {
    // One join a minute, bursts of 20: the 22nd join in a row is refused.
    let single = Single::start(1).await;
    let (http, gateway, dir) = (&single.http, &single.gateway, single.dir.clone());
    let mut statuses = Vec::new();
    let mut refused = None;
    for n in 0..25u32 {
        let response = http
            .post(format!("{gateway}/members"))
            .json(&json!({ "phoneNo": format!("0109{n:07}"), "nickname": "burst" }))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 && refused.is_none() {
            let retry = response.headers().get("retry-after").cloned();
            let kind = response.headers().get("content-type").cloned();
            refused = Some((
                retry,
                kind,
                response.json::<serde_json::Value>().await.unwrap(),
            ));
        }
    }
    let joined = statuses.iter().filter(|s| **s == 201).count();
    assert!((1..=21).contains(&joined), "{statuses:?}");
    let (retry, kind, body) = refused.expect("a join past the limit is refused");
    assert!(retry.is_some(), "Retry-After");
    assert_eq!(kind.unwrap(), "application/problem+json");
    assert_eq!(body["code"], "rate_limit.joins", "{body}");
    assert_eq!(body["status"], 429);
    let reads = http
        .get(format!("{gateway}/health"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(reads, 200, "only joins are limited");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_source_documents_double_slashes_pass_the_gateway() {
    let single = Single::start(60_000).await;
    let (http, gateway, dir) = (&single.http, &single.gateway, single.dir.clone());
    let manager = token("ops", mileage_service::auth::Role::Manager);
    // http POST http://localhost:8082//dormantMembers phoneNo=01085581234 ...
    let registered = http
        .post(format!("{gateway}//dormantMembers"))
        .bearer_auth(&manager)
        .json(&json!({ "phoneNo": "01085581234", "nickname": "DOR1", "memberStatus": "Pre-Dormant", "memberId": "2" }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let id = registered.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // http PATCH http://localhost:8082//dormantMembers/1 memberStatus=DORMANT
    let dormant = http
        .patch(format!("{gateway}//dormantMembers/{id}"))
        .bearer_auth(&manager)
        .json(&json!({ "memberStatus": "DORMANT" }))
        .send()
        .await
        .unwrap();
    assert_eq!(dormant.status(), 200);
    let _ = std::fs::remove_dir_all(dir);
}

/// A refusal's status, media type and code, from the service itself or
/// through the gateway.
async fn refusal(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.unwrap();
    let code = serde_json::from_str::<serde_json::Value>(&body).map_or_else(
        |_| format!("not JSON: {}", body.chars().take(80).collect::<String>()),
        |v| v["code"].as_str().unwrap_or_default().to_owned(),
    );
    (status, kind, code)
}

#[tokio::test]
async fn bad_bodies_of_any_size_get_the_services_problem_json_through_the_gateway() {
    let single = Single::start(60_000).await;
    let (http, gateway, dir) = (&single.http, &single.gateway, single.dir.clone());
    let direct = format!("http://127.0.0.1:{}", single.port);
    let padded = |bytes: usize| {
        format!(
            r#"{{"phoneNo":"01012345678","nickname":"{}"}}"#,
            "x".repeat(bytes)
        )
    };
    // 20 KiB: past the command API's 16 KiB and nginx's in-memory buffer,
    // so the gateway writes it to its temp folder before passing it on;
    // 100 KiB and 2 MiB: past the gateway's own 64 KiB.
    let bodies = [
        (
            "20 KiB",
            padded(20 * 1024),
            413,
            "request.payload_too_large",
        ),
        (
            "100 KiB",
            padded(100 * 1024),
            413,
            "request.payload_too_large",
        ),
        (
            "2 MiB",
            padded(2 * 1024 * 1024),
            413,
            "request.payload_too_large",
        ),
        (
            "malformed",
            "{\"phoneNo\":".to_owned(),
            400,
            "request.malformed_body",
        ),
        (
            "wrongly typed",
            r#"{"phoneNo":1,"nickname":[]}"#.to_owned(),
            400,
            "request.malformed_body",
        ),
    ];
    for (what, body, status, code) in bodies {
        let send = |base: String| {
            http.post(format!("{base}/members"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
        };
        let through = refusal(send(gateway.clone()).await.unwrap()).await;
        assert_eq!(
            through,
            (
                status,
                "application/problem+json".to_owned(),
                code.to_owned()
            ),
            "{what} through the gateway (its log: {})",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        if body.len() <= 64 * 1024 {
            let alone = refusal(send(direct.clone()).await.unwrap()).await;
            assert_eq!(through, alone, "{what}: the gateway answers as the service");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
