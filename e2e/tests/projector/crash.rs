//! The projector binary killed (SIGKILL) mid-batch and restarted leaves every
//! read model equal to a fresh rebuild, and sends no notice twice.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use mileage_domain::dormant_member::{
    DormantMemberChanged, DormantMemberEvent, DormantMemberRegistered,
};
use mileage_domain::envelope::Causation;
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::member::{MemberEvent, MemberJoined, PointsEarned};
use mileage_domain::pii::NONCE_LEN;
use mileage_domain::values::Points;
use mileage_e2e::{Gateway, eventually, read_client};
use mileage_store::keys::{KeyStore, PgKeyStore};
use mileage_store::testing::fresh_database;
use mileage_store::{EventStore, ExpectedVersion, NewEvent, Position};

const TARGETS: usize = 300;
const MEMBERS: usize = 300;
const EARNINGS: u64 = 20;

/// Targets (half of them dormant, so their notices go out) and members with
/// a history, written straight to the store.
async fn seed(store: &dyn EventStore, keys: &PgKeyStore) {
    let nonce = [7; NONCE_LEN];
    for n in 0..TARGETS {
        let stream = format!("dormantMember-{n}");
        let key = keys.get_or_create(&stream).await.unwrap();
        let id = DormantMemberId::parse(&n.to_string()).unwrap();
        let member_id = MemberId::parse(&format!("m{n}")).unwrap();
        let phone = key.seal("phoneNo", &format!("0105{n:07}"), nonce);
        let nickname = key.seal("nickname", &format!("target {n}"), nonce);
        let mut events: Vec<DormantMemberEvent> = vec![
            DormantMemberRegistered {
                id: id.clone(),
                member_id: member_id.clone(),
                phone_no: phone.clone(),
                nickname: nickname.clone(),
                at: Utc::now(),
                quiet_since: None,
            }
            .into(),
        ];
        if n % 2 == 0 {
            events.push(
                DormantMemberChanged {
                    id,
                    member_id,
                    phone_no: phone,
                    nickname,
                    at: Utc::now(),
                }
                .into(),
            );
        }
        append(store, &stream, &events).await;
    }
    for n in 0..MEMBERS {
        let stream = format!("member-{n}");
        let key = keys.get_or_create(&stream).await.unwrap();
        let member_id = MemberId::parse(&n.to_string()).unwrap();
        let mut events: Vec<MemberEvent> = vec![
            MemberJoined {
                member_id: member_id.clone(),
                phone_no: key.seal("phoneNo", &format!("0106{n:07}"), nonce),
                nickname: key.seal("nickname", &format!("member {n}"), nonce),
                joined_at: Utc::now(),
                rejoining: None,
            }
            .into(),
        ];
        for k in 1..=EARNINGS {
            events.push(
                PointsEarned {
                    member_id: member_id.clone(),
                    amount: Points(10),
                    balance: Points(10 * k),
                    at: Utc::now(),
                    expires_at: (Utc::now()) + mileage_domain::member::POINTS_VALID_FOR,
                }
                .into(),
            );
        }
        append(store, &stream, &events).await;
    }
}

async fn append<E: mileage_domain::event::EventPayload>(
    store: &dyn EventStore,
    stream: &str,
    events: &[E],
) {
    let new: Vec<NewEvent> = events
        .iter()
        .map(|e| {
            NewEvent::from_domain(
                uuid::Uuid::new_v4(),
                e,
                Causation::root(uuid::Uuid::new_v4()),
            )
        })
        .collect();
    store
        .append(stream, ExpectedVersion::NoStream, &new)
        .await
        .unwrap();
}

