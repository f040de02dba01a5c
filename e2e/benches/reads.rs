//! The read side under load, on this machine, load generator in-process:
//!
//! - `GET /managerpages` (a page of 50), `GET /managerpages/{id}`,
//!   `GET /managerpages/counts`, and the console's reads: a target's
//!   timeline of 20 events (`GET /managerpages/{id}/timeline`), the search
//!   by number (`POST /search`), the health (`GET /projections`) and the
//!   counts over time (`GET /managerpages/counts/history`, 30 days), at 32
//!   clients over 10,000 targets (`BENCH_TARGETS`), each with its member,
//!   its number's claim, a timeline entry (twenty for the first
//!   1,000) and a year of hourly counts;
//! - end-to-end lag: a probe earns points and reads its member back through
//!   the query API with the command's position, while 32 other clients run
//!   the command benchmark's `earn points` load; lag is the time from the
//!   command's answer to the read that shows it.
//!
//! Prints numbers; asserts nothing.
//! `bash deploy/local/with-pg.sh cargo bench -p mileage-query-api --bench reads`
//! Settings: `BENCH_SECONDS` (5), `BENCH_RUNS` (3), `BENCH_CLIENTS` (32),
//! `BENCH_ONLY` (`reads` or `lag`; both by default), `BENCH_TARGETS`
//! (10,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mileage_e2e::{CommandApi, JWT_SECRET, Sample, eventually, load, start_projector};
use mileage_query_api::config::Settings;
use mileage_query_api::startup::Application;
use mileage_service::settings::JwtKey;
use serde_json::json;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn query_api(database: &str, command_api: &str) -> String {
    let settings = Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        read_database_url: database.to_owned(),
        keys_database_url: database.to_owned(),
        jwt: JwtKey::hs256(JWT_SECRET).into(),
        token_rules: mileage_service::settings::TokenRules::default(),
        rate_limits: mileage_service::settings::RateLimits::off(),
        wait_limit: Duration::from_secs(5),
        command_api_url: command_api.to_owned(),
        pool_size: 16,
        phone_secret: Some(mileage_e2e::PHONE_INDEX_SECRET.into()),
    };
    let app = Application::build(&settings).await.expect("the query API");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    address
}

/// `targets` managerpage rows, written straight into the read model as the
/// projector writes them: each target's phone number and nickname sealed
/// under a person key of its own, which every read opens. The per-status
/// counts are then made from the rows, as for a schema from before them.
async fn fill_managerpage(database: &str, targets: i64) {
    use mileage_domain::pii::PersonKey;
    use mileage_read_model::people::stored;
    let (client, connection) = tokio_postgres::connect(database, tokio_postgres::NoTls)
        .await
        .expect("the database");
    tokio::spawn(connection);
    let n = usize::try_from(targets).expect("a count");
    let mut holders = Vec::with_capacity(n);
    let (mut ids, mut secrets, mut phones, mut nicknames) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for g in 1..=targets {
        let secret: [u8; 32] = rand::random();
        let key = PersonKey::new(format!("dormantMember-{g}"), secret);
        ids.push(g.to_string());
        secrets.push(secret.to_vec());
        phones.push(stored(&key.seal(
            "phoneNo",
            &bench_phone(u64::try_from(g).unwrap_or(0)),
            rand::random(),
        )));
        nicknames.push(stored(&key.seal(
            "nickname",
            &format!("target {g}"),
            rand::random(),
        )));
        // Sealed as a claim seals its holder; the target's key stands in
        // for the claim's (one key read either way).
        holders.push(stored(&key.seal_comparable("memberId", &g.to_string())));
    }
    client
        .execute(
            "INSERT INTO person_keys (key_id, secret)
             SELECT 'dormantMember-' || id, secret FROM UNNEST($1::text[], $2::bytea[]) AS k(id, secret)",
            &[&ids, &secrets],
        )
        .await
        .expect("keys");
    client
        .execute(
            "INSERT INTO managerpage.targets
                 (id, member_id, phone_sealed, nickname_sealed, status, message_status,
                  registered_at, updated_at, registered_commit, registered_prepare, last_position)
             SELECT id, id, phone, nickname,
                    (ARRAY['PRE_DORMANT', 'DORMANT', 'DESTRUCTION', 'CLEARED'])[id::int % 4 + 1],
                    CASE WHEN id::int % 4 = 0 THEN NULL ELSE 'SENT' END,
                    now(), now(), id::bigint, id::bigint, id || '-' || id
               FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(id, phone, nickname)",
            &[&ids, &phones, &nicknames],
        )
        .await
        .expect("fill");
    client
        .batch_execute(&format!(
            "DROP TABLE managerpage.status_counts; {}",
            <mileage_read_model::managerpage::ManagerpageTable as mileage_read_model::Table>::ddl(
                mileage_read_model::managerpage::NAME
            )
        ))
        .await
        .expect("the counts");
    fill_console(&client, &ids, (&phones, &nicknames), &holders).await;
    for table in [
        "managerpage.targets",
        "person_keys",
        "members.members",
        "phones.phones",
        "timeline.entries",
    ] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .expect("vacuum");
    }
}

