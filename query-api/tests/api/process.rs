//! The `mileage-query-api` binary as deployed: bad settings refused at
//! start-up with one line naming the setting, before the port opens; on
//! SIGTERM in-flight reads finish before it exits.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mileage_service::auth::{Role, mint_hs256};
use mileage_store::testing::{Service, assert_refuses_to_start, fresh_database};

/// The HS256 secret the tests start the binary with.
const JWT_SECRET: &str = "test-jwt-secret-of-at-least-32-bytes!";

fn token(sub: &str, role: Role) -> String {
    mint_hs256(JWT_SECRET.as_bytes(), sub, role, 3600).expect("a token is minted")
}

#[tokio::test]
async fn bad_settings_stop_start_up_with_one_line_naming_the_setting() {
    let database_url = fresh_database().await;
    let binary = env!("CARGO_BIN_EXE_mileage-query-api");
    let database = ("DATABASE_URL", database_url.as_str());
    let addr = ("QUERY_API_ADDR", "127.0.0.1:0");
    let hs256 = ("JWT_HS256_SECRET", JWT_SECRET);
    let cases = [
        (vec![hs256, addr], "database_url"),
        (vec![database, addr], "jwt_hs256_secret"),
        (
            vec![database, addr, hs256, ("JWT_RS256_PUBLIC_KEY", "not a key")],
            "jwt_hs256_secret",
        ),
        (
            vec![
                database,
                addr,
                ("JWT_RS256_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\n"),
            ],
            "jwt_rs256_public_key",
        ),
        (
            vec![
                database,
                addr,
                hs256,
                ("READ_DATABASE_URL", "host=db port=many"),
            ],
            "read_database_url",
        ),
        (
            vec![
                database,
                addr,
                hs256,
                ("READ_DATABASE_URL", "postgres://mileage@127.0.0.1:1/read"),
            ],
            "read_database_url",
        ),
        (
            vec![database, addr, hs256, ("COMMAND_API_URL", "ftp://commands")],
            "command_api_url",
        ),
        (
            vec![database, addr, hs256, ("QUERY_WAIT_MS", "-1")],
            "query_wait_ms",
        ),
        (
            vec![
                database,
                addr,
                hs256,
                ("RATE_LIMIT_AUTH_FAILURES_PER_MINUTE", "-3"),
            ],
            "rate_limit_auth_failures_per_minute",
        ),
    ];
    for (env, setting) in cases {
        let line = assert_refuses_to_start(binary, &env, setting);
        assert!(!line.contains("s3cret"), "a secret in the error: {line}");
    }
}

/// The binary over `database_url` with `env` besides the required settings,
/// and the port it logged.
async fn start(database_url: &str, env: &[(&str, &str)]) -> (Service, u64) {
    let mut child = Service(
        Command::new(env!("CARGO_BIN_EXE_mileage-query-api"))
            .env_clear()
            .env("DATABASE_URL", database_url)
            .env("JWT_HS256_SECRET", JWT_SECRET)
            .env("QUERY_API_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let port = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        let port = lines.find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(&line).ok()?;
            (value["fields"]["message"] == "query-api listening")
                .then(|| value["fields"]["port"].as_u64())
                .flatten()
        });
        std::thread::spawn(move || lines.for_each(drop));
        port.expect("the port is logged")
    })
    .await
    .unwrap();
    (child, port)
}

#[tokio::test]
async fn refused_tokens_are_answered_429_once_an_address_has_used_up_its_refusals() {
    let database_url = fresh_database().await;
    let (_child, port) = start(
        &database_url,
        &[("RATE_LIMIT_AUTH_FAILURES_PER_MINUTE", "3")],
    )
    .await;
    let http = reqwest::Client::new();
    let read = |token: String| {
        http.get(format!("http://127.0.0.1:{port}/managerpages"))
            .bearer_auth(token)
            .send()
    };
    let forged = mint_hs256(
        b"not-the-service-secret-but-32-bytes-long",
        "ops",
        Role::Manager,
        600,
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(read(forged.clone()).await.unwrap().status(), 401);
    }
    let refused = read(forged).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate_limit.auth_failures", "{body}");
    let good = read(token("ops", Role::Manager)).await.unwrap();
    assert_eq!(good.status(), 200, "a valid token still reads");
}

#[tokio::test]
async fn sigterm_lets_a_read_in_flight_finish_then_exits_cleanly() {
    let database_url = fresh_database().await;
    let (mut child, port) = start(&database_url, &[("QUERY_WAIT_MS", "8000")]).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let in_flight = tokio::spawn(
        http.get(format!("{base}/managerpages?position=999999-999999"))
            .bearer_auth(token("ops", Role::Manager))
            .send(),
    );
    // The read is in flight (the service counts it), and waits for eight
    // seconds: SIGTERM arrives while it waits.
    mileage_testkit::eventually("the read is in flight", Duration::from_secs(30), || async {
        let metrics = mileage_testkit::scrape(&http, &base).await;
        metrics
            .lines()
            .any(|line| {
                line.starts_with("http_requests_in_flight{")
                    && line.contains(r#"route="/managerpages""#)
                    && line.ends_with(" 1")
            })
            .then_some(())
    })
    .await;
    let terminated = tokio::spawn(async move { child.terminate(Duration::from_secs(20)).await });

    let response = in_flight
        .await
        .unwrap()
        .expect("the read in flight is answered");
    assert_eq!(response.status(), 200, "drained, not cut off");
    assert_eq!(
        response.headers()["x-stale"],
        "true",
        "it waited its full bound for the position"
    );
    assert!(started.elapsed() >= Duration::from_secs(7));

    let exit = terminated.await.unwrap();
    assert!(exit.success(), "SIGTERM is a clean stop: {exit}");
    assert!(
        http.get(format!("{base}/health")).send().await.is_err(),
        "the port is closed after the drain"
    );
}
