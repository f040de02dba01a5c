//! The dormancy policy over 1,000,000 members, as the projector runs it:
//!
//! - what it adds to the projector's catch-up: the whole projector (every
//!   projection and process manager) built from nothing over the log of
//!   every member's join, with the policy off and on, alternating, runs
//!   medians of `BENCH_RUNS`;
//! - how long one scheduler pass takes: with nobody due (the scan is an
//!   index range over the members read model in order of last activity,
//!   so a pass costs nothing when nobody is due, however many members
//!   there are), and with `BENCH_DUE` members due at once (three cohorts
//!   quiet 600, 500 and 400 days, reached one after the other by moving the
//!   policy's clock), at an unlimited rate.
//!
//! The log is written with bulk INSERTs. Prints numbers; asserts nothing.
//!
//! `bash deploy/local/with-pg.sh cargo bench -p mileage-projector --bench dormancy`
//! Settings: `BENCH_MEMBERS` (1000000), `BENCH_DUE` (10000), `BENCH_RUNS`
//! (3).

use std::time::{Duration, Instant};

use mileage_domain::pii::{NONCE_LEN, PersonKey};
use mileage_projector::clock::Clock;
use mileage_projector::config::{DormancySettings, NotifierSettings, Settings};
use mileage_store::EventStore;
use mileage_store::keys::{KeyStore, PgKeyStore};
use mileage_store::postgres::PgEventStore;

/// Distinct person keys the members' data is sealed with.
const KEYS: usize = 1000;
/// Ages in days of the three cohorts of quiet members.
const COHORTS: [i64; 3] = [600, 500, 400];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Joins `members` members straight into the log: the last `3 * due` in
/// three cohorts that joined `COHORTS` days ago, the others within the
/// last 300 days.
async fn seed(store: &PgEventStore, keys: &PgKeyStore, members: i64, due: i64) {
    let mut phones = Vec::with_capacity(KEYS);
    let mut nicknames = Vec::with_capacity(KEYS);
    for k in 0..KEYS {
        let key: PersonKey = keys
            .get_or_create(&format!("bench-key-{k}"))
            .await
            .expect("a key");
        let nonce = [u8::try_from(k % 251).unwrap_or(0); NONCE_LEN];
        phones.push(
            serde_json::to_string(&key.seal("phoneNo", &format!("0107{k:07}"), nonce)).unwrap(),
        );
        nicknames.push(
            serde_json::to_string(&key.seal("nickname", &format!("member {k}"), nonce)).unwrap(),
        );
    }
    let client = store.pool().get().await.expect("a connection");
    let started = Instant::now();
    client
        .execute(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, correlation_id, causation_id, recorded_at)
             SELECT 'member-b' || t, 0, gen_random_uuid(), 'MemberJoined', 1,
                    json_build_object('memberId', 'b' || t,
                        'phoneNo', ($1::text[])[t % $3::bigint + 1]::json,
                        'nickname', ($2::text[])[t % $3::bigint + 1]::json,
                        'joinedAt', joined),
                    gen_random_uuid(), gen_random_uuid(), joined
               FROM (SELECT t, CASE
                        WHEN t >= $4::bigint - 3 * $5::bigint THEN
                            now() - make_interval(days => ($6::int[])[(t - ($4::bigint - 3 * $5::bigint)) / $5::bigint + 1])
                                  + make_interval(secs => t % $5::bigint)
                        ELSE now() - make_interval(secs => (t * 25) % (300 * 86400))
                        END AS joined
                       FROM generate_series(0::bigint, $4::bigint - 1) t) m
              ORDER BY joined",
            &[
                &phones,
                &nicknames,
                &i64::try_from(KEYS).unwrap(),
                &members,
                &due,
                &COHORTS.map(|d| i32::try_from(d).unwrap()).to_vec(),
            ],
        )
        .await
        .expect("bulk seed");
    client
        .batch_execute("VACUUM ANALYZE events")
        .await
        .expect("vacuum");
    println!(
        "seeded {members} joins ({} quiet, in three cohorts) in {:.1} s",
        3 * due,
        started.elapsed().as_secs_f64()
    );
}

fn settings(url: &str, applies: bool, offset_days: i64, every: Duration) -> Settings {
    Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        database_url: url.to_owned(),
        eventstoredb_url: None,
        read_database_url: url.to_owned(),
        batch_size: 1000,
        notifier: NotifierSettings {
            url: None,
            timeout: Duration::from_secs(2),
            max_attempts: 3,
            backoff: Duration::from_millis(20),
        },
        dormancy: DormancySettings {
            policy: mileage_domain::dormancy::Policy::new(335, 3650).unwrap(),
            rate: std::num::NonZeroU32::new(1_000_000).unwrap(),
            every,
            applies,
            clock: Clock::offset_by(offset_days * 86_400),
        },
    }
}

