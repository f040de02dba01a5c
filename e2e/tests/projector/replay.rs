//! The `replay` binary against a real PostgreSQL: every subcommand, its
//! `--json` output, its exit codes and its refusals.

use std::path::PathBuf;
use std::time::Duration;

use mileage_e2e::{
    CommandApi, Gateway, ReadSide, Running, caught_up, eventually, read_client, start_projector,
};
use mileage_store::testing::fresh_database;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// Runs `replay args...` against `database`: exit code, stdout, stderr.
async fn replay(database: &str, args: &[&str]) -> (i32, String, String) {
    replay_reading(database, database, args).await
}

/// `replay` over the event store in `database`, with the read models in
/// `read_database`.
async fn replay_reading(
    database: &str,
    read_database: &str,
    args: &[&str],
) -> (i32, String, String) {
    mileage_e2e::replay(database, &[("READ_DATABASE_URL", read_database)], args).await
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(&format!("SELECT row_to_json(t)::text FROM ({sql}) t"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Pads the log with `n` events of a category no projection reads, so a
/// rebuild with tiny batches takes a while.
async fn pad_log(database: &str, n: i64) {
    read_client(database)
        .await
        .execute(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, correlation_id, causation_id)
             SELECT 'padding-' || g, 0, gen_random_uuid(), 'Padding', 1, '{}'::json, gen_random_uuid(), gen_random_uuid()
               FROM generate_series(1, $1::bigint) g",
            &[&n],
        )
        .await
        .unwrap();
}

/// Targets registered through the command API and the projector caught up.
async fn system_with_targets(
    n: usize,
) -> (
    String,
    CommandApi,
    mileage_projector::startup::Running,
    Vec<String>,
) {
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let projector = start_projector(&database, None).await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            commands
                .register_target(&format!("0104{i:07}"), &format!("t{i}"))
                .await
                .0,
        );
    }
    let side = ReadSide::of(&database);
    eventually("the targets are projected", WAIT, || async {
        let count = side.target_count().await?;
        (usize::try_from(count).ok()? == n).then_some(())
    })
    .await;
    caught_up(&projector, &database).await;
    (database, commands, projector, ids)
}

#[tokio::test]
async fn rebuild_swaps_in_an_equal_copy_while_commands_keep_arriving_and_the_live_one_carries_on() {
    let (database, commands, projector, _) = system_with_targets(20).await;
    let side = ReadSide::of(&database);
    let writer = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(
                commands
                    .register_target(&format!("0105{i:07}"), &format!("w{i}"))
                    .await
                    .0,
            );
        }
        (commands, ids)
    });
    let (code, stdout, stderr) = replay(
        &database,
        &["rebuild", "managerpage", "--json", "--batch", "7"],
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let done = json(&stdout);
    assert_eq!(done["projection"], "managerpage");
    assert_eq!(done["resumed"], false);
    let (commands, _) = writer.await.unwrap();
    let (late, _) = commands.register_target("01059999999", "late").await;
    eventually(
        "every target, including those written during the rebuild",
        WAIT,
        || async {
            let count = side.target_count().await?;
            let late_seen = side.target_status(&late).await.is_some();
            (count == 61 && late_seen).then_some(())
        },
    )
    .await;
    let (code, stdout, stderr) = replay(&database, &["verify", "managerpage", "--json"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(json(&stdout)["tables"][0]["differences"], 0);
    projector.stop().await;
}

#[tokio::test]
#[cfg_attr(
    eventstoredb_url_set,
    ignore = "PostgreSQL only: pads the log with SQL on the events table"
)]
async fn an_interrupted_rebuild_resumes_and_two_at_once_are_refused() {
    let (database, _commands, projector, _) = system_with_targets(60).await;
    projector.stop().await;
    pad_log(&database, 5000).await;
    let side = ReadSide::of(&database);

    let child = std::process::Command::new(mileage_e2e::binary("replay"))
        .env_clear()
        .envs(mileage_e2e::store_env(&database))
        .env("DATABASE_URL", &database)
        .args(["rebuild", "managerpage", "--batch", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the shadow copy is part-way", WAIT, || async {
        let shadow = side.consumer("managerpage__rebuild").await?;
        (shadow.events_handled > 3).then_some(())
    })
    .await;
    let (code, _, stderr) = replay(&database, &["rebuild", "managerpage"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("already running"), "{stderr}");

    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("run `replay rebuild managerpage` again")
    );

    let (code, stdout, _) = replay(&database, &["status", "--json"]).await;
    assert_eq!(code, 0);
    let managerpage = json(&stdout)
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "managerpage")
        .cloned()
        .unwrap();
    assert_eq!(managerpage["state"], "rebuilding");

    let (code, stdout, stderr) = replay(&database, &["rebuild", "managerpage", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout)["resumed"], true);
    let (code, stdout, _) = replay(&database, &["verify", "managerpage"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("equal\n"), "{stdout}");
}