/// What the console reads besides the list: each target's member (its
/// data sealed as the target's), the claim of its number (sealed under the
/// same key), a timeline entry (twenty for the first 1,000 targets),
/// a year of hourly counts, and nine consumers at the head.
async fn fill_console(
    client: &tokio_postgres::Client,
    ids: &[String],
    (phones, nicknames): (&[String], &[String]),
    holders: &[String],
) {
    use mileage_domain::pii::phone_index;
    use mileage_domain::values::PhoneNumber;
    let secret = mileage_e2e::PHONE_INDEX_SECRET.as_bytes();
    let indexes: Vec<String> = ids
        .iter()
        .map(|id| {
            let g: u64 = id.parse().expect("a numeric id");
            phone_index(
                secret,
                &PhoneNumber::parse(&bench_phone(g)).expect("a phone"),
            )
        })
        .collect();
    client
        .execute(
            "INSERT INTO members.members
                 (id, status, balance, phone_sealed, nickname_sealed, joined_at, updated_at,
                  last_position, last_active_at)
             SELECT id, 'READY', 100, phone, nickname, now(), now(), id || '-' || id, now()
               FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(id, phone, nickname)",
            &[&ids, &phones, &nicknames],
        )
        .await
        .expect("members");
    client
        .execute(
            "INSERT INTO phones.phones (phone_index, holder, updated_at, last_position)
             SELECT idx, holder, now(), '1-1' FROM UNNEST($1::text[], $2::text[]) AS t(idx, holder)",
            &[&indexes, &holders.to_vec()],
        )
        .await
        .expect("phones");
    client
        .execute(
            "INSERT INTO timeline.entries
                 (event_id, subject, stream, commit_pos, prepare_pos, at, event_type, actor,
                  correlation_id, data, last_position)
             SELECT gen_random_uuid()::text, 'dormantMember-' || id, 'dormantMember-' || id,
                    id::bigint * 100 + n, n, now(), 'DormantMemberChanged', 'manager:ops',
                    gen_random_uuid(),
                    json_build_object('id', id, 'memberId', id, 'phoneNo', phone::json,
                                      'nickname', nickname::json, 'at', now())::text,
                    (id::bigint * 100 + n) || '-' || n
               FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(id, phone, nickname),
                    generate_series(1, CASE WHEN id::int <= 1000 THEN 20 ELSE 1 END) n",
            &[&ids, &phones, &nicknames],
        )
        .await
        .expect("timeline");
    fill_history_and_health(client).await;
}

