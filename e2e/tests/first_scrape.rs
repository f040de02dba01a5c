//! Every metric the services emit has a series from the first scrape: the
//! three binaries on a fresh database, each scraped once as Prometheus
//! would on start-up, before any command. A counter that appears only at
//! its first increase leaves every rule and dashboard query over it empty
//! (and `rate()` blind to that first increase), so a missing name fails
//! here with the file that emits it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mileage_e2e::{JWT_SECRET, binary, eventually, free_port, wait_ready};
use mileage_store::testing::Service;

/// Each metric named in a `counter!`, `gauge!` or `histogram!` in the
/// services' sources (tests left out), with the file naming it.
fn emitted(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for kind in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(kind) {
                    let rest = text[at + kind.len()..].trim_start();
                    if let Some(quoted) = rest.strip_prefix('"')
                        && let Some(end) = quoted.find('"')
                    {
                        found
                            .entry(quoted[..end].to_owned())
                            .or_insert_with(|| path.strip_prefix(root).unwrap().to_owned());
                    }
                }
            }
        }
    }
    found
}

/// The metric names in a scrape (histograms by their own name).
fn names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn service(name: &str, database: &str, settings: &[(&str, String)]) -> Service {
    Service(
        Command::new(binary(name))
            .env_clear()
            .envs(mileage_e2e::store_env(database))
            .env("DATABASE_URL", database)
            .env("JWT_HS256_SECRET", JWT_SECRET)
            .env("PHONE_INDEX_SECRET", "first-scrape-phone-secret")
            .env("NOTIFIER_URL", "http://127.0.0.1:9/sms")
            .env("RUST_LOG", "warn")
            .envs(settings.iter().cloned())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}")),
    )
}

#[tokio::test]
async fn every_emitted_metric_has_a_series_from_the_first_scrape() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let emitted = emitted(&root);
    assert!(
        emitted.contains_key("command_replays_total") && emitted.contains_key("notices_total"),
        "the scan finds the services' metrics: {emitted:?}"
    );
    let database = mileage_store::testing::fresh_database().await;
    let http = reqwest::Client::new();
    let (commands, projector, query) = (free_port(), free_port(), free_port());
    let _commands = service(
        "mileage-command-api",
        &database,
        &[("COMMAND_API_ADDR", format!("127.0.0.1:{commands}"))],
    );
    wait_ready(&http, &format!("http://127.0.0.1:{commands}/ready")).await;
    let _projector = service(
        "mileage-projector",
        &database,
        &[("PROJECTOR_ADDR", format!("127.0.0.1:{projector}"))],
    );
    let _query = service(
        "mileage-query-api",
        &database,
        &[("QUERY_API_ADDR", format!("127.0.0.1:{query}"))],
    );
    for port in [projector, query] {
        wait_ready(&http, &format!("http://127.0.0.1:{port}/ready")).await;
    }
    // The system is up once every consumer has its row and the projector
    // has measured them (once a second).
    let scrape = |port: u16| {
        let http = http.clone();
        async move { mileage_e2e::metrics(&http, &format!("http://127.0.0.1:{port}")).await }
    };
    eventually(
        "the projector's first measurement",
        Duration::from_secs(60),
        || async {
            let text = scrape(projector).await;
            text.contains(r#"projector_lag_seconds{consumer="notices"}"#)
                .then_some(())
        },
    )
    .await;
    let mut seen = BTreeSet::new();
    for port in [commands, projector, query] {
        seen.extend(names(&scrape(port).await));
    }
    let missing: Vec<String> = emitted
        .iter()
        .filter(|(name, _)| !seen.contains(*name))
        .map(|(name, file)| format!("{name} ({})", file.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in any service's first scrape: {missing:?}"
    );
}
