//! Commands per second and latency over HTTP: `join`, and `earn points` on
//! fresh members and on members with 1,000 prior events, at 8, 32 and 64
//! concurrent clients. The service runs in this process on a random port; the
//! load generator is a small reqwest client on the same machine. Prints
//! numbers; asserts nothing.
//!
//! `bash deploy/local/with-pg.sh cargo bench -p mileage-command-api --bench commands`
//! Settings: `BENCH_SECONDS` (default 5), `BENCH_RUNS` (median of, default 3),
//! `BENCH_CLIENTS` (comma-separated client counts, default `8,32,64`),
//! `BENCH_ONLY` (`join` or `earn`: that measurement alone), `BENCH_LIMITS`
//! (`on`: the rate limits run, with quotas too large to refuse anything, to
//! measure what checking them costs; off by default), `BENCH_TRACES`
//! (`otlp`: spans recorded and exported over OTLP to a sink in this process,
//! to measure what tracing costs; off by default, as in production without
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), `BENCH_KEYS` (`both`, the default: every
//! measurement without and with a fresh `Idempotency-Key` on each request,
//! as every command carries through the gateway; `on` or `off`: one of
//! them), `BENCH_STORE` (`postgres`, the default; or `double`: the
//! EventStoreDB adapter on the in-process wire double, to compare the
//! adapter's paths, not to measure a server), `BENCH_DOUBLE_VERSION` (the
//! version the double reports, default `25.1.0`, whose multi-stream append
//! is atomic; `24.10.0`: a command's parts go in one by one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use mileage_command_api::config::Settings;
use mileage_command_api::startup::Application;
use mileage_domain::envelope::Causation;
use mileage_domain::ids::MemberId;
use mileage_domain::member::{MemberEvent, PointsEarned};
use mileage_domain::values::Points;
use mileage_service::auth::{Role, mint_hs256};
use mileage_store::{EventStore, ExpectedVersion, NewEvent};
use mileage_testkit::Sample;
use serde_json::json;
use uuid::Uuid;

const SECRET: &str = "benchmark-jwt-secret-of-32-bytes-or-more";
const MEMBERS: u64 = 64;
const HISTORY: u64 = 1_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `clients` loops sending the request `make(client)` builds, for `seconds`.
/// Each client has its own index, so a benchmark can give each its own
/// member (no contention between clients).
async fn load<F>(clients: u64, seconds: u64, make: F) -> Sample
where
    F: Fn(u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let make = Arc::clone(&make);
            tokio::spawn(async move {
                let mut micros = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let response = make(client).send().await.expect("the service answers");
                    assert!(response.status().is_success(), "{}", response.status());
                    micros.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                micros
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    Sample::of(all, started.elapsed())
}

/// Whether each request carries a fresh `Idempotency-Key`, per
/// `BENCH_KEYS`.
fn key_modes() -> Vec<bool> {
    match std::env::var("BENCH_KEYS").as_deref() {
        Ok("on") => vec![true],
        Ok("off") => vec![false],
        _ => vec![false, true],
    }
}

/// `request`, with a fresh `Idempotency-Key` when `keyed`.
fn keyed(request: reqwest::RequestBuilder, keyed: bool) -> reqwest::RequestBuilder {
    if keyed {
        request.header("Idempotency-Key", Uuid::new_v4().to_string())
    } else {
        request
    }
}

/// How a measurement is labelled: `keyed` requests say so.
fn label(what: &str, keys: bool) -> String {
    if keys {
        format!("{what}, keyed")
    } else {
        what.to_owned()
    }
}

/// Gives member `id` a history of `HISTORY` earned points, appended directly.
async fn history(store: &dyn EventStore, id: &str) {
    let member_id = MemberId::parse(id).expect("an id");
    for chunk in 0..HISTORY / 100 {
        let events: Vec<NewEvent> = (0..100)
            .map(|i| {
                let n = chunk * 100 + i + 1;
                let event: MemberEvent = PointsEarned {
                    member_id: member_id.clone(),
                    amount: Points(1),
                    balance: Points(n),
                    at: Utc::now(),
                    expires_at: (Utc::now()) + mileage_domain::member::POINTS_VALID_FOR,
                }
                .into();
                NewEvent::from_domain(Uuid::now_v7(), &event, Causation::root(Uuid::now_v7()))
            })
            .collect();
        store
            .append(
                &format!("member-{id}"),
                ExpectedVersion::Exact(chunk * 100),
                &events,
            )
            .await
            .expect("history");
    }
}

/// Starts the service over a fresh database; returns its base URL, a manager
/// token, a client and the store under it (see `BENCH_STORE`).
async fn start() -> (String, String, reqwest::Client, Arc<dyn EventStore>) {
    let database_url = mileage_store::testing::fresh_database().await;
    let mut settings = Settings::with_defaults(&database_url, SECRET, "benchmark-phone-secret")
        .expect("valid settings");
    settings.addr = "127.0.0.1:0".parse().expect("an address");
    let double = if std::env::var("BENCH_STORE").as_deref() == Ok("double") {
        let double = mileage_store::esdb_double::Double::start().await;
        let version = std::env::var("BENCH_DOUBLE_VERSION")
            .unwrap_or_else(|_| mileage_store::esdb_double::VERSION.to_owned());
        double.behave(|b| b.version = Some(version));
        Some(double)
    } else {
        None
    };
    settings.eventstoredb_url = double.as_ref().map(mileage_store::esdb_double::Double::url);
    // One address and one token send everything: the limits would measure
    // themselves. With BENCH_LIMITS=on they run, but never refuse.
    settings.rate_limits = if std::env::var("BENCH_LIMITS").as_deref() == Ok("on") {
        let never = std::num::NonZeroU32::new(u32::MAX);
        mileage_service::settings::RateLimits {
            joins_per_minute: never,
            commands_per_second: never,
            auth_failures_per_minute: never,
            client_ip_header: None,
        }
    } else {
        mileage_service::settings::RateLimits::off()
    };
    let app = Application::build(&settings)
        .await
        .expect("the service starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let token = mint_hs256(SECRET.as_bytes(), "bench", Role::Manager, 3600).expect("a token");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .expect("a client");
    let store: Arc<dyn EventStore> = match &double {
        Some(double) => Arc::new(
            mileage_store::eventstoredb::EsdbEventStore::connect(&double.url())
                .expect("the double's URL"),
        ),
        None => Arc::new(
            mileage_store::postgres::PgEventStore::connect(&database_url)
                .await
                .expect("the store"),
        ),
    };
    (base, token, client, store)
}

/// Joins `MEMBERS` fresh members and `MEMBERS` with a long history.
async fn members(
    base: &str,
    client: &reqwest::Client,
    store: &dyn EventStore,
) -> (Vec<String>, Vec<String>) {
    let mut fresh = Vec::new();
    let mut long = Vec::new();
    for n in 0..MEMBERS * 2 {
        let reply: serde_json::Value = client
            .post(format!("{base}/members"))
            .json(&json!({ "phoneNo": format!("0107{n:07}"), "nickname": "bench" }))
            .send()
            .await
            .expect("join")
            .json()
            .await
            .expect("json");
        let id = reply["memberId"].as_str().expect("memberId").to_owned();
        if n < MEMBERS {
            fresh.push(id);
        } else {
            history(store, &id).await;
            long.push(id);
        }
    }
    (fresh, long)
}

/// An OTLP/HTTP endpoint that takes every export and keeps nothing; the
/// bytes it received.
async fn otlp_sink() -> (String, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(body.len() as u64, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, received)
}

/// Logging, and with `BENCH_TRACES=otlp` spans exported to an in-process
/// sink: the bytes it received, and the exporter to keep alive.
async fn telemetry() -> (Option<Arc<AtomicU64>>, Option<impl Sized>) {
    if std::env::var("BENCH_TRACES").as_deref() == Ok("otlp") {
        let (address, received) = otlp_sink().await;
        let exporter = mileage_service::telemetry::init_logging_to(
            "mileage-command-api",
            Some(format!("{address}/v1/traces")),
        );
        return (Some(received), Some(exporter));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    (None, None)
}

#[tokio::main]
async fn main() {
    let (exported, _exporter) = telemetry().await;
    let seconds = env_number("BENCH_SECONDS", 5);
    let runs = env_number("BENCH_RUNS", 3);
    let (base, token, client, store) = start().await;
    let (fresh, long) = members(&base, &client, &*store).await;

    println!(
        "command API benchmark: {seconds} s per measurement, median of {runs} runs, load generator in-process"
    );
    println!(
        "{:<46} {:>10} {:>9} {:>9}",
        "measurement", "per second", "p50 ms", "p99 ms"
    );
    let phones = Arc::new(AtomicU64::new(0));
    let client_counts: Vec<u64> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| "8,32,64".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for clients in client_counts {
        for keys in key_modes() {
            for (what, members) in [
                ("fresh members", &fresh),
                ("members with 1,000 events", &long),
            ] {
                if only == "join" {
                    continue;
                }
                let mut samples = Vec::new();
                for _ in 0..runs {
                    let (client, base, token, members) =
                        (client.clone(), base.clone(), token.clone(), members.clone());
                    samples.push(
                        load(clients, seconds, move |n| {
                            let id = &members[usize::try_from(n % MEMBERS).unwrap_or(0)];
                            let request = client
                                .post(format!("{base}/members/{id}/points/earn"))
                                .bearer_auth(&token)
                                .json(&json!({ "amount": 1 }));
                            keyed(request, keys)
                        })
                        .await,
                    );
                }
                let m = Sample::median(samples);
                println!(
                    "{:<46} {:>10.0} {:>9.2} {:>9.2}",
                    label(&format!("earn points, {what}, {clients} clients"), keys),
                    m.per_second,
                    m.p50_ms,
                    m.p99_ms
                );
            }
            if only == "earn" {
                continue;
            }
            let mut samples = Vec::new();
            for _ in 0..runs {
                let (client, base, phones) = (client.clone(), base.clone(), Arc::clone(&phones));
                samples.push(
                    load(clients, seconds, move |_| {
                        let n = phones.fetch_add(1, Ordering::Relaxed);
                        let request = client.post(format!("{base}/members")).json(
                            &json!({ "phoneNo": format!("0108{n:07}"), "nickname": "bench" }),
                        );
                        keyed(request, keys)
                    })
                    .await,
                );
            }
            let m = Sample::median(samples);
            println!(
                "{:<46} {:>10.0} {:>9.2} {:>9.2}",
                label(&format!("join, {clients} clients"), keys),
                m.per_second,
                m.p50_ms,
                m.p99_ms
            );
        }
    }
    if let Some(exported) = exported {
        println!(
            "traces: recorded and exported over OTLP/HTTP, {} KiB received by the sink",
            exported.load(Ordering::Relaxed) / 1024
        );
    }
}
