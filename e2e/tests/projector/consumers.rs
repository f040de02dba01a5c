//! Checkpoints, advisory locks, poison events and outages.

use std::time::{Duration, Instant};

use mileage_domain::dormant_member::DormantMemberChanged;
use mileage_domain::envelope::Causation;
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::pii::PersonKey;
use mileage_e2e::{CommandApi, ReadSide, eventually, read_client, start_projector};
use mileage_store::postgres::PgEventStore;
use mileage_store::testing::{Service, fresh_database};
use mileage_store::{ExpectedVersion, NewEvent};

const WAIT: Duration = Duration::from_secs(60);

/// Application names of the sessions holding consumer locks.
async fn lock_holders(client: &tokio_postgres::Client) -> Vec<(String, i32)> {
    client
        .query(
            "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn one_replica_is_active_per_consumer_and_a_standby_takes_over() {
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let read = read_client(&database).await;
    let side = ReadSide::of(&database);
    let first = start_projector(&database, None).await;
    let member = commands.join("01011112222", "first").await;
    eventually("the member is projected", WAIT, || async {
        side.member_balance(&member).await
    })
    .await;
    let second = start_projector(&database, None).await;
    // Every consumer of the second replica, and its dormancy scheduler,
    // has asked for its lock (a session of its name, holding none, whose
    // last statement was the ask).
    eventually("the second replica's consumers to stand by", WAIT, || async {
        let standing_by: i64 = read
            .query_one(
                "SELECT count(*) FROM pg_stat_activity a
                  WHERE a.datname = current_database()
                    AND a.application_name LIKE 'mileage-projector:%'
                    AND a.query LIKE '%pg_try_advisory_lock%'
                    AND NOT EXISTS (SELECT 1 FROM pg_locks l
                                     WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)",
                &[],
            )
            .await
            .ok()?
            .get(0);
        // Its consumers and its dormancy scheduler.
        (standing_by > i64::try_from(first.consumers()).unwrap()).then_some(())
    })
    .await;
    let holders = lock_holders(&read).await;
    let names: Vec<&str> = holders.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "mileage-projector:destruction",
            "mileage-projector:dormancy",
            "mileage-projector:dormancy-scheduler",
            "mileage-projector:erasure",
            "mileage-projector:managerpage",
            "mileage-projector:members",
            "mileage-projector:messages",
            "mileage-projector:notices",
            "mileage-projector:phones",
            "mileage-projector:releases",
            "mileage-projector:timeline",
        ],
        "one lock per consumer and the dormancy scheduler's, none twice"
    );

    first.stop().await;
    let stopped = Instant::now();
    let other = commands.join("01011113333", "second").await;
    eventually("the standby projects new events", WAIT, || async {
        side.member_balance(&other).await
    })
    .await;
    let failover = stopped.elapsed();
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    let before: Vec<i32> = holders.iter().map(|(_, pid)| *pid).collect();
    eventually("the standby holds every lock", WAIT, || async {
        let after: Vec<i32> = lock_holders(&read)
            .await
            .iter()
            .map(|(_, pid)| *pid)
            .collect();
        (after.len() == holders.len() && after.iter().all(|pid| !before.contains(pid)))
            .then_some(())
    })
    .await;
    second.stop().await;
}

#[tokio::test]
async fn it_reconnects_after_its_database_sessions_are_killed() {
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let read = read_client(&database).await;
    let side = ReadSide::of(&database);
    let projector = start_projector(&database, None).await;
    let member = commands.join("01022223333", "before").await;
    eventually("the member is projected", WAIT, || async {
        side.member_balance(&member).await
    })
    .await;
    let killed = read
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name LIKE 'mileage-projector:%' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        killed.len(),
        projector.consumers() + 1,
        "one session per consumer, and the dormancy scheduler's"
    );
    let later = commands.join("01022224444", "after").await;
    eventually("projection resumes after reconnecting", WAIT, || async {
        side.member_balance(&later).await
    })
    .await;
    projector.stop().await;
}

