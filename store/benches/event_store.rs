//! Throughput of the PostgreSQL event store, beside `pgbench` on the same
//! server in the same run. Prints numbers; asserts nothing.
//!
//! `bash deploy/local/bench.sh` starts a throwaway server and runs this.
//! Settings: `BENCH_SECONDS` per measurement (default 5), `BENCH_RUNS`
//! repetitions whose median is reported (default 3), `BENCH_LOG_EVENTS`
//! events in the log for the global read (default 1,000,000).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mileage_domain::envelope::Causation;
use mileage_store::postgres::{PgEventStore, PgOptions};
use mileage_store::{EventStore, ExpectedVersion, NewEvent};
use mileage_testkit::Sample;
use uuid::Uuid;

/// A realistic event body (~200 bytes, like `PointsEarned`).
const DATA: &str = r#"{"memberId":"1234567","amount":100,"balance":12345,"at":"2026-11-23T09:00:00Z","note":"benchmark event carrying about as much data as a real points event does"}"#;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn new_event() -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "BenchHappened".into(),
        schema_version: 1,
        data: Bytes::from_static(DATA.as_bytes()),
        causation: Causation::root(Uuid::new_v4()),
        recorded_at: None,
        request: None,
    }
}

/// Runs `tasks` concurrent loops of `op` for `seconds`; returns operations
/// per second and latency percentiles.
#[allow(clippy::cast_precision_loss)]
async fn drive<F, Fut>(tasks: usize, seconds: u64, op: F) -> Sample
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    op().await;
                    latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.expect("benchmark task"));
    }
    Sample::of(all, started.elapsed())
}

/// `writers` tasks appending `batch`-event appends to fresh streams.
async fn appends(
    url: &str,
    writers: usize,
    batch: usize,
    seconds: u64,
    group_commit: bool,
) -> Sample {
    let options = PgOptions {
        pool_size: writers + 2,
        group_commit,
        ..PgOptions::default()
    };
    let store = Arc::new(
        PgEventStore::connect_with(url, options)
            .await
            .expect("connect"),
    );
    drive(writers, seconds, move || {
        let store = Arc::clone(&store);
        async move {
            let events: Vec<NewEvent> = (0..batch).map(|_| new_event()).collect();
            let stream = format!("bench-{}", Uuid::new_v4().simple());
            store
                .append(&stream, ExpectedVersion::NoStream, &events)
                .await
                .expect("append");
        }
    })
    .await
}

/// `readers` tasks reading one 100-event stream over and over.
async fn stream_reads(store: Arc<PgEventStore>, readers: usize, seconds: u64) -> Sample {
    let stream = Arc::new(format!("read-{}", Uuid::new_v4().simple()));
    let events: Vec<NewEvent> = (0..100).map(|_| new_event()).collect();
    store
        .append(&stream, ExpectedVersion::NoStream, &events)
        .await
        .expect("seed");
    drive(readers, seconds, move || {
        let store = Arc::clone(&store);
        let stream = Arc::clone(&stream);
        async move {
            let read = store.read_stream(&stream, 0, 1000).await.expect("read");
            assert_eq!(read.len(), 100);
        }
    })
    .await
}

/// Reads the whole global log in pages; events/s.
#[allow(clippy::cast_precision_loss)]
async fn global_read(store: &PgEventStore, page: usize) -> (f64, usize) {
    let started = Instant::now();
    let mut after = None;
    let mut count = 0;
    loop {
        let events = store.read_all(after, page).await.expect("read_all");
        let Some(last) = events.last() else { break };
        after = Some(last.position);
        count += events.len();
    }
    (count as f64 / started.elapsed().as_secs_f64(), count)
}

