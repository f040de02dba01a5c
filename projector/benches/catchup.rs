//! Catch-up: how fast the managerpage projection builds from a long log, and
//! how much memory the process holds while it does. The log (default
//! 1,000,000 events: each target registered, marked dormant and notified,
//! one kind after another, so every batch touches 1,000 distinct rows) is
//! written with one bulk INSERT; the projection then runs from position zero
//! into a fresh schema, `BENCH_RUNS` times. Prints numbers; asserts nothing.
//!
//! `bash deploy/local/with-pg.sh cargo bench -p mileage-projector --bench catchup`
//! Settings: `BENCH_EVENTS` (1000000), `BENCH_RUNS` (3), `PROJECTOR_BATCH` (1000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mileage_domain::pii::{NONCE_LEN, PersonKey};
use mileage_projector::projections::Projection;
use mileage_projector::projections::managerpage::Managerpage;
use mileage_projector::runner::Runner;
use mileage_store::keys::{KeyStore, PgKeyStore};
use mileage_store::postgres::PgEventStore;
use mileage_store::{EventStore, Position};

/// Distinct person keys the targets' data is sealed with.
const KEYS: usize = 1000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident and peak resident memory of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Writes `targets` x (registered, changed, sent) straight into the log.
async fn seed(store: &PgEventStore, keys: &PgKeyStore, targets: i64) {
    let mut phones = Vec::with_capacity(KEYS);
    let mut nicknames = Vec::with_capacity(KEYS);
    let client = store.pool().get().await.expect("a connection");
    for k in 0..KEYS {
        let key_id = format!("bench-key-{k}");
        let key: PersonKey = keys.get_or_create(&key_id).await.expect("a key");
        let nonce = [u8::try_from(k % 251).unwrap_or(0); NONCE_LEN];
        phones.push(
            serde_json::to_string(&key.seal("phoneNo", &format!("0107{k:07}"), nonce)).unwrap(),
        );
        nicknames.push(
            serde_json::to_string(&key.seal("nickname", &format!("target {k}"), nonce)).unwrap(),
        );
    }
    let started = Instant::now();
    client
        .execute(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, correlation_id, causation_id)
             SELECT CASE WHEN kind < 2 THEN 'dormantMember-' ELSE 'managerMessage-' END || t,
                    CASE kind WHEN 1 THEN 1 ELSE 0 END,
                    gen_random_uuid(),
                    (ARRAY['DormantMemberRegistered', 'DormantMemberChanged', 'MessageSent'])[kind + 1],
                    1,
                    CASE kind
                      WHEN 2 THEN json_build_object('targetId', t::text, 'memberId', t::text,
                                    'phoneNo', ($1::text[])[t % $3 + 1]::json, 'content', 'notice',
                                    'attempts', 1, 'at', now())
                      ELSE json_build_object('id', t::text, 'memberId', t::text,
                                    'phoneNo', ($1::text[])[t % $3 + 1]::json,
                                    'nickname', ($2::text[])[t % $3 + 1]::json, 'at', now())
                    END,
                    gen_random_uuid(), gen_random_uuid()
               FROM generate_series(0, 2) kind, generate_series(0, $4::bigint - 1) t
              ORDER BY kind, t",
            &[&phones, &nicknames, &i64::try_from(KEYS).unwrap(), &targets],
        )
        .await
        .expect("bulk seed");
    client
        .batch_execute("VACUUM ANALYZE events")
        .await
        .expect("vacuum");
    println!(
        "seeded {} events in {:.1} s",
        targets * 3,
        started.elapsed().as_secs_f64()
    );
}

async fn checkpoint(client: &tokio_postgres::Client, name: &str) -> Option<Position> {
    mileage_projector::bookkeeping::position_of(client, name)
        .await
        .ok()
        .flatten()
}

struct Run {
    events_per_second: f64,
    rss_start: f64,
    rss_max: f64,
    rss_end: f64,
}

#[allow(clippy::cast_precision_loss)]
async fn run(url: &str, store: Arc<PgEventStore>, head: Position, events: u64, n: u64) -> Run {
    let keys: Arc<dyn KeyStore> = Arc::new(PgKeyStore::new(store.pool().clone()));
    let name = format!("bench_managerpage_{n}");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let batch = usize::try_from(env_number("PROJECTOR_BATCH", 1000)).unwrap_or(1000);
    let runner = Runner::new(store, url, batch, stopped).expect("a runner");
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a client");
    tokio::spawn(connection);
    let rss_start = memory().0;
    let started = Instant::now();
    let consumer = Arc::new(Projection::<Managerpage>::into_schema(&name, &name, keys));
    let task = tokio::spawn(async move { runner.run(consumer).await });
    let mut rss_max = rss_start;
    while checkpoint(&client, &name).await != Some(head) {
        rss_max = rss_max.max(memory().0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.send(true).expect("stop");
    task.await.expect("the runner");
    client
        .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
        .await
        .expect("drop the copy");
    Run {
        events_per_second: events as f64 / elapsed,
        rss_start,
        rss_max,
        rss_end: memory().0,
    }
}

#[tokio::main]
async fn main() {
    let url = mileage_store::testing::fresh_database().await;
    let store = Arc::new(PgEventStore::connect(&url).await.expect("the store"));
    let keys = PgKeyStore::new(store.pool().clone());
    let events = env_number("BENCH_EVENTS", 1_000_000);
    let targets = i64::try_from(events / 3).unwrap_or(i64::MAX);
    seed(&store, &keys, targets).await;
    mileage_projector::bookkeeping::migrate(&store.pool().get().await.expect("a connection"))
        .await
        .expect("bookkeeping tables");
    let head = store.head_position().await.expect("head").expect("events");
    let total = u64::try_from(targets).unwrap_or(0) * 3;
    let mut runs = Vec::new();
    for n in 0..env_number("BENCH_RUNS", 3) {
        let run = run(&url, Arc::clone(&store), head, total, n).await;
        println!(
            "run {n}: {:>9.0} events/s   RSS {:.0} MiB at start, {:.0} MiB peak, {:.0} MiB at end",
            run.events_per_second, run.rss_start, run.rss_max, run.rss_end
        );
        runs.push(run);
    }
    runs.sort_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second));
    let median = &runs[runs.len() / 2];
    println!(
        "managerpage catch-up from {total} events: median {:.0} events/s; process peak RSS {:.0} MiB (VmHWM {:.0} MiB)",
        median.events_per_second,
        runs.iter().map(|r| r.rss_max).fold(0.0, f64::max),
        memory().1
    );
}
