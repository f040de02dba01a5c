//! The `command-api` binary as deployed: settings from a TOML file and the
//! environment, JSON logs naming each request's correlation id, and a clean
//! exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::JWT_SECRET;

#[tokio::test]
async fn the_binary_reads_its_file_logs_json_with_the_correlation_id_and_stops_on_sigterm() {
    let database_url = mileage_store::testing::fresh_database().await;
    let dir = std::env::temp_dir().join(format!("mileage-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mileage.toml");
    std::fs::write(
        &file,
        format!(
            "database_url = {database_url:?}\n\
             phone_index_secret = \"file-phone-index-secret\"\n\
             jwt_hs256_secret = {JWT_SECRET:?}\n\
             command_api_addr = \"127.0.0.1:1\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mileage-command-api"))
        .env_clear()
        .env("MILEAGE_CONFIG", &file)
        .env("COMMAND_API_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<Value>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("a log line that is not JSON: {line}"));
            if lines_tx.send(value).is_err() {
                break;
            }
        }
    });
    let next = |what: &str, matches: &dyn Fn(&Value) -> bool| -> Value {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no log line: {what}"));
            if matches(&line) {
                return line;
            }
        }
    };

    let listening = next("listening", &|l| {
        l["fields"]["message"] == "command-api listening"
    });
    let port = listening["fields"]["port"]
        .as_u64()
        .expect("the port is logged");

    let correlation = uuid::Uuid::new_v4().to_string();
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/members"))
        .header("x-correlation-id", &correlation)
        .json(&serde_json::json!({ "phoneNo": "01055550000", "nickname": "logged" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let finished = next("request finished", &|l| {
        l["fields"]["message"] == "request finished"
    });
    assert_eq!(finished["span"]["correlation_id"], correlation.as_str());
    assert_eq!(finished["span"]["path"], "/members");
    assert_eq!(finished["fields"]["status"], 201);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "SIGTERM is a clean stop: {exit}");
    let _ = std::fs::remove_dir_all(dir);
}