/// Follows the whole global log through a subscription (as projectors do);
/// events/s until `total` events arrived.
#[allow(clippy::cast_precision_loss)]
async fn global_follow(url: &str, total: usize) -> f64 {
    use futures::StreamExt;
    let options = PgOptions {
        subscription_batch: 5000,
        ..PgOptions::default()
    };
    let store = PgEventStore::connect_with(url, options)
        .await
        .expect("connect");
    let started = Instant::now();
    let mut subscription = store.subscribe_all(None);
    for _ in 0..total {
        subscription
            .next()
            .await
            .expect("never ends")
            .expect("no error");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Fills the log up to `target` events with one bulk INSERT (fast setup).
async fn fill_log(store: &PgEventStore, target: u64) {
    let client = store.pool().get().await.expect("connection");
    let have: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    let missing = i64::try_from(target).unwrap_or(i64::MAX) - have;
    if missing > 0 {
        client
            .execute(
                "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, correlation_id, causation_id)
                 SELECT 'fill-' || (g / 10), g % 10, gen_random_uuid(), 'BenchHappened', 1, $1::text::json, gen_random_uuid(), gen_random_uuid()
                 FROM generate_series(0, $2::bigint - 1) g",
                &[&DATA, &missing],
            )
            .await
            .expect("bulk fill");
        client
            .batch_execute("VACUUM ANALYZE events")
            .await
            .expect("vacuum");
    }
}

fn pgbench_binary() -> String {
    let packaged = "/usr/lib/postgresql/15/bin/pgbench";
    if std::path::Path::new(packaged).exists() {
        packaged.into()
    } else {
        "pgbench".into()
    }
}

/// `pgbench` with a one-row INSERT transaction into a copy of the events
/// table (same columns, defaults and indexes), prepared statements.
fn pgbench(url: &str, clients: usize, seconds: u64) -> Option<Sample> {
    let script = std::env::temp_dir().join(format!("mileage-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "INSERT INTO bench_baseline (stream_id, stream_version, event_id, event_type, schema_version, data, correlation_id, causation_id) \
             VALUES (gen_random_uuid()::text, 0, gen_random_uuid(), 'BenchHappened', 1, '{DATA}', gen_random_uuid(), gen_random_uuid());\n"
        ),
    )
    .ok()?;
    let output = Command::new(pgbench_binary())
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
            "-T",
            &seconds.to_string(),
            "-r",
            url,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()?;
    let latency = text
        .lines()
        .find(|l| l.starts_with("latency average = "))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    Some(Sample {
        per_second: tps,
        p50_ms: latency,
        p99_ms: f64::NAN,
    })
}

/// How long and how often each measurement runs.
#[derive(Clone, Copy)]
struct Plan {
    seconds: u64,
    runs: usize,
    log_events: u64,
}

fn row(name: &str, s: &Sample) {
    println!(
        "{name:<44} {:>12.0} {:>10.2} {:>10.2}",
        s.per_second, s.p50_ms, s.p99_ms
    );
}

/// pgbench at 1, 8, 32 clients; returns the 32-client rate.
fn baseline_section(url: &str, plan: Plan) -> Option<f64> {
    let mut at_32 = None;
    for clients in [1, 8, 32] {
        let samples: Vec<Sample> = (0..plan.runs)
            .filter_map(|_| pgbench(url, clients, plan.seconds))
            .collect();
        if samples.is_empty() {
            println!("pgbench baseline at {clients} clients: pgbench unavailable");
            continue;
        }
        let m = Sample::median(samples);
        row(
            &format!("pgbench 1-row INSERT tx, {clients} clients (avg lat)"),
            &m,
        );
        if clients == 32 {
            at_32 = Some(m.per_second);
        }
    }
    at_32
}

/// Single and batched appends; returns the 32-writer single-event rates
/// without and with group commit. The two modes alternate run by run, so
/// drift (a growing table, autovacuum) biases neither.
async fn append_section(url: &str, plan: Plan) -> (f64, f64) {
    let mut at_32 = (0.0, 0.0);
    for writers in [1, 8, 32] {
        let (mut alone, mut grouped) = (Vec::new(), Vec::new());
        for _ in 0..plan.runs {
            alone.push(appends(url, writers, 1, plan.seconds, false).await);
            grouped.push(appends(url, writers, 1, plan.seconds, true).await);
        }
        let (alone, grouped) = (Sample::median(alone), Sample::median(grouped));
        row(
            &format!("append 1 event/call, {writers} writers, alone"),
            &alone,
        );
        row(
            &format!("append 1 event/call, {writers} writers, group commit"),
            &grouped,
        );
        if writers == 32 {
            at_32 = (alone.per_second, grouped.per_second);
        }
    }
    for writers in [8, 32] {
        let mut samples = Vec::new();
        for _ in 0..plan.runs {
            samples.push(appends(url, writers, 10, plan.seconds, true).await);
        }
        let m = Sample::median(samples);
        row(
            &format!("append 10 events/call, {writers} writers, group"),
            &m,
        );
        println!("{:<44} {:>12.0}", "  = events/s", m.per_second * 10.0);
    }
    at_32
}

/// Stream reads, then the global log read both ways.
async fn read_section(url: &str, store: Arc<PgEventStore>, plan: Plan) {
    let mut samples = Vec::new();
    for _ in 0..plan.runs {
        samples.push(stream_reads(Arc::clone(&store), 8, plan.seconds).await);
    }
    let m = Sample::median(samples);
    row("read 100-event stream, 8 readers (reads)", &m);
    println!("{:<44} {:>12.0}", "  = events/s", m.per_second * 100.0);

    fill_log(&store, plan.log_events).await;
    let mut reads = Vec::new();
    let mut total = 0;
    for _ in 0..plan.runs {
        let (rate, count) = global_read(&store, 5000).await;
        reads.push(rate);
        total = count;
    }
    reads.sort_by(f64::total_cmp);
    println!(
        "{:<44} {:>12.0}   ({total} events, pages of 5000)",
        "global log read_all loop (events)",
        reads[reads.len() / 2]
    );
    let mut follows = Vec::new();
    for _ in 0..plan.runs {
        follows.push(global_follow(url, total).await);
    }
    follows.sort_by(f64::total_cmp);
    println!(
        "{:<44} {:>12.0}   (prefetching subscription, target >= 300000)",
        "global log subscription catch-up (events)",
        follows[follows.len() / 2]
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let url = mileage_store::testing::server_url();
    let plan = Plan {
        seconds: env_number("BENCH_SECONDS", 5),
        runs: usize::try_from(env_number("BENCH_RUNS", 3)).unwrap_or(3),
        log_events: env_number("BENCH_LOG_EVENTS", 1_000_000),
    };
    let store = Arc::new(PgEventStore::connect(&url).await.expect("connect"));
    store
        .pool()
        .get()
        .await
        .unwrap()
        .batch_execute("DROP TABLE IF EXISTS bench_baseline; CREATE TABLE bench_baseline (LIKE events INCLUDING ALL)")
        .await
        .expect("baseline table");

    println!(
        "mileage event store benchmark: {} s per measurement, median of {} runs, {} cores",
        plan.seconds,
        plan.runs,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "measurement", "per second", "p50 ms", "p99 ms"
    );
    let baseline_32 = baseline_section(&url, plan);
    let (alone_32, group_32) = append_section(&url, plan).await;
    read_section(&url, store, plan).await;
    if let Some(base) = baseline_32 {
        println!(
            "single-event appends at 32 writers vs pgbench at 32 clients (target >= 70%): \
             alone {:.0}%, group commit {:.0}%",
            alone_32 / base * 100.0,
            group_32 / base * 100.0
        );
    }
}