/// Drops every read model, checkpoint and the scheduler's tables.
async fn reset_read_side(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "DROP SCHEMA IF EXISTS managerpage, members, messages, phones, timeline, projector, \
             dormancy CASCADE",
        )
        .await
        .expect("reset");
}

/// Seconds until every consumer of `running` has handled the log's head.
async fn caught_up(
    client: &tokio_postgres::Client,
    store: &PgEventStore,
    consumers: usize,
    started: Instant,
) -> f64 {
    let head = store.head_position().await.unwrap().unwrap();
    loop {
        let statuses = mileage_read_model::bookkeeping::statuses(client)
            .await
            .unwrap_or_default();
        let done = statuses
            .iter()
            .filter(|s| !s.is_scratch() && s.checkpoint == Some(head))
            .count();
        if done >= consumers {
            return started.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first pass of a projector started now: its seconds, and the
/// targets it registered.
async fn first_pass(client: &tokio_postgres::Client, url: &str, offset_days: i64) -> (f64, i64) {
    let before = scheduler(client).await;
    let running = mileage_projector::startup::start(&settings(
        url,
        true,
        offset_days,
        Duration::from_secs(3600),
    ))
    .await
    .expect("the projector");
    let row = loop {
        let row = scheduler(client).await;
        if row.passes > before.passes {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    running.stop().await;
    let took = (row.last_pass_finished.unwrap() - row.last_pass_started.unwrap())
        .to_std()
        .unwrap()
        .as_secs_f64();
    (took, row.registered - before.registered)
}

async fn scheduler(client: &tokio_postgres::Client) -> mileage_read_model::dormancy::Scheduler {
    mileage_read_model::dormancy::scheduler(client)
        .await
        .unwrap_or_default()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let url = mileage_store::testing::fresh_database().await;
    let store = PgEventStore::connect(&url).await.expect("the store");
    let keys = PgKeyStore::new(store.pool().clone());
    let members = i64::try_from(env_number("BENCH_MEMBERS", 1_000_000)).unwrap();
    let due = i64::try_from(env_number("BENCH_DUE", 10_000)).unwrap();
    let runs = env_number("BENCH_RUNS", 3);
    seed(&store, &keys, members, due).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the read database");
    tokio::spawn(connection);

    // Catch-up, policy off and on, alternating; nobody due meanwhile.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let order = if run % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for applies in order {
            reset_read_side(&client).await;
            let started = Instant::now();
            let running = mileage_projector::startup::start(&settings(
                &url,
                applies,
                -700,
                Duration::from_secs(3600),
            ))
            .await
            .expect("the projector");
            let consumers = running.consumers();
            let seconds = caught_up(&client, &store, consumers, started).await;
            running.stop().await;
            #[allow(clippy::cast_precision_loss)]
            let rate = members as f64 / seconds;
            println!(
                "catch-up of {members} events, policy {}: {seconds:.1} s, {rate:.0} events/s ({consumers} consumers)",
                if applies { "on " } else { "off" }
            );
            if applies { &mut on } else { &mut off }.push(rate);
        }
    }

    // Passes over the members read model the last catch-up left.
    let mut idle = Vec::new();
    for _ in 0..runs {
        let (seconds, registered) = first_pass(&client, &url, -700).await;
        println!(
            "pass over {members} members, none due: {:.1} ms, {registered} registered",
            seconds * 1000.0
        );
        idle.push(seconds);
    }
    let mut busy = Vec::new();
    for age in COHORTS {
        // This cohort is due, the younger ones not yet.
        let offset = 335 - age + 10;
        let (seconds, registered) = first_pass(&client, &url, offset).await;
        #[allow(clippy::cast_precision_loss)]
        let rate = registered as f64 / seconds;
        println!(
            "pass over {members} members, the cohort quiet {age} days due: {seconds:.2} s, {registered} registered, {rate:.0}/s"
        );
        busy.push(seconds);
    }
    println!(
        "catch-up, median of {runs}: policy off {:.0} events/s, on {:.0} events/s ({:+.1}%)",
        median(off.clone()),
        median(on.clone()),
        (median(on) / median(off) - 1.0) * 100.0
    );
    println!(
        "one pass over {members} members, median of {runs}: none due {:.1} ms; {due} due {:.2} s",
        median(idle) * 1000.0,
        median(busy)
    );
}
