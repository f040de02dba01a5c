//! `replay rebuild managerpage` as an operator runs it: a fresh copy built
//! from position zero in a shadow schema, then swapped in; events/s and the
//! process's memory, at two log sizes to show memory does not grow with the
//! log. The log (each target registered, marked dormant and notified, one
//! kind after another, so every batch touches 1,000 distinct rows; a target
//! every 100 s, so the events span days to months and each batch moves the
//! counts of a day's hours) is written
//! with bulk INSERTs; each size is rebuilt `BENCH_RUNS` times. Prints
//! numbers; asserts nothing.
//!
//! `bash deploy/local/with-pg.sh cargo bench -p mileage-replay --bench rebuild`
//! Settings: `BENCH_SIZES` (1000000,2000000 events), `BENCH_RUNS` (3),
//! `PROJECTOR_BATCH` (1000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mileage_domain::pii::{NONCE_LEN, PersonKey};
use mileage_replay::{Context, rebuild};
use mileage_store::keys::{KeyStore, PgKeyStore};
use mileage_store::postgres::PgEventStore;

/// Distinct person keys the targets' data is sealed with.
const KEYS: usize = 1000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's resident memory in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Writes targets `from..to` x (registered, changed, sent) straight into
/// the log.
async fn seed(store: &PgEventStore, keys: &PgKeyStore, from: i64, to: i64) {
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
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, correlation_id, causation_id, recorded_at)
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
                    gen_random_uuid(), gen_random_uuid(),
                    now() - make_interval(secs => ($5 - t) * 100 + (2 - kind) * 30)
               FROM generate_series(0, 2) kind, generate_series($4::bigint, $5::bigint - 1) t
              ORDER BY kind, t",
            &[&phones, &nicknames, &i64::try_from(KEYS).unwrap(), &from, &to],
        )
        .await
        .expect("bulk seed");
    client
        .batch_execute("VACUUM ANALYZE events")
        .await
        .expect("vacuum");
    println!(
        "seeded {} events in {:.1} s",
        (to - from) * 3,
        started.elapsed().as_secs_f64()
    );
}

/// One rebuild: events/s and the highest resident memory seen while it ran.
struct Run {
    events_per_second: f64,
    rss_start: u64,
    rss_peak: u64,
}

async fn run(ctx: &Context, batch: usize) -> Run {
    let rss_start = rss_kib();
    let peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let outcome = rebuild::rebuild(ctx, "managerpage", batch, std::future::pending())
        .await
        .expect("the rebuild");
    let elapsed = started.elapsed().as_secs_f64();
    sampler.abort();
    let rebuild::Outcome::Done(done) = outcome else {
        panic!("nothing interrupts this rebuild")
    };
    #[allow(clippy::cast_precision_loss)]
    let events_per_second = done.events as f64 / elapsed;
    Run {
        events_per_second,
        rss_start,
        rss_peak: peak.load(Ordering::Relaxed).max(rss_kib()),
    }
}

#[tokio::main]
async fn main() {
    let url = mileage_store::testing::fresh_database().await;
    let store = PgEventStore::connect(&url).await.expect("the store");
    let keys = PgKeyStore::new(store.pool().clone());
    let ctx = Context::connect(&url, None, &url, false)
        .await
        .expect("a context");
    let batch = usize::try_from(env_number("PROJECTOR_BATCH", 1000)).unwrap_or(1000);
    let sizes: Vec<i64> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000000,2000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut targets = 0;
    let mut summary = Vec::new();
    for size in sizes {
        let wanted = size / 3;
        if wanted > targets {
            seed(&store, &keys, targets, wanted).await;
            targets = wanted;
        }
        let mut runs = Vec::new();
        for n in 0..env_number("BENCH_RUNS", 3) {
            let run = run(&ctx, batch).await;
            println!(
                "{} events, run {n}: {:>7.0} events/s   RSS {:.0} MiB at start, {:.0} MiB peak",
                targets * 3,
                run.events_per_second,
                mib(run.rss_start),
                mib(run.rss_peak)
            );
            runs.push(run);
        }
        runs.sort_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second));
        let peak = runs.iter().map(|r| r.rss_peak).max().unwrap_or(0);
        summary.push(format!(
            "rebuild managerpage from {} events: median {:.0} events/s, peak RSS {:.0} MiB",
            targets * 3,
            runs[runs.len() / 2].events_per_second,
            mib(peak)
        ));
    }
    for line in summary {
        println!("{line}");
    }
}