/// A year of hourly counts (and their daily roll-up), and nine consumers at
/// the head.
async fn fill_history_and_health(client: &tokio_postgres::Client) {
    for (table, values) in [
        (
            "managerpage.status_history",
            "ARRAY['PRE_DORMANT', 'DORMANT', 'DESTRUCTION', 'CLEARED']",
        ),
        ("messages.outcome_history", "ARRAY['SENT', 'FAILED']"),
    ] {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} (hour, status, entered, \"left\")
                 SELECT date_trunc('hour', now()) - make_interval(hours => h), s, 5, 3
                   FROM generate_series(0, 24 * 365) h, unnest({values}) s
                 ON CONFLICT DO NOTHING;
                 INSERT INTO {table}_daily (day, status, entered, \"left\")
                 SELECT date_trunc('day', hour, 'UTC'), status, sum(entered), sum(\"left\")
                   FROM {table} GROUP BY 1, 2
                 ON CONFLICT DO NOTHING"
            ))
            .await
            .expect("the history");
    }
    let head = mileage_store::RecordedEvent {
        event_id: uuid::Uuid::new_v4(),
        stream: "bench-1".into(),
        stream_version: 0,
        position: mileage_store::Position {
            commit: 1,
            prepare: 1,
        },
        event_type: "Bench".into(),
        schema_version: 1,
        data: bytes::Bytes::from_static(b"{}"),
        metadata: mileage_domain::envelope::EventMetadata {
            correlation_id: uuid::Uuid::nil(),
            causation_id: uuid::Uuid::nil(),
            recorded_at: chrono::Utc::now(),
            trace: None,
            actor: None,
        },
    };
    for name in mileage_read_model::NAMES.into_iter().chain([
        "notices",
        "destruction",
        "erasure",
        "releases",
    ]) {
        mileage_read_model::bookkeeping::claim(client, name, "postgresql:bench")
            .await
            .expect("a consumer");
        mileage_read_model::bookkeeping::advance(client, name, None, &head, 1)
            .await
            .expect("a checkpoint");
    }
}

/// The phone number of bench target `g`: one per target.
fn bench_phone(g: u64) -> String {
    format!("010{:08}", g % 100_000_000)
}

/// `clients` keep-alive connections, each sending `read(client, n)` (a GET
/// of its path, or a POST of its JSON body) with the bearer token back to
/// back for `duration`: a lean load generator
/// (one hyper connection per client, requests built once per call), so the
/// machine's two cores go to the service rather than to the client.
async fn get_load(
    clients: u64,
    duration: Duration,
    address: &str,
    token: &str,
    read: impl Fn(u64, u64) -> (String, Option<String>) + Send + Sync + 'static,
) -> Sample {
    use http_body_util::{BodyExt, Full};
    let authority = address.trim_start_matches("http://").to_owned();
    let authorization: Arc<str> = format!("Bearer {token}").into();
    let read = Arc::new(read);
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (authority, authorization, read) = (
                authority.clone(),
                Arc::clone(&authorization),
                Arc::clone(&read),
            );
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(&authority)
                    .await
                    .expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(connection);
                let mut micros = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let (path, body) = read(client, n);
                    let request = match body {
                        None => hyper::Request::get(path),
                        Some(_) => {
                            hyper::Request::post(path).header("content-type", "application/json")
                        }
                    }
                    .header("host", &authority)
                    .header("authorization", &*authorization)
                    .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
                    .expect("a request");
                    let t = Instant::now();
                    let response = sender.send_request(request).await.expect("an answer");
                    assert!(response.status().is_success(), "{}", response.status());
                    response.into_body().collect().await.expect("a body");
                    micros.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    n += 1;
                }
                micros
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a load client"));
    }
    Sample::of(all, started.elapsed())
}

fn print(name: &str, sample: &Sample) {
    println!(
        "{name:<44} {:>8.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
        sample.per_second, sample.p50_ms, sample.p99_ms
    );
}

async fn reads(seconds: Duration, runs: u64, clients: u64, targets: i64) {
    let database = mileage_store::testing::fresh_database().await;
    let address = query_api(&database, "").await;
    // The event store's migrations make the person-key table.
    mileage_store::postgres::PgEventStore::connect(&database)
        .await
        .expect("the event store");
    fill_managerpage(&database, targets).await;
    let token = Arc::<str>::from(mileage_e2e::token(
        "ops",
        mileage_service::auth::Role::Manager,
    ));
    let modulus = u64::try_from(targets).unwrap_or(1).max(1);
    let timelines = modulus.min(1000);
    for (name, read) in [
        ("GET /managerpages (page of 50)", "list"),
        ("GET /managerpages/{id}", "id"),
        ("GET /managerpages/counts", "counts"),
        ("GET /managerpages/{id}/timeline (20 events)", "timeline"),
        ("POST /search (by number)", "search"),
        ("GET /projections", "health"),
        ("GET /managerpages/counts/history (30 days)", "history"),
    ] {
        let mut samples = Vec::new();
        for _ in 0..runs {
            samples.push(
                get_load(clients, seconds, &address, &token, move |c, n| {
                    let pick = (c * 7919 + n * 104_729) % modulus + 1;
                    match read {
                        "id" => (format!("/managerpages/{pick}"), None),
                        "counts" => ("/managerpages/counts".to_owned(), None),
                        "timeline" => (
                            format!("/managerpages/{}/timeline", pick % timelines + 1),
                            None,
                        ),
                        "search" => (
                            "/search".to_owned(),
                            Some(json!({ "phoneNo": bench_phone(pick) }).to_string()),
                        ),
                        "health" => ("/projections".to_owned(), None),
                        "history" => ("/managerpages/counts/history".to_owned(), None),
                        _ => ("/managerpages?limit=50".to_owned(), None),
                    }
                })
                .await,
            );
        }
        print(
            &format!("{name}, {clients} clients, {targets} targets"),
            &Sample::median(samples),
        );
    }
}