fn projector(database: &str, gateway: &Gateway) -> Child {
    Command::new(mileage_e2e::binary("mileage-projector"))
        .env_clear()
        .envs(mileage_e2e::store_env(database))
        .env("DATABASE_URL", database)
        .env("PROJECTOR_ADDR", "127.0.0.1:0")
        .env("PROJECTOR_BATCH", "100")
        .env("NOTIFIER_URL", &gateway.url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn handled(client: &tokio_postgres::Client, name: &str) -> i64 {
    client
        .query_opt(
            "SELECT events_handled FROM projector.consumers WHERE name = $1",
            &[&name],
        )
        .await
        .ok()
        .flatten()
        .map_or(0, |row| row.get(0))
}

async fn checkpoint(client: &tokio_postgres::Client, name: &str) -> Option<Position> {
    mileage_read_model::bookkeeping::position_of(client, name)
        .await
        .ok()
        .flatten()
}

/// Waits until every named consumer's checkpoint is the log's head and the
/// head has stopped moving (the notices append events of their own).
async fn settled(
    client: &tokio_postgres::Client,
    store: &dyn EventStore,
    names: &[&str],
) -> Position {
    eventually(
        "every consumer reaches the head",
        Duration::from_secs(120),
        || async {
            let head = store.head_position().await.ok()??;
            for name in names {
                if checkpoint(client, name).await != Some(head) {
                    return None;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            (store.head_position().await.ok()?? == head).then_some(head)
        },
    )
    .await
}

async fn table(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(&format!("SELECT row_to_json(t)::text FROM ({sql}) t"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Builds each projection afresh into `rebuild_{name}`, up to `head`.
/// `replay verify` of each read model: a copy rebuilt from the log beside
/// the live one, compared row by row; the number of live rows compared.
async fn verified(database: &str) -> Vec<(String, i64)> {
    let mut compared = Vec::new();
    for projection in mileage_read_model::NAMES {
        let (code, stdout, stderr) =
            mileage_e2e::replay(database, &[], &["verify", projection, "--json"]).await;
        assert_eq!(code, 0, "{projection}: {stdout}{stderr}");
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        for table in report["tables"].as_array().unwrap() {
            assert_eq!(table["differences"], 0, "{projection}: {table}");
            assert_eq!(table["changedSince"], 0, "{projection}: {table}");
            assert_eq!(table["liveRows"], table["rebuiltRows"], "{table}");
            compared.push((
                table["table"].as_str().unwrap().to_owned(),
                table["liveRows"].as_i64().unwrap(),
            ));
        }
    }
    compared
}

#[tokio::test]
async fn a_killed_projector_resumes_to_what_a_rebuild_builds_and_notifies_once() {
    let database = fresh_database().await;
    let store = mileage_e2e::event_store(&database).await;
    let keys = mileage_e2e::person_keys(&database).await;
    seed(&*store, &keys).await;
    let gateway = Gateway::start(&[]).await;
    let read = read_client(&database).await;

    let mut first = projector(&database, &gateway);
    eventually(
        "the first run is part-way",
        Duration::from_secs(60),
        || async {
            let members = handled(&read, "members").await;
            let notices = gateway.received().len();
            (members > 0 && notices > 0).then_some(())
        },
    )
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let after_kill = handled(&read, "members").await;
    assert!(
        after_kill < i64::try_from(MEMBERS as u64 * (EARNINGS + 1) + 450).unwrap(),
        "killed before the end ({after_kill} handled)"
    );

    let mut second = projector(&database, &gateway);
    let names = [
        "managerpage",
        "members",
        "messages",
        "phones",
        "timeline",
        "notices",
        "destruction",
    ];
    settled(&read, &*store, &names).await;
    second.kill().unwrap();
    second.wait().unwrap();

    let compared = verified(&database).await;
    assert_eq!(
        compared.len(),
        mileage_read_model::NAMES.len(),
        "{compared:?}"
    );
    // The log is written straight to the store: no phone claims.
    assert!(
        compared
            .iter()
            .all(|(table, rows)| *rows > 0 || table == "phones"),
        "{compared:?}"
    );
    let sent = table(
        &read,
        "SELECT count(*) FROM messages.messages WHERE status = 'SENT'",
    )
    .await;
    assert_eq!(sent, [format!("{{\"count\":{}}}", TARGETS / 2)]);

    let mut messages_per_phone: std::collections::BTreeMap<
        String,
        std::collections::BTreeSet<String>,
    > = std::collections::BTreeMap::new();
    for received in gateway.received() {
        messages_per_phone
            .entry(received.to)
            .or_default()
            .insert(received.idempotency_key);
    }
    assert_eq!(
        messages_per_phone.len(),
        TARGETS / 2,
        "every dormant target was notified"
    );
    assert!(
        messages_per_phone.values().all(|ids| ids.len() == 1),
        "no target got a second message (a retried delivery carries the same idempotency key)"
    );
}