#[tokio::test]
async fn verify_catches_a_corrupted_row_and_a_missing_one() {
    let (database, _commands, projector, ids) = system_with_targets(5).await;
    projector.stop().await;
    let read = read_client(&database).await;
    read.execute(
        "UPDATE managerpage.targets SET status = 'tampered' WHERE id = $1",
        &[&ids[1]],
    )
    .await
    .unwrap();
    read.execute("DELETE FROM managerpage.targets WHERE id = $1", &[&ids[3]])
        .await
        .unwrap();
    let (code, stdout, _) = replay(&database, &["verify", "managerpage", "--json"]).await;
    assert_eq!(code, 1, "{stdout}");
    let report = json(&stdout);
    assert_eq!(report["tables"][0]["differences"], 2);
    let keys: Vec<&str> = report["firstDifferences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [ids[1].as_str(), ids[3].as_str()]);
    assert!(
        report["firstDifferences"][0]["live"]
            .as_str()
            .unwrap()
            .contains("tampered")
    );
    assert!(
        report["firstDifferences"][1]["live"].is_null(),
        "the missing row"
    );
    let (code, stdout, _) = replay(&database, &["verify", "managerpage"]).await;
    assert_eq!(code, 1);
    assert!(
        stdout.contains("tampered")
            && stdout.contains("(missing)")
            && stdout.ends_with("DIFFERENT\n"),
        "{stdout}"
    );
}

#[tokio::test]
#[cfg_attr(
    eventstoredb_url_set,
    ignore = "PostgreSQL only: imports into fresh PostgreSQL logs"
)]
async fn export_then_import_into_an_empty_store_gives_the_same_log_a_cut_off_import_resumes_and_a_second_is_refused()
 {
    let (database, _commands, projector, _) = system_with_targets(5).await;
    projector.stop().await;
    let dir = std::env::temp_dir().join(format!("mileage-archive-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let archive: PathBuf = dir.join("log.jsonl");
    let (code, stdout, stderr) = replay(
        &database,
        &["export", "--out", archive.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let exported = json(&stdout)["events"].as_u64().unwrap();
    assert!(exported >= 15, "{exported}");

    let empty = fresh_database().await;
    // An import cut off after its first events: the archive's first lines.
    let text = std::fs::read_to_string(&archive).unwrap();
    let head: Vec<&str> = text.lines().take(4).collect();
    let cut = dir.join("cut.jsonl");
    std::fs::write(&cut, head.join("\n")).unwrap();
    let (code, _, stderr) = replay(&empty, &["import", cut.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) =
        replay(&empty, &["import", archive.to_str().unwrap(), "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout)["events"].as_u64(), Some(exported - 4));
    assert_eq!(json(&stdout)["alreadyThere"].as_u64(), Some(4), "resumed");
    let (code, stdout, stderr) = replay(&empty, &["import", archive.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains("archive already imported")
            && stderr.contains(&format!("all {exported} events")),
        "{stderr}"
    );
    // Another archive whose first stream clashes with what is stored.
    let clashing = dir.join("clash.jsonl");
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[0]["eventId"] = Value::String(uuid::Uuid::new_v4().to_string());
    let last = lines.len() - 1;
    let category = lines[last]["stream"]
        .as_str()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    lines[last]["stream"] = Value::String(format!("{category}-999999"));
    lines[last]["streamVersion"] = Value::from(0);
    std::fs::write(
        &clashing,
        lines
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let (code, _, stderr) = replay(&empty, &["import", clashing.to_str().unwrap()]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("clashes with what the target store holds"),
        "{stderr}"
    );
    let (_, exported_now, _) = replay(&empty, &["export"]).await;
    assert_eq!(
        exported_now.lines().count() as u64,
        exported,
        "nothing of the clashing archive was appended, not even its new stream"
    );

    let again = dir.join("again.jsonl");
    let (code, _, _) = replay(&empty, &["export", "--out", again.to_str().unwrap()]).await;
    assert_eq!(code, 0);
    let strip = |text: String| -> Vec<Value> {
        text.lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("position");
                v
            })
            .collect()
    };
    assert_eq!(
        strip(std::fs::read_to_string(&archive).unwrap()),
        strip(std::fs::read_to_string(&again).unwrap()),
        "ids, order, types, versions, data and metadata (times included) survive"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
#[cfg_attr(
    eventstoredb_url_set,
    ignore = "PostgreSQL only: checks that a fresh PostgreSQL log stays empty"
)]
async fn bad_archives_and_names_are_refused_with_where_and_what() {
    let database = fresh_database().await;
    let dir = std::env::temp_dir().join(format!("mileage-bad-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = r#"{"eventId":"0191d1a0-0000-7000-8000-000000000001","stream":"member-1","streamVersion":0,"position":"1-1","type":"MemberWithdrawn","version":1,"data":{"memberId":"1","at":"2026-01-01T00:00:00Z"},"metadata":{"correlationId":"0191d1a0-0000-7000-8000-000000000002","causationId":"0191d1a0-0000-7000-8000-000000000002","recordedAt":"2026-01-01T00:00:00Z"}}"#;
    let cases = [
        (
            "truncated.jsonl",
            format!("{good}\n{}", &good[..60]),
            "truncated.jsonl:2",
        ),
        (
            "version.jsonl",
            good.replace("\"version\":1", "\"version\":9"),
            "no schema version 9",
        ),
        (
            "type.jsonl",
            good.replace("MemberWithdrawn", "MemberVanished"),
            "MemberVanished",
        ),
        ("empty.jsonl", String::new(), "holds no events"),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let (code, _, stderr) = replay(&database, &["import", path.to_str().unwrap()]).await;
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    let (code, _, stderr) = replay(&database, &["import", "/nowhere/log.jsonl"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot open the archive /nowhere/log.jsonl"),
        "{stderr}"
    );
    let (code, stdout, _) = replay(&database, &["export"]).await;
    assert_eq!(
        (code, stdout.as_str()),
        (0, ""),
        "nothing was imported from the bad archives"
    );
    for command in ["rebuild", "verify"] {
        let (code, _, stderr) = replay(&database, &[command, "managerpages"]).await;
        assert_eq!(code, 2);
        assert!(
            stderr.contains("unknown projection \"managerpages\""),
            "{stderr}"
        );
    }
    let (code, _, stderr) = replay("postgres://nobody@127.0.0.1:1/none", &["status"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("event store"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A target marked dormant under a known correlation id whose notice fails,
/// so the destruction saga runs to its end.
async fn destroyed_target() -> (String, Running, String, uuid::Uuid) {
    let database = fresh_database().await;
    let gateway = Gateway::start(&["01000001111"]).await;
    let commands = CommandApi::spawn(&database).await;
    let projector = start_projector(&database, Some(&gateway)).await;
    let (id, _) = commands.register_target("01000001111", "doomed").await;
    let correlation = uuid::Uuid::new_v4();
    reqwest::Client::new()
        .patch(format!("{}/dormantMembers/{id}", commands.address))
        .bearer_auth(&commands.token)
        .header("x-correlation-id", correlation.to_string())
        .json(&serde_json::json!({ "memberStatus": "DORMANT" }))
        .send()
        .await
        .unwrap();
    let side = ReadSide::of(&database);
    eventually("the target is destroyed", WAIT, || async {
        (side.target_status(&id).await? == "DESTRUCTION").then_some(())
    })
    .await;

    (database, projector, id, correlation)
}

/// `inspect` of a destroyed target's stream (`plain`) names its actors,
/// and `--actor` keeps one actor's events.
async fn inspect_names_who_did_what(database: &str, stream: &str, plain: &str) {
    let actors: Vec<Value> = plain
        .lines()
        .map(|line| json(line)["metadata"]["actor"].clone())
        .collect();
    assert_eq!(
        actors,
        ["manager:ops", "manager:ops", "system:destruction"],
        "registered and marked dormant by the operator, destroyed by the saga"
    );
    let (_, by_saga, _) = replay(
        database,
        &[
            "inspect",
            "--stream",
            stream,
            "--actor",
            "system:destruction",
        ],
    )
    .await;
    assert_eq!(by_saga.lines().count(), 1, "{by_saga}");
    let (code, _, stderr) = replay(database, &["inspect", "--actor", "root:me"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("malformed actor"), "{stderr}");
}

/// The destroyed person's member record (`member-1`, the target's member)
/// is theirs too, so erased with it; another person's still shows.
async fn members_erased_but_the_living(database: &str) {
    eventually(
        "the destroyed person's member record erased",
        WAIT,
        || async {
            let (_, member, _) =
                replay(database, &["inspect", "--stream", "member-1", "--reveal"]).await;
            (member.contains("(erased)") && !member.contains("01000001111")).then_some(())
        },
    )
    .await;
    let commands = CommandApi::spawn(database).await;
    let alive = commands.join("01000002222", "alive").await;
    let (_, member, _) = replay(
        database,
        &[
            "inspect",
            "--stream",
            &format!("member-{alive}"),
            "--reveal",
        ],
    )
    .await;
    assert!(
        member.contains("01000002222"),
        "a live person's data shows when asked: {member}"
    );
}

#[tokio::test]
async fn trace_inspect_and_status_follow_the_destruction_saga() {
    let (database, projector, id, correlation) = destroyed_target().await;
    let (code, stdout, stderr) = replay(&database, &["trace", &correlation.to_string()]).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("request "), "{stdout}");
    assert!(
        lines[1].starts_with("   └─ DormantMemberChanged") && lines[1].ends_with("by manager:ops"),
        "the operator who marked the target dormant: {stdout}"
    );
    assert!(
        lines[2].starts_with("      └─ MessageFailed") && lines[2].ends_with("by system:notices"),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("         └─ DormantMemberDestroyed")
            && lines[3].ends_with("by system:destruction"),
        "{stdout}"
    );
    let (_, stdout, _) = replay(&database, &["trace", &correlation.to_string(), "--json"]).await;
    let tree = json(&stdout);
    assert_eq!(
        tree[0]["events"][0]["caused"][0]["caused"][0]["eventType"],
        "DormantMemberDestroyed"
    );
    assert_eq!(tree[0]["events"][0]["actor"], "manager:ops");

    let stream = format!("dormantMember-{id}");
    let (_, plain, _) = replay(&database, &["inspect", "--stream", &stream]).await;
    assert_eq!(plain.lines().count(), 3);
    inspect_names_who_did_what(&database, &stream, &plain).await;
    assert!(!plain.contains("01000001111"), "sealed unless asked");
    let (_, revealed, _) = replay(
        &database,
        &[
            "inspect",
            "--stream",
            &stream,
            "--reveal",
            "--type",
            "DormantMemberRegistered",
        ],
    )
    .await;
    assert_eq!(revealed.lines().count(), 1);
    assert!(
        revealed.contains("(erased)"),
        "the key is gone after destruction: {revealed}"
    );
    members_erased_but_the_living(&database).await;
    let (_, by_correlation, _) = replay(
        &database,
        &[
            "inspect",
            "--correlation",
            &correlation.to_string(),
            "--limit",
            "2",
        ],
    )
    .await;
    assert_eq!(by_correlation.lines().count(), 2);

    let (code, stdout, _) = replay(&database, &["status", "--json"]).await;
    assert_eq!(code, 0);
    let names: Vec<String> = json(&stdout)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c["name"].as_str().unwrap(),
                c["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "destruction:running",
            "dormancy:running",
            "erasure:running",
            "managerpage:running",
            "members:running",
            "messages:running",
            "notices:running",
            "phones:running",
            "releases:running",
            "timeline:running"
        ]
    );
    let (_, text, _) = replay(&database, &["status"]).await;
    assert!(text.starts_with("consumer"), "{text}");
    projector.stop().await;
}

#[tokio::test]
#[cfg_attr(
    eventstoredb_url_set,
    ignore = "PostgreSQL only: pads the log with SQL on the events table"
)]
async fn a_database_cut_off_mid_rebuild_is_an_error_that_leaves_the_live_model_alone() {
    let (database, _commands, projector, _) = system_with_targets(60).await;
    projector.stop().await;
    pad_log(&database, 5000).await;
    let read = read_client(&database).await;
    let side = ReadSide::of(&database);
    let before = rows(&read, "SELECT * FROM managerpage.targets ORDER BY id").await;
    let child = std::process::Command::new(mileage_e2e::binary("replay"))
        .env_clear()
        .envs(mileage_e2e::store_env(&database))
        .env("DATABASE_URL", &database)
        .args(["rebuild", "managerpage", "--batch", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the shadow copy is part-way", WAIT, || async {
        let shadow = side.consumer("managerpage__rebuild").await?;
        (shadow.events_handled > 3).then_some(())
    })
    .await;
    let killed = read
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'mileage-projector:managerpage__rebuild'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "the rebuild's session");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cut off") && stderr.contains("resume"),
        "{stderr}"
    );
    assert_eq!(
        rows(&read, "SELECT * FROM managerpage.targets ORDER BY id").await,
        before,
        "the live read model is untouched"
    );
    let (code, stdout, stderr) = replay(&database, &["rebuild", "managerpage", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout)["resumed"], true);
    assert_eq!(
        rows(&read, "SELECT * FROM managerpage.targets ORDER BY id").await,
        before
    );
}

#[tokio::test]
async fn a_log_with_version_1_events_projects_verifies_and_inspects_through_the_upcaster() {
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let id = commands.join("01030008888", "veteran").await;
    let store = mileage_e2e::event_store(&database).await;
    let v1: Vec<mileage_store::NewEvent> = (1..=3u64)
        .map(|n| mileage_store::NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "PointsEarned".into(),
            schema_version: 1,
            data: serde_json::to_vec(&serde_json::json!({
                "memberId": id, "amount": 10, "balance": 10 * n, "at": "2025-01-01T00:00:00Z"
            }))
            .unwrap()
            .into(),
            causation: mileage_domain::envelope::Causation::root(uuid::Uuid::new_v4()),
            recorded_at: None,
            request: None,
        })
        .collect();
    store
        .append(
            &format!("member-{id}"),
            mileage_store::ExpectedVersion::Exact(0),
            &v1,
        )
        .await
        .unwrap();

    let projector = start_projector(&database, None).await;
    let side = ReadSide::of(&database);
    eventually("the v1 points are projected", WAIT, || async {
        (side.member_balance(&id).await? == 30).then_some(())
    })
    .await;
    projector.stop().await;
    let (code, stdout, stderr) = replay(&database, &["verify", "members"]).await;
    assert_eq!(code, 0, "a rebuild reads v1 alike: {stdout}{stderr}");

    let stream = format!("member-{id}");
    let args = ["inspect", "--stream", &stream, "--type", "PointsEarned"];
    let (_, stored, _) = replay(&database, &args).await;
    let stored: Vec<Value> = stored.lines().map(json).collect();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0]["version"], 1, "shown as stored by default");
    assert!(stored[0]["data"].get("expiresAt").is_none());
    let (code, upcast, stderr) = replay(&database, &[&args[..], &["--upcast"]].concat()).await;
    assert_eq!(code, 0, "{stderr}");
    let upcast: Vec<Value> = upcast.lines().map(json).collect();
    assert_eq!(upcast[2]["version"], 2);
    assert_eq!(upcast[2]["data"]["balance"], 30);
    assert_eq!(
        upcast[2]["data"]["expiresAt"], "2026-01-01T00:00:00Z",
        "v1 points lapse a year after they were earned"
    );
}

#[tokio::test]
#[cfg_attr(
    eventstoredb_url_set,
    ignore = "PostgreSQL only: moves a log between two PostgreSQL stores"
)]
async fn a_checkpoint_of_another_store_is_refused_then_rebuilt_or_adopted() {
    let (old_store, _commands, projector, _) = system_with_targets(3).await;
    projector.stop().await;
    let dir = std::env::temp_dir().join(format!("mileage-move-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("log.jsonl");
    let (code, _, stderr) =
        replay(&old_store, &["export", "--out", archive.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{stderr}");
    // The log moves to a new store; the read models stay where they were.
    let new_store = fresh_database().await;
    let (code, _, stderr) = replay(&new_store, &["import", archive.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{stderr}");

    let mut settings = mileage_e2e::projector_settings(&new_store, None);
    settings.read_database_url = old_store.clone();
    let projector = mileage_projector::startup::start(&settings).await.unwrap();
    let read = read_client(&old_store).await;
    eventually(
        "every consumer refuses the old store's checkpoint",
        WAIT,
        || async {
            let statuses = mileage_read_model::bookkeeping::statuses(&read)
                .await
                .ok()?;
            let refused = statuses.iter().filter(|s| {
                s.state == "stopped"
                    && s.error.as_ref().is_some_and(|(_, _, why)| {
                        why.contains("belongs to event store postgresql:")
                    })
            });
            (refused.count() == projector.consumers()).then_some(())
        },
    )
    .await;
    projector.stop().await;
    let (code, stdout, stderr) =
        replay_reading(&new_store, &old_store, &["status", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let status = json(&stdout);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["sameStore"] == false),
        "{status}"
    );

    let (code, stdout, stderr) = replay_reading(
        &new_store,
        &old_store,
        &["rebuild", "managerpage", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) =
        replay_reading(&new_store, &old_store, &["adopt", "notices", "--json"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        json(&stdout)["fromStore"]
            .as_str()
            .unwrap()
            .starts_with("postgresql:")
    );
    let (code, _, stderr) = replay_reading(&new_store, &old_store, &["adopt", "notices"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("nothing to adopt"), "{stderr}");
    let (_, stdout, _) = replay_reading(&new_store, &old_store, &["status", "--json"]).await;
    let status = json(&stdout);
    for consumer in status.as_array().unwrap() {
        let moved = consumer["name"] == "managerpage" || consumer["name"] == "notices";
        assert_eq!(consumer["sameStore"], moved, "{consumer}");
        if moved {
            assert_eq!(
                consumer["lagEvents"], 0,
                "caught up on the new store: {consumer}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
#[cfg_attr(
    eventstoredb_url_set,
    ignore = "PostgreSQL only: holds a transaction open on the server"
)]
async fn a_rebuild_waits_for_events_committed_behind_an_older_transaction() {
    let database = fresh_database().await;
    // A transaction that started first and stays open hides every later
    // commit from readers (the gap-free read) until it ends.
    let mut older = read_client(&database).await;
    let open = older.transaction().await.unwrap();
    open.execute("SELECT txid_current()", &[]).await.unwrap();
    let commands = CommandApi::spawn(&database).await;
    for i in 0..3 {
        commands
            .register_target(&format!("0105{i:07}"), &format!("h{i}"))
            .await;
    }
    let store = mileage_e2e::event_store(&database).await;
    assert_eq!(
        store.head_position().await.unwrap(),
        None,
        "nothing readable"
    );
    let rebuild = tokio::spawn({
        let database = database.clone();
        async move { replay(&database, &["rebuild", "managerpage", "--json"]).await }
    });
    // Not a timing assertion: the rebuild finds the log hidden however
    // long this takes, and must wait for the commit below.
    tokio::time::sleep(Duration::from_secs(2)).await;
    open.commit().await.unwrap();
    let (code, stdout, stderr) = rebuild.await.unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    let count = ReadSide::of(&database).target_count().await;
    assert_eq!(
        count,
        Some(3),
        "the rebuild saw the hidden events: {stdout}"
    );
}

#[tokio::test]
async fn a_malformed_or_unreachable_eventstoredb_url_is_one_named_error() {
    let database = fresh_database().await;
    for (url, expected) in [
        (
            "esdb://admin:s3cret@db:2113?tls=maybe",
            "EVENTSTOREDB_URL: invalid event store configuration: malformed EventStoreDB URL",
        ),
        (
            "esdb://admin:s3cret@127.0.0.1:1?tls=false",
            "cannot reach EventStoreDB at EVENTSTOREDB_URL",
        ),
    ] {
        for command in [&["status"][..], &["export"], &["inspect", "--limit", "1"]] {
            let (code, stdout, stderr) =
                mileage_e2e::replay(&database, &[("EVENTSTOREDB_URL", url)], command).await;
            assert_eq!(code, 2, "{command:?}: {stdout}{stderr}");
            assert!(stderr.contains(expected), "{command:?}: {stderr}");
            assert!(!stderr.contains("s3cret"), "{stderr}");
            assert!(stdout.is_empty(), "nothing half-done: {stdout}");
        }
    }
}

#[tokio::test]
async fn on_eventstoredb_the_system_projects_replays_and_shows_no_lag_past_the_servers_own_events()
{
    let double = mileage_store::esdb_double::Double::start().await;
    let database = fresh_database().await;
    let commands = CommandApi::spawn_on(&database, Some(double.url())).await;
    let mut settings = mileage_e2e::projector_settings(&database, None);
    settings.eventstoredb_url = Some(double.url());
    let projector = mileage_projector::startup::start(&settings).await.unwrap();
    let (target, _) = commands.register_target("01055550001", "esdb").await;
    let read = read_client(&database).await;
    let side = ReadSide::of(&database);
    eventually(
        "the target is projected from EventStoreDB",
        WAIT,
        || async { side.target_status(&target).await.map(drop) },
    )
    .await;
    for _ in 0..5 {
        double.write_system_event();
    }
    eventually(
        "every consumer caught up, on this store, past the server's own events",
        WAIT,
        || async {
            let statuses = mileage_read_model::bookkeeping::statuses(&read)
                .await
                .ok()?;
            let caught_up = statuses.len() == projector.consumers()
                && statuses.iter().all(|s| {
                    s.store_id
                        .as_ref()
                        .is_some_and(|id| id.starts_with("eventstoredb:"))
                        && s.backlog.as_ref().map(|b| b.events) == Some(0)
                });
            caught_up.then_some(())
        },
    )
    .await;
    projector.stop().await;

    let esdb = [("EVENTSTOREDB_URL", double.url())];
    let env: Vec<(&str, &str)> = esdb.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, stdout, stderr) = mileage_e2e::replay(&database, &env, &["status", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    for consumer in json(&stdout).as_array().unwrap() {
        assert_eq!(consumer["sameStore"], true, "{consumer}");
        assert_eq!(consumer["lagEvents"], 0, "{consumer}");
        assert_eq!(consumer["lagSeconds"], 0.0, "{consumer}");
    }
    let (code, stdout, stderr) =
        mileage_e2e::replay(&database, &env, &["verify", "managerpage", "--json"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = mileage_e2e::replay(
        &database,
        &env,
        &["inspect", "--stream", &format!("dormantMember-{target}")],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(!stdout.contains("01055550001"), "sealed: {stdout}");
    let (code, stdout, stderr) = mileage_e2e::replay(&database, &env, &["export"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.lines().all(|l| !l.contains("\"$stats")),
        "no system event exported: {stdout}"
    );
}

#[tokio::test]
async fn one_operator_action_is_one_trace_from_the_request_through_the_log_to_the_notice() {
    let database = fresh_database().await;
    let gateway = Gateway::start(&[]).await;
    let commands = CommandApi::spawn(&database).await;
    let projector = start_projector(&database, Some(&gateway)).await;
    let (id, _) = commands.register_target("01000002222", "traced").await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let correlation = uuid::Uuid::new_v4();
    let answer = reqwest::Client::new()
        .patch(format!("{}/dormantMembers/{id}", commands.address))
        .bearer_auth(&commands.token)
        .header("x-correlation-id", correlation.to_string())
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({ "memberStatus": "DORMANT" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answered = answer.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        answered.starts_with(&format!("00-{trace_id}-")) && !answered.contains("00f067aa0ba902b7"),
        "the caller's trace, continued by a span of ours: {answered}"
    );
    let notice = eventually("the notice reaches the SMS gateway", WAIT, || async {
        gateway
            .received()
            .into_iter()
            .find(|r| r.to == "01000002222")
    })
    .await;
    let sent = notice.traceparent.expect("the notice carries traceparent");
    assert!(sent.starts_with(&format!("00-{trace_id}-")), "{sent}");
    assert!(!sent.contains("01000002222"));
    let side = ReadSide::of(&database);
    eventually("the notice is recorded", WAIT, || async {
        (side.target_status(&id).await? == "DORMANT").then_some(())
    })
    .await;
    projector.stop().await;

    let (code, stdout, stderr) = replay(&database, &["trace", &correlation.to_string()]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .ends_with(&format!("trace {trace_id}")),
        "{stdout}"
    );
    let (_, stdout, _) = replay(&database, &["trace", &correlation.to_string(), "--json"]).await;
    assert_eq!(json(&stdout)[0]["traceId"], trace_id);
    for stream in [
        format!("dormantMember-{id}"),
        format!("managerMessage-{id}"),
    ] {
        let (_, stdout, _) = replay(
            &database,
            &[
                "inspect",
                "--stream",
                &stream,
                "--correlation",
                &correlation.to_string(),
            ],
        )
        .await;
        let events: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!events.is_empty(), "{stream}");
        for event in events {
            let trace = event["metadata"]["trace"].as_str().unwrap_or_default();
            assert!(
                trace.starts_with(&format!("00-{trace_id}-")),
                "{stream}: every event of the action is in its trace: {event}"
            );
        }
    }
}

/// A move from PostgreSQL to EventStoreDB (the wire double) while the
/// process managers still have work the old store's log asked for: two
/// notices not sent yet, one of them to a number the gateway refuses
/// (whose destruction then follows). Each consumer is adopted at the event
/// it last handled, found in the new store by id; on the new store every
/// pending notice goes out once, the refused one's personal data is
/// destroyed, and nothing done on the old store is done again.
#[tokio::test]
#[cfg_attr(
    eventstoredb_url_set,
    ignore = "PostgreSQL only: moves a PostgreSQL log to the EventStoreDB double"
)]
async fn a_move_to_eventstoredb_carries_pending_notices_and_destructions_over_each_done_once() {
    let gateway = Gateway::start(&["01046000003"]).await;
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let projector = start_projector(&database, Some(&gateway)).await;
    let (done, _) = commands.register_target("01046000001", "done").await;
    commands.mark_dormant(&done).await;
    eventually("the first notice is sent", WAIT, || async {
        (gateway.received().len() == 1).then_some(())
    })
    .await;
    caught_up(&projector, &database).await;
    let consumers = projector.consumers();
    projector.stop().await;
    // Work the old store's process managers will never do.
    let (pending, _) = commands.register_target("01046000002", "pending").await;
    let (refused, _) = commands.register_target("01046000003", "refused").await;
    commands.mark_dormant(&pending).await;
    commands.mark_dormant(&refused).await;

    let dir = std::env::temp_dir().join(format!("mileage-move-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("log.jsonl");
    let archive = archive.to_str().unwrap();
    let (code, _, stderr) = replay(&database, &["export", "--out", archive]).await;
    assert_eq!(code, 0, "{stderr}");
    let double = mileage_store::esdb_double::Double::start().await;
    let url = double.url();
    let env = [("EVENTSTOREDB_URL", url.as_str())];
    let (code, _, stderr) = mileage_e2e::replay(&database, &env, &["adopt", "notices"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("notices last handled event") && stderr.contains("replay import"),
        "adopting before the import names what is missing: {stderr}"
    );
    let (code, _, stderr) = mileage_e2e::replay(&database, &env, &["import", archive]).await;
    assert_eq!(code, 0, "{stderr}");

    refused_without_its_event(&database, &env, "managerpage").await;
    let pending_work = adopt_every_consumer(&database, &env, consumers).await;
    assert!(pending_work > 0, "the work not done was carried over");

    let mut settings = mileage_e2e::projector_settings(&database, Some(&gateway));
    settings.eventstoredb_url = Some(double.url());
    let projector = mileage_projector::startup::start(&settings).await.unwrap();
    let side = ReadSide::of(&database);
    eventually(
        "the pending notices are handled on the new store",
        WAIT,
        || async {
            let destroyed = side.target_status(&refused).await? == "DESTRUCTION";
            (gateway.received().len() == 3 && destroyed).then_some(())
        },
    )
    .await;
    let keys = mileage_e2e::person_keys(&database).await;
    let key = |id: &str| format!("dormantMember-{id}");
    assert!(
        mileage_store::keys::KeyStore::get(&keys, &key(&refused))
            .await
            .unwrap()
            .is_none(),
        "the refused target's personal data destroyed"
    );
    let new_store = mileage_store::eventstoredb::EsdbEventStore::connect(&url).unwrap();
    mileage_e2e::caught_up_on(&projector, &database, &new_store).await;
    let to: Vec<String> = gateway.received().into_iter().map(|r| r.to).collect();
    let mut sorted = to.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["01046000001", "01046000002", "01046000003"],
        "each notice once, the one sent before the move not again: {to:?}"
    );
    projector.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// `replay adopt` of `name`, whose checkpoint is made to look like one
/// from before checkpoints named their event: refused, naming the way out
/// (then put back).
async fn refused_without_its_event(database: &str, env: &[(&str, &str)], name: &str) {
    let read = read_client(database).await;
    let untamper = read
        .query_one(
            "UPDATE projector.consumers SET last_event_id = NULL WHERE name = $1
             RETURNING (SELECT last_event_id FROM projector.consumers WHERE name = $1)",
            &[&name],
        )
        .await
        .unwrap()
        .get::<_, uuid::Uuid>(0);
    let (code, _, stderr) = mileage_e2e::replay(database, env, &["adopt", name]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("replay adopt {name} --at-head")),
        "{stderr}"
    );
    read.execute(
        "UPDATE projector.consumers SET last_event_id = $1 WHERE name = $2",
        &[&untamper, &name],
    )
    .await
    .unwrap();
}

/// `replay adopt` of every consumer (there are `expected`): the events
/// each has still to handle on the new store, summed.
async fn adopt_every_consumer(database: &str, env: &[(&str, &str)], expected: usize) -> u64 {
    let read = read_client(database).await;
    let names: Vec<String> = mileage_read_model::bookkeeping::statuses(&read)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| !s.is_scratch())
        .map(|s| s.name)
        .collect();
    assert_eq!(names.len(), expected);
    let mut pending_work = 0;
    for name in &names {
        let args = ["adopt", name.as_str(), "--json"];
        let (code, stdout, stderr) = mileage_e2e::replay(database, env, &args).await;
        assert_eq!(code, 0, "{name}: {stdout}{stderr}");
        let adopted = json(&stdout);
        assert!(
            adopted["fromStore"]
                .as_str()
                .unwrap()
                .starts_with("postgresql:")
        );
        pending_work += adopted["pendingEvents"].as_u64().unwrap();
    }
    pending_work
}
