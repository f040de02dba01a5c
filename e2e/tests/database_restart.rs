//! The database restarted under load: a PostgreSQL cluster of this test's
//! own (`deploy/local/pg.sh`) is restarted with `pg_ctl restart -m
//! immediate` while clients earn points with keys. Every command either
//! applied once and answered 2xx, or answered 503 (or lost its answer) and
//! applies once on its retry with the same key; none answers 500.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mileage_e2e::CommandApi;
use serde_json::{Value, json};
use tokio::sync::Mutex;

const CLIENTS: usize = 8;

/// A cluster of this test's own, stopped and deleted when dropped.
struct Cluster {
    dir: PathBuf,
    url: String,
}

fn pg_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/pg.sh")
}

impl Cluster {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("mileage-restart-{}", uuid::Uuid::new_v4()));
        let output = Command::new("bash")
            .arg(pg_sh())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("pg.sh runs");
        assert!(
            output.status.success(),
            "a cluster starts: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        Self { dir, url }
    }

    /// `pg_ctl restart -m immediate`: every connection is cut at once and
    /// the server recovers from its log, as after a crash.
    fn restart_immediately(&self) {
        let pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl";
        let data = self.dir.join("data");
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let mut command = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", pg_ctl]);
            c
        } else {
            Command::new(pg_ctl)
        };
        let status = command
            .args(["restart", "-m", "immediate", "-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "the cluster restarts");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(pg_sh())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// Per member: every key sent, its amount, and whether it was answered.
type Sent = HashMap<String, Vec<(String, i64, bool)>>;

#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    unavailable: AtomicU64,
    lost: AtomicU64,
    other: Mutex<Vec<String>>,
}

/// One earn under `key`: `Some(balance)` when applied and answered, `None`
/// when it must be retried (503, or no answer).
async fn earn(
    http: &reqwest::Client,
    api: &CommandApi,
    member: &str,
    key: &str,
    amount: i64,
    seen: &Seen,
) -> Option<i64> {
    let sent = http
        .post(format!("{}/members/{member}/points/earn", api.address))
        .bearer_auth(&api.token)
        .header("Idempotency-Key", key)
        .json(&json!({ "amount": amount }))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let Ok(response) = sent else {
        seen.lost.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match status {
        200 => {
            seen.ok.fetch_add(1, Ordering::Relaxed);
            body["balance"].as_i64()
        }
        503 if retry_after => {
            seen.unavailable.fetch_add(1, Ordering::Relaxed);
            None
        }
        409 if body["code"] == "idempotency.in_flight" => None,
        _ => {
            seen.other.lock().await.push(format!("{status} {body}"));
            None
        }
    }
}

/// Earns answered before the restart, and again after it, before the load
/// stops.
const LOAD_BEFORE_RESTART: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_answers_503_or_applies_once_never_500() {
    let cluster = Cluster::start();
    let api = CommandApi::spawn(&cluster.url).await;
    let http = reqwest::Client::new();
    let mut members = Vec::new();
    for n in 0..CLIENTS {
        members.push(api.join(&format!("0107700{n:04}"), "restart").await);
    }
    let api = Arc::new(api);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let sent: Arc<Mutex<Sent>> = Arc::default();
    let clients: Vec<_> = members
        .iter()
        .cloned()
        .map(|member| {
            let (api, http, stop, seen, sent) = (
                Arc::clone(&api),
                http.clone(),
                Arc::clone(&stop),
                Arc::clone(&seen),
                Arc::clone(&sent),
            );
            tokio::spawn(async move {
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = uuid::Uuid::new_v4().to_string();
                    let amount = n % 5 + 1;
                    let answered = earn(&http, &api, &member, &key, amount, &seen).await;
                    sent.lock().await.entry(member.clone()).or_default().push((
                        key,
                        amount,
                        answered.is_some(),
                    ));
                    if answered.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    // The restart hits a running load (answers coming in), and the load
    // goes on until the restarted server has answered as many again.
    let answered = |at_least: u64| {
        let seen = Arc::clone(&seen);
        mileage_e2e::eventually("earns answered", Duration::from_secs(120), move || {
            let ok = seen.ok.load(Ordering::Relaxed);
            async move { (ok >= at_least).then_some(ok) }
        })
    };
    let before = answered(LOAD_BEFORE_RESTART).await;
    let restart = tokio::task::spawn_blocking(move || {
        cluster.restart_immediately();
        cluster
    });
    let cluster = restart.await.unwrap();
    answered(before + LOAD_BEFORE_RESTART).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let sent = sent.lock().await.clone();
    let retried = retry_unanswered(&http, &api, &sent, &seen).await;
    let other = seen.other.lock().await.clone();
    assert!(other.is_empty(), "only 2xx, 503 or lost answers: {other:?}");

    let commands = applied_once(&cluster.url, &sent).await;
    assert!(
        seen.unavailable.load(Ordering::Relaxed) + seen.lost.load(Ordering::Relaxed) > 0,
        "the restart was felt"
    );
    println!(
        "database restart: {commands} keyed earns, {} answered 2xx at their first attempt, {} answers 503, {} answers lost, {retried} retried with their key until applied, 0 answered 500",
        commands as u64 - retried,
        seen.unavailable.load(Ordering::Relaxed),
        seen.lost.load(Ordering::Relaxed),
    );
}

/// Each member's log holds exactly one earn per key sent, with its amount;
/// how many keys there were.
async fn applied_once(url: &str, sent: &Sent) -> usize {
    let store = mileage_store::postgres::PgEventStore::connect(url)
        .await
        .unwrap();
    let mut commands = 0usize;
    for (member, keys) in sent {
        let log =
            mileage_store::EventStore::read_stream(&store, &format!("member-{member}"), 0, 100_000)
                .await
                .unwrap();
        let earned: Vec<i64> = log
            .iter()
            .filter(|e| e.event_type == "PointsEarned")
            .map(|e| {
                serde_json::from_slice::<Value>(&e.data).unwrap()["amount"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            earned.len(),
            keys.len(),
            "member {member}: each key applied once"
        );
        assert_eq!(
            earned.iter().sum::<i64>(),
            keys.iter().map(|k| k.1).sum::<i64>(),
            "member {member}: the amounts of the keys sent"
        );
        commands += keys.len();
    }
    commands
}

/// Retries every earn that was not answered, with its key, until it is;
/// how many there were.
async fn retry_unanswered(
    http: &reqwest::Client,
    api: &CommandApi,
    sent: &Sent,
    seen: &Seen,
) -> u64 {
    // Every command not answered is retried with its key until it is.
    let mut retried = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    for (member, keys) in sent {
        for (key, amount, answered) in keys {
            if *answered {
                continue;
            }
            retried += 1;
            while earn(http, api, member, key, *amount, seen).await.is_none() {
                assert!(
                    Instant::now() < deadline,
                    "the retry of {key} never applied"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    retried
}
