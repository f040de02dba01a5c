//! The dormancy scheduler at scale, on two projector binaries: quiet
//! members (100,000 unless `DORMANCY_TEST_MEMBERS` says otherwise) are
//! registered and then marked dormant at no more than the configured rate,
//! the active replica is killed (SIGKILL) in each phase and the other takes
//! over, the two are never active at once, and every member gets one
//! target, one mark and one notice. Its own test binary, so it runs alone:
//! it keeps both cores busy for minutes.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use mileage_e2e::{Gateway, eventually, free_port};
use mileage_store::EventStore;
use mileage_store::testing::fresh_database;

use mileage_e2e::seed_member;

/// Registrations and marks per second the projectors are told to keep to.
const RATE: u32 = 2000;

fn members() -> usize {
    std::env::var("DORMANCY_TEST_MEMBERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

/// One projector binary on `port`, its policy's clock `offset_days` ahead.
fn projector(database: &str, gateway: &Gateway, port: u16, offset_days: i64) -> Child {
    Command::new(mileage_e2e::binary("mileage-projector"))
        .env_clear()
        .envs(mileage_e2e::store_env(database))
        .env("DATABASE_URL", database)
        .env("PROJECTOR_ADDR", format!("127.0.0.1:{port}"))
        .env("NOTIFIER_URL", &gateway.url)
        .env("DORMANCY_SCAN_SECONDS", "1")
        .env("DORMANCY_RATE", RATE.to_string())
        .env(
            "DORMANCY_CLOCK_OFFSET_SECONDS",
            (offset_days * 86_400).to_string(),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Two replicas of the projector, on known ports.
struct Pair {
    children: [Child; 2],
    ports: [u16; 2],
}

impl Pair {
    fn start(database: &str, gateway: &Gateway, offset_days: i64) -> Self {
        let ports = [free_port(), free_port()];
        Self {
            children: ports.map(|port| projector(database, gateway, port, offset_days)),
            ports,
        }
    }

    /// Kills the replica whose scheduler is active (SIGKILL) and starts it
    /// again; the other one takes over.
    async fn kill_the_active_one(&mut self, database: &str, gateway: &Gateway, offset_days: i64) {
        let http = reqwest::Client::new();
        let active = eventually(
            "a replica's scheduler is active",
            Duration::from_secs(60),
            || async {
                for (n, port) in self.ports.iter().enumerate() {
                    if active(&http, *port).await == Some(true) {
                        return Some(n);
                    }
                }
                None
            },
        )
        .await;
        self.children[active].kill().unwrap();
        self.children[active].wait().unwrap();
        self.children[active] = projector(database, gateway, self.ports[active], offset_days);
    }

    fn kill_both(&mut self) {
        for child in &mut self.children {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the scheduler of the projector on `port` is active (`None`
/// while it does not answer).
async fn active(http: &reqwest::Client, port: u16) -> Option<bool> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("dormancy_scheduler_active"))?;
    Some(line.split_whitespace().last()? == "1")
}

/// Watches both replicas until told to stop: the most that were active at
/// one look, and how many looks saw one active.
fn watch(ports: [u16; 2], stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let (mut most, mut seen) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let mut now = 0;
            for port in ports {
                now += usize::from(active(&http, port).await == Some(true));
            }
            most = most.max(now);
            seen += usize::from(now > 0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (most, seen)
    })
}

/// How many of the policy's targets the dormancy consumer holds pending,
/// and how many the managerpage has per status.
async fn counts(client: &tokio_postgres::Client) -> (i64, HashMap<String, i64>) {
    let pending = client
        .query_one("SELECT count(*) FROM dormancy.pending", &[])
        .await
        .map_or(-1, |r| r.get(0));
    let statuses = client
        .query("SELECT status, targets FROM managerpage.status_counts", &[])
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default();
    (pending, statuses)
}

/// `n` members who joined 400 days ago, a second apart.
async fn seed(database: &str, store: &dyn EventStore, n: usize) {
    let keys = mileage_e2e::person_keys(database).await;
    let joined = Utc::now() - TimeDelta::days(400);
    let seeded = AtomicUsize::new(0);
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let (keys, seeded) = (&keys, &seeded);
            async move {
                let at = joined + TimeDelta::seconds(i64::try_from(i).unwrap());
                let (id, phone) = (format!("z{i}"), format!("010{i:08}"));
                seed_member(store, keys, &id, &phone, at).await;
                seeded.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    eprintln!("seeded {} quiet members", seeded.load(Ordering::Relaxed));
}

/// Per target stream, how many registrations, marks and recorded notices
/// the log holds; and how long from the first registration appended to
/// the last.
struct Tallied {
    registered: HashMap<String, usize>,
    marked: HashMap<String, usize>,
    sent: HashMap<String, usize>,
    span: Duration,
}

async fn tally_the_log(store: &dyn EventStore) -> Tallied {
    let mut tallied = Tallied {
        registered: HashMap::new(),
        marked: HashMap::new(),
        sent: HashMap::new(),
        span: Duration::ZERO,
    };
    let (mut first, mut last) = (None, None);
    let mut from = None;
    loop {
        let page = store.read_all(from, 5000).await.unwrap();
        let Some(end) = page.last() else { break };
        from = Some(end.position);
        for event in page {
            let counter = match event.event_type.as_str() {
                "DormantMemberRegistered" => {
                    first = first.or(Some(event.metadata.recorded_at));
                    last = Some(event.metadata.recorded_at);
                    &mut tallied.registered
                }
                "DormantMemberChanged" => &mut tallied.marked,
                "MessageSent" => &mut tallied.sent,
                _ => continue,
            };
            *counter.entry(event.stream.clone()).or_insert(0) += 1;
        }
    }
    if let (Some(first), Some(last)) = (first, last) {
        tallied.span = (last - first).to_std().unwrap_or_default();
    }
    tallied
}

/// Waits until every target is dormant, no longer pending, and its notice
/// taken by the gateway, saying how far it got every ten seconds.
async fn all_noticed(read: &tokio_postgres::Client, gateway: &Gateway, n: usize, wait: Duration) {
    let n64 = i64::try_from(n).unwrap();
    let started = std::time::Instant::now();
    let mut said = std::time::Instant::now();
    eventually("every target noticed", wait, || {
        let say = said.elapsed() > Duration::from_secs(10);
        if say {
            said = std::time::Instant::now();
        }
        async move {
            let (pending, statuses) = counts(read).await;
            let tally = gateway.tally();
            if say {
                eprintln!(
                    "after {:?}: {pending} pending, {statuses:?}, {tally:?}",
                    started.elapsed()
                );
            }
            let done = pending == 0 && tally.messages == n && statuses.get("DORMANT") == Some(&n64);
            done.then_some(())
        }
    })
    .await;
}

/// Waits until every consumer has handled the log's head, and the head has
/// stopped moving.
async fn settled(store: &dyn EventStore, read: &tokio_postgres::Client, wait: Duration) {
    eventually("the log settles", wait, || async {
        let head = store.head_position().await.ok()??;
        for consumer in mileage_read_model::bookkeeping::statuses(read).await.ok()? {
            if !consumer.is_scratch() && consumer.checkpoint != Some(head) {
                return None;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        (store.head_position().await.ok()?? == head).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quiet_members_at_scale_get_one_target_one_mark_one_notice_at_the_rate_through_kills() {
    let n = members();
    let n64 = i64::try_from(n).unwrap();
    let database = fresh_database().await;
    let gateway = Gateway::start(&[]).await;
    let store = mileage_e2e::event_store(&database).await;
    seed(&database, &*store, n).await;
    let read = mileage_e2e::read_client(&database).await;
    let wait = Duration::from_secs(120 + u64::try_from(n).unwrap() / 100);
    let stop = Arc::new(AtomicBool::new(false));

    // Registration, with the active replica killed a tenth of the way.
    let mut pair = Pair::start(&database, &gateway, 0);
    let watcher = watch(pair.ports, Arc::clone(&stop));
    eventually("a tenth registered", wait, || async {
        (counts(&read).await.0 >= n64 / 10).then_some(())
    })
    .await;
    pair.kill_the_active_one(&database, &gateway, 0).await;
    eventually("every quiet member registered", wait, || async {
        (counts(&read).await.0 == n64).then_some(())
    })
    .await;
    pair.kill_both();
    stop.store(true, Ordering::Relaxed);
    let registering = watcher.await.unwrap();

    // A month on: marks and notices, again through a kill.
    let mut pair = Pair::start(&database, &gateway, 31);
    stop.store(false, Ordering::Relaxed);
    let watcher = watch(pair.ports, Arc::clone(&stop));
    eventually("a tenth noticed", wait, || async {
        (gateway.tally().messages >= n / 10).then_some(())
    })
    .await;
    pair.kill_the_active_one(&database, &gateway, 31).await;
    all_noticed(&read, &gateway, n, wait).await;
    settled(&*store, &read, wait).await;
    stop.store(true, Ordering::Relaxed);
    let marking = watcher.await.unwrap();
    for (phase, (most, seen)) in [("registering", registering), ("marking", marking)] {
        assert!(most <= 1, "{phase}: two schedulers active at once");
        assert!(seen > 0, "{phase}: a scheduler was seen active");
    }

    // The log: one registration, one mark, one notice recorded per member.
    let log = tally_the_log(&*store).await;
    for (what, seen) in [
        ("registered", &log.registered),
        ("marked", &log.marked),
        ("sent", &log.sent),
    ] {
        assert_eq!(seen.len(), n, "{what}: one per member");
        assert!(seen.values().all(|c| *c == 1), "{what}: never twice");
    }
    let tally = gateway.tally();
    assert_eq!(tally.messages, n, "one notice per member");
    let floor = Duration::from_millis(u64::try_from(n - 1).unwrap() * 1000 / u64::from(RATE));
    assert!(
        log.span >= floor.mul_f64(0.95),
        "{n} registrations in {:?}: faster than {RATE}/s",
        log.span
    );
    eprintln!(
        "{n} quiet members: registered over {:?} (at most {RATE}/s: {floor:?}), \
         {} notice requests for {} notices, two kills",
        log.span, tally.requests, tally.messages
    );
}
