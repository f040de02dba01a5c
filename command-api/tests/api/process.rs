//! The `command-api` binary as deployed: settings from a TOML file and the
//! environment, JSON logs naming each request's correlation id, and a clean
//! exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mileage_store::testing::Service;
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
    let mut child = Service(
        Command::new(env!("CARGO_BIN_EXE_mileage-command-api"))
            .env_clear()
            .env("MILEAGE_CONFIG", &file)
            .env("COMMAND_API_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "debug")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = mpsc::channel::<Value>();
    let stderr = child.0.stderr.take().unwrap();
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

    let exit = child.terminate(Duration::from_secs(20)).await;
    assert!(exit.success(), "SIGTERM is a clean stop: {exit}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_settings_stop_start_up_with_one_line_naming_the_setting() {
    let database_url = mileage_store::testing::fresh_database().await;
    let good = [
        ("DATABASE_URL", database_url.as_str()),
        ("PHONE_INDEX_SECRET", "file-phone-index-secret"),
        ("JWT_HS256_SECRET", JWT_SECRET),
        ("COMMAND_API_ADDR", "127.0.0.1:0"),
    ];
    let with = |name: &'static str, value: &'static str| -> Vec<(&str, &str)> {
        let mut env: Vec<(&str, &str)> = good.iter().copied().filter(|(k, _)| *k != name).collect();
        if !value.is_empty() {
            env.push((name, value));
        }
        env
    };
    let binary = env!("CARGO_BIN_EXE_mileage-command-api");
    let cases = [
        (with("DATABASE_URL", ""), "database_url"),
        (with("DATABASE_URL", "host=db port=many"), "database_url"),
        (
            with("DATABASE_URL", "postgres://mileage@127.0.0.1:1/mileage"),
            "database_url",
        ),
        (with("PHONE_INDEX_SECRET", "short"), "phone_index_secret"),
        (with("JWT_HS256_SECRET", ""), "jwt_hs256_secret"),
        (
            with("JWT_HS256_SECRET", "too-short-to-sign"),
            "jwt_hs256_secret",
        ),
        (
            [
                with("JWT_HS256_SECRET", ""),
                vec![(
                    "JWT_RS256_PUBLIC_KEY",
                    "-----BEGIN PUBLIC KEY-----\nnot a key\n",
                )],
            ]
            .concat(),
            "jwt_rs256_public_key",
        ),
        (with("MEMBER_API_URL", "ftp://members"), "member_api_url"),
        (
            with("EVENTSTOREDB_URL", "esdb://admin:s3cret@db:2113?tls=maybe"),
            "eventstoredb_url",
        ),
        (
            with(
                "EVENTSTOREDB_URL",
                "esdb://admin:s3cret@127.0.0.1:1?tls=false",
            ),
            "eventstoredb_url",
        ),
        (with("COMMAND_API_ADDR", "everywhere"), "command_api_addr"),
        (with("BREAKER_FAILURES", "0"), "breaker_failures"),
        (with("IDEMPOTENCY_KEY_HOURS", "-1"), "idempotency_key_hours"),
        (
            with("IDEMPOTENCY_KEY_HOURS", "99999999"),
            "idempotency_key_hours",
        ),
        (
            with("MILEAGE_CONFIG", "/nonexistent/mileage.toml"),
            "MILEAGE_CONFIG",
        ),
    ];
    for (env, setting) in cases {
        let line = mileage_store::testing::assert_refuses_to_start(binary, &env, setting);
        for secret in ["too-short-to-sign", "s3cret", JWT_SECRET] {
            assert!(!line.contains(secret), "a secret in the error: {line}");
        }
    }
}

#[test]
fn mint_token_helps_refuses_unknown_roles_and_mints_tokens_the_services_accept() {
    let binary = env!("CARGO_BIN_EXE_mint-token");
    let run = |args: &[&str], secret: Option<&str>| {
        let mut command = Command::new(binary);
        command.env_clear().args(args);
        if let Some(secret) = secret {
            command.env("JWT_HS256_SECRET", secret);
        }
        command.output().expect("mint-token runs")
    };
    let help = run(&["--help"], None);
    assert!(help.status.success(), "--help exits 0");
    let text = String::from_utf8_lossy(&help.stdout);
    for named in [
        "manager",
        "member",
        "partner",
        "TTL_SECONDS",
        "JWT_HS256_SECRET",
    ] {
        assert!(text.contains(named), "--help names {named}: {text}");
    }
    let unknown = run(&["boss", "ops"], Some(JWT_SECRET));
    assert_eq!(unknown.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("possible values"));
    let no_secret = run(&["manager", "ops"], None);
    assert!(!no_secret.status.success());
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("JWT_HS256_SECRET"));
    let minted = run(&["member", "42", "60"], Some(JWT_SECRET));
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout).unwrap();
    let verifier = mileage_service::auth::Verifier::hs256(JWT_SECRET.as_bytes());
    let caller = verifier
        .verify(token.trim())
        .expect("the services accept it");
    assert_eq!(caller.sub, "42");
}