#[tokio::test]
async fn an_event_it_cannot_apply_stops_that_projection_and_says_where() {
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let side = ReadSide::of(&database);
    let store = mileage_e2e::event_store(&database).await;
    let key = PersonKey::new("dormantMember-orphan", [1; 32]);
    let orphan = DormantMemberChanged {
        id: DormantMemberId::parse("orphan").unwrap(),
        member_id: MemberId::parse("1").unwrap(),
        phone_no: key.seal("phoneNo", "01000000000", [0; 24]),
        nickname: key.seal("nickname", "x", [0; 24]),
        at: chrono::Utc::now(),
    };
    let written = store
        .append(
            "dormantMember-orphan",
            ExpectedVersion::Any,
            &[NewEvent::from_domain(
                uuid::Uuid::new_v4(),
                &mileage_domain::dormant_member::DormantMemberEvent::from(orphan),
                Causation::root(uuid::Uuid::new_v4()),
            )],
        )
        .await
        .unwrap();

    // Its own process: metrics are process-wide, and other tests' projectors
    // in this process report on consumers of the same names.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _projector = Service(
        std::process::Command::new(mileage_e2e::binary("mileage-projector"))
            .env_clear()
            .envs(mileage_e2e::store_env(&database))
            .env("DATABASE_URL", &database)
            .env("PROJECTOR_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "off")
            .spawn()
            .unwrap(),
    );
    let status = eventually("managerpage stops", WAIT, || async {
        let managerpage = side.consumer("managerpage").await?;
        (managerpage.state == "stopped")
            .then_some(managerpage.error)
            .flatten()
    })
    .await;
    assert_eq!(status.0, written.position.to_string());
    assert_eq!(status.1, "DormantMemberChanged");
    assert!(status.2.contains("never registered"), "{}", status.2);

    let member = commands.join("01033334444", "unaffected").await;
    eventually("other projections go on", WAIT, || async {
        side.member_balance(&member).await
    })
    .await;

    let http = reqwest::Client::new();
    let metrics = mileage_e2e::metrics(&http, &format!("http://127.0.0.1:{port}")).await;
    assert!(
        metrics.contains(r#"projector_stopped{consumer="managerpage"} 1"#),
        "{metrics}"
    );
    let statuses: serde_json::Value = http
        .get(format!("http://127.0.0.1:{port}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let managerpage = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "managerpage")
        .unwrap();
    assert_eq!(managerpage["state"], "stopped");
    assert_eq!(managerpage["error"]["eventType"], "DormantMemberChanged");
}

#[tokio::test]
async fn a_stop_seen_from_a_checkpoint_someone_else_moved_is_not_recorded() {
    use mileage_read_model::bookkeeping;
    use mileage_store::Position;
    let database = fresh_database().await;
    let client = read_client(&database).await;
    bookkeeping::migrate(&client).await.unwrap();
    let at = |n| Position {
        commit: n,
        prepare: n,
    };
    assert_eq!(
        bookkeeping::checkpoint(&client, "model").await.unwrap(),
        None
    );
    let last = mileage_store::RecordedEvent {
        event_id: uuid::Uuid::new_v4(),
        stream: "member-1".into(),
        stream_version: 0,
        position: at(10),
        event_type: "T".into(),
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
    assert!(
        bookkeeping::advance(&client, "model", None, &last, 10)
            .await
            .unwrap()
    );
    assert_eq!(
        bookkeeping::last_handled(&client, "model").await.unwrap(),
        Some(("member-1".to_owned(), last.event_id)),
        "the checkpoint names its event"
    );
    let stale = bookkeeping::mark_stopped(&client, "model", Some(at(5)), at(6), "T", "why")
        .await
        .unwrap();
    assert!(!stale, "a swap or another replica moved it to 10");
    let statuses = bookkeeping::statuses(&client).await.unwrap();
    assert_eq!(statuses[0].state, "running");
    let current = bookkeeping::mark_stopped(&client, "model", Some(at(10)), at(11), "T", "why")
        .await
        .unwrap();
    assert!(current);
    let statuses = bookkeeping::statuses(&client).await.unwrap();
    assert_eq!(statuses[0].state, "stopped");
    assert_eq!(
        statuses[0].error,
        Some(("11-11".to_owned(), "T".to_owned(), "why".to_owned()))
    );
}

#[tokio::test]
#[cfg_attr(
    eventstoredb_url_set,
    ignore = "PostgreSQL only: pads the log with SQL on the events table"
)]
async fn sigterm_mid_catch_up_commits_the_batch_in_hand_and_a_restart_goes_on_from_there() {
    let database = fresh_database().await;
    PgEventStore::connect(&database).await.unwrap();
    let read = read_client(&database).await;
    let side = ReadSide::of(&database);
    read.execute(
        "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, correlation_id, causation_id)
         SELECT 'padding-' || g, 0, gen_random_uuid(), 'Padding', 1, '{}'::json, gen_random_uuid(), gen_random_uuid()
           FROM generate_series(1, 200000) g",
        &[],
    )
    .await
    .unwrap();
    let spawn = || {
        Service(
            std::process::Command::new(mileage_e2e::binary("mileage-projector"))
                .env_clear()
                .envs(mileage_e2e::store_env(&database))
                .env("DATABASE_URL", &database)
                .env("PROJECTOR_ADDR", "127.0.0.1:0")
                .env("PROJECTOR_BATCH", "500")
                .env("RUST_LOG", "off")
                .spawn()
                .unwrap(),
        )
    };
    let handled = |name: &'static str| {
        let side = &side;
        async move {
            let consumer = side.consumer(name).await?;
            Some((consumer.events_handled, consumer.checkpoint))
        }
    };
    let mut projector = spawn();
    eventually("the catch-up is under way", WAIT, || async {
        handled("managerpage").await.filter(|h| h.0 > 0).map(drop)
    })
    .await;
    let exit = projector.terminate(WAIT).await;
    assert!(exit.success(), "SIGTERM is a clean stop: {exit}");
    let (count, checkpoint) = handled("managerpage").await.unwrap();
    let checkpoint = checkpoint.expect("a checkpoint after the first batch");
    let (commit, prepare) = (
        i64::try_from(checkpoint.commit).unwrap(),
        i64::try_from(checkpoint.prepare).unwrap(),
    );
    assert!(
        count < 200_000,
        "it stopped part-way ({count}), not after the whole log"
    );
    let up_to: i64 = read
        .query_one(
            "SELECT count(*) FROM events WHERE (tx_id, global_position) <= ($1, $2)",
            &[&commit, &prepare],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        count, up_to,
        "the checkpoint and the work it counts were committed together"
    );

    projector = spawn();
    // 200,000 events: seconds alone, minutes on a loaded 2-core machine.
    eventually(
        "a restart goes on to the end, handling each event once",
        Duration::from_secs(300),
        || async {
            handled("managerpage")
                .await
                .filter(|h| h.0 == 200_000)
                .map(drop)
        },
    )
    .await;
    drop(projector);
}

#[tokio::test]
async fn services_starting_together_create_the_read_side_tables_without_tripping() {
    for _ in 0..5 {
        let database_url = fresh_database().await;
        let mut starting = Vec::new();
        for _ in 0..6 {
            let database_url = database_url.clone();
            starting.push(tokio::spawn(async move {
                let client = read_client(&database_url).await;
                mileage_read_model::create_read_side(&client).await?;
                Ok::<_, tokio_postgres::Error>(())
            }));
        }
        for started in starting {
            started
                .await
                .unwrap()
                .expect("every service's start-up migration succeeds");
        }
    }
}

#[tokio::test]
async fn the_projector_records_the_logs_head_for_readers_of_the_read_side() {
    let database = fresh_database().await;
    let store = mileage_e2e::event_store(&database).await;
    let commands = CommandApi::spawn(&database).await;
    let read = read_client(&database).await;
    let _projector = start_projector(&database, None).await;
    commands.join("01011113333", "head").await;
    eventually("the recorded head is the log's head", WAIT, || async {
        let head = store.head_position().await.ok().flatten()?;
        let (recorded, _) = mileage_read_model::bookkeeping::head(&read).await.ok()??;
        (recorded == head).then_some(())
    })
    .await;
}

/// A client that sends the largest amounts it can breaks nothing for the
/// others: the command API refuses past its limits with stable codes, and
/// the members projection keeps up with every member.
#[tokio::test]
async fn the_largest_amounts_a_client_can_send_stop_no_projection() {
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let side = ReadSide::of(&database);
    let _projector = start_projector(&database, None).await;
    let greedy = commands.join("01012120000", "greedy").await;
    let earn = |amount: i64| {
        let path = format!("/members/{greedy}/points/earn");
        let commands = &commands;
        async move {
            commands
                .send(
                    reqwest::Method::POST,
                    &path,
                    Some(serde_json::json!({ "amount": amount })),
                )
                .await
        }
    };
    for _ in 0..2 {
        let (status, body) = earn(i64::MAX).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("member.amount_too_large")),
            "{body}"
        );
    }
    let (status, _) = earn(1_000_000).await;
    assert_eq!(status, 200);
    let (status, body) = earn(1_000_000).await;
    assert_eq!(status, 200, "{body}");
    let other = commands.join("01012120001", "other").await;
    assert_eq!(
        commands
            .send(
                reqwest::Method::POST,
                &format!("/members/{other}/points/earn"),
                Some(serde_json::json!({ "amount": 5 }))
            )
            .await
            .0,
        200
    );
    eventually("both balances are projected", WAIT, || async {
        (side.member_balance(&greedy).await == Some(2_000_000)
            && side.member_balance(&other).await == Some(5))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_read_model_of_the_older_layout_with_clear_values_is_dropped_and_built_again_sealed() {
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let (target, _) = commands.register_target("01077778888", "oldlayout").await;
    let read = read_client(&database).await;
    mileage_read_model::bookkeeping::migrate(&read)
        .await
        .unwrap();
    // As the last version left it: masked numbers and nicknames in clear,
    // and a checkpoint past the registration.
    read.batch_execute(&format!(
        "CREATE SCHEMA managerpage;
         CREATE TABLE managerpage.targets (
             id text PRIMARY KEY, member_id text NOT NULL, phone_masked text, nickname text,
             erased boolean NOT NULL, status text NOT NULL, message_status text,
             registered_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
             registered_commit bigint NOT NULL, registered_prepare bigint NOT NULL,
             last_position text NOT NULL);
         INSERT INTO managerpage.targets VALUES ('{target}', '2', '010****8888', 'oldlayout',
             false, 'PRE_DORMANT', NULL, now(), now(), 1, 1, '1-1');
         INSERT INTO projector.consumers (name, commit_position, prepare_position, state)
             VALUES ('managerpage', 9223372036854775806, 9223372036854775806, 'running');"
    ))
    .await
    .unwrap();
    let _projector = start_projector(&database, None).await;
    eventually("the target projected again, sealed", WAIT, || async {
        read.query_opt(
            "SELECT 1 FROM managerpage.targets WHERE id = $1 AND phone_sealed IS NOT NULL",
            &[&target],
        )
        .await
        .ok()
        .flatten()
    })
    .await;
    let old_columns = read
        .query(
            "SELECT column_name FROM information_schema.columns
              WHERE table_schema = 'managerpage' AND column_name IN ('phone_masked', 'nickname')",
            &[],
        )
        .await
        .unwrap();
    assert!(old_columns.is_empty(), "the clear columns are gone");
    let found =
        mileage_e2e::rows_mentioning(&database, &["managerpage.targets"], &["oldlayout", "8888"])
            .await;
    assert!(found.is_empty(), "{found:#?}");
}