#[allow(clippy::cast_precision_loss)]
async fn lag(seconds: Duration, runs: u64, clients: u64) {
    let database = mileage_store::testing::fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let projector = start_projector(&database, None).await;
    let query = query_api(&database, &commands.address).await;
    let mut members = Vec::new();
    for n in 0..=clients {
        members.push(
            commands
                .join(&format!("0108{n:07}"), &format!("load {n}"))
                .await,
        );
    }
    let probe = members.pop().expect("a probe member");
    let members = Arc::new(members);
    let http = reqwest::Client::new();
    let token: Arc<str> = commands.token.clone().into();
    for run in 0..runs {
        let (address, http2, token2, members2) = (
            commands.address.clone(),
            http.clone(),
            Arc::clone(&token),
            Arc::clone(&members),
        );
        let background = tokio::spawn(load(clients, seconds, move |c, _| {
            let member = &members2[usize::try_from(c).unwrap_or(0)];
            http2
                .post(format!("{address}/members/{member}/points/earn"))
                .bearer_auth(&*token2)
                .json(&json!({ "amount": 1 }))
        }));
        let deadline = Instant::now() + seconds;
        let mut lags = Vec::new();
        while Instant::now() < deadline {
            let answer: serde_json::Value = http
                .post(format!("{}/members/{probe}/points/earn", commands.address))
                .bearer_auth(&*token)
                .json(&json!({ "amount": 1 }))
                .send()
                .await
                .expect("the command API")
                .json()
                .await
                .expect("JSON");
            let written = Instant::now();
            let position = answer["position"].as_str().expect("a position").to_owned();
            let balance = answer["balance"].clone();
            eventually(
                "the probe's write is visible",
                Duration::from_secs(10),
                || async {
                    let response = http
                        .get(format!("{query}/members/{probe}?position={position}"))
                        .bearer_auth(&*token)
                        .send()
                        .await
                        .ok()?;
                    let stale = response.headers().contains_key("x-stale");
                    let body: serde_json::Value = response.json().await.ok()?;
                    (!stale && body["balance"] == balance).then_some(())
                },
            )
            .await;
            lags.push(u64::try_from(written.elapsed().as_micros()).unwrap_or(u64::MAX));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let commands_sample = background.await.expect("the load");
        let lag = Sample::of(lags, seconds);
        println!(
            "run {run}: earn points at {clients} clients {:>6.0}/s (p99 {:.1} ms); append -> visible lag p50 {:.1} ms, p99 {:.1} ms ({} probes)",
            commands_sample.per_second,
            commands_sample.p99_ms,
            lag.p50_ms,
            lag.p99_ms,
            (lag.per_second * seconds.as_secs_f64()).round()
        );
    }
    projector.stop().await;
}

#[tokio::main]
async fn main() {
    let seconds = Duration::from_secs(env_number("BENCH_SECONDS", 5));
    let runs = env_number("BENCH_RUNS", 3);
    let clients = env_number("BENCH_CLIENTS", 32);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "reads" {
        let targets = i64::try_from(env_number("BENCH_TARGETS", 10_000)).unwrap_or(10_000);
        reads(seconds, runs, clients, targets).await;
    }
    if only.is_empty() || only == "lag" {
        lag(seconds, runs, clients).await;
    }
}
