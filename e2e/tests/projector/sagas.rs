//! Dormant notices and the destruction saga, through a real HTTP gateway
//! stand-in.

use std::time::Duration;

use mileage_e2e::{CommandApi, Gateway, eventually, read_client, start_projector};
use mileage_store::EventStore;
use mileage_store::keys::KeyStore;
use mileage_store::testing::fresh_database;

const WAIT: Duration = Duration::from_secs(60);

/// Whether the person key that opens the sealed value in `column` is gone
/// (the read side shows the person as erased), as SQL.
fn key_gone(column: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM person_keys k WHERE k.key_id = ({column}::json ->> 'keyId') AND k.secret IS NOT NULL)"
    )
}

/// The managerpage row of `id`: (status, message status, erased).
async fn target(
    client: &tokio_postgres::Client,
    id: &str,
) -> Option<(String, Option<String>, bool)> {
    client
        .query_opt(
            &format!(
                "SELECT status, message_status, {} FROM managerpage.targets WHERE id = $1",
                key_gone("phone_sealed")
            ),
            &[&id],
        )
        .await
        .ok()
        .flatten()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
}

#[tokio::test]
async fn a_dormant_target_is_notified_once_and_a_rejected_number_is_destroyed() {
    let database = fresh_database().await;
    let gateway = Gateway::start(&["01000000002"]).await;
    let commands = CommandApi::spawn(&database).await;
    let projector = start_projector(&database, Some(&gateway)).await;
    let read = read_client(&database).await;

    let (kept, _) = commands.register_target("010-0000-0001", "kept").await;
    let (rejected, _) = commands.register_target("010-0000-0002", "rejected").await;
    eventually("both targets listed", WAIT, || async {
        let a = target(&read, &kept).await?;
        let b = target(&read, &rejected).await?;
        (a.0 == "PRE_DORMANT" && b.0 == "PRE_DORMANT").then_some(())
    })
    .await;
    commands.mark_dormant(&kept).await;
    commands.mark_dormant(&rejected).await;

    eventually("the notice is sent", WAIT, || async {
        let row = target(&read, &kept).await?;
        (row == ("DORMANT".into(), Some("SENT".into()), false)).then_some(())
    })
    .await;
    eventually("the rejected target is destroyed", WAIT, || async {
        let row = target(&read, &rejected).await?;
        (row == ("DESTRUCTION".into(), Some("FAILED".into()), true)).then_some(())
    })
    .await;

    let received = gateway.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let to: Vec<&str> = received.iter().map(|r| r.to.as_str()).collect();
    assert!(
        to.contains(&"01000000001") && to.contains(&"01000000002"),
        "{to:?}"
    );
    assert!(received.iter().all(|r| !r.idempotency_key.is_empty()));

    let store = mileage_e2e::event_store(&database).await;
    let keys = mileage_e2e::person_keys(&database).await;
    assert!(
        keys.get(&format!("dormantMember-{rejected}"))
            .await
            .unwrap()
            .is_none(),
        "the destroyed target's key is deleted"
    );
    assert!(
        keys.get(&format!("dormantMember-{kept}"))
            .await
            .unwrap()
            .is_some()
    );

    let message = read
        .query_one(
            &format!(
                "SELECT status, attempts, last_error, {} FROM messages.messages WHERE target_id = $1",
                key_gone("phone_sealed")
            ),
            &[&rejected],
        )
        .await
        .unwrap();
    assert_eq!(message.get::<_, String>(0), "FAILED");
    assert_eq!(message.get::<_, i32>(1), 1);
    let last_error = message.get::<_, Option<String>>(2).unwrap();
    assert!(last_error.contains("422"), "{last_error}");
    assert!(
        !last_error.contains("01000000002"),
        "the gateway's body, which repeats the number, is never kept: {last_error}"
    );
    assert_never_in_clear(&*store, "01000000002").await;
    assert!(message.get::<_, bool>(3), "erased with the target");

    // Re-delivery: move the notice manager's checkpoint back to the start.
    projector.stop().await;
    read.execute(
        "UPDATE projector.consumers SET commit_position = NULL, prepare_position = NULL WHERE name IN ('notices', 'destruction')",
        &[],
    )
    .await
    .unwrap();
    let head = store
        .head_position()
        .await
        .unwrap()
        .expect("the log has events");
    let again = start_projector(&database, Some(&gateway)).await;
    let side = mileage_e2e::ReadSide::of(&database);
    // At the head or past it: an event appended after the head was read
    // (a process manager's follow-up) takes the checkpoint beyond it.
    eventually("the replay reaches the head", WAIT, || async {
        let notices = side.consumer("notices").await?;
        (notices.checkpoint >= Some(head)).then_some(())
    })
    .await;
    again.stop().await;
    assert_eq!(gateway.received().len(), 2, "no notice is sent twice");
    let messages = store
        .read_stream(&format!("managerMessage-{kept}"), 0, 10)
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "and none is recorded twice");
    let destroyed = store
        .read_stream(&format!("dormantMember-{rejected}"), 0, 10)
        .await
        .unwrap();
    assert_eq!(destroyed.len(), 3, "registered, changed, destroyed once");
}

/// No event of the log carries `digits` in clear.
async fn assert_never_in_clear(store: &dyn EventStore, digits: &str) {
    for event in store.read_all(None, 1000).await.unwrap() {
        let data = String::from_utf8_lossy(&event.data);
        assert!(
            !data.contains(digits),
            "in clear in {}: {data}",
            event.event_type
        );
    }
}

/// A gateway that refuses our requests themselves (expired credentials, a
/// wrong endpoint) says nothing about the recipient: nobody is destroyed,
/// the notices consumer stops and says why, and once the gateway is fixed
/// a restart sends the notice.
#[tokio::test]
async fn a_gateway_refusing_our_requests_destroys_nobody_and_stops_the_notices_visibly() {
    for status in [401, 404] {
        let database = fresh_database().await;
        let gateway = Gateway::start(&[]).await;
        gateway.refuse_everything_with(status);
        let commands = CommandApi::spawn(&database).await;
        let projector = start_projector(&database, Some(&gateway)).await;
        let read = read_client(&database).await;
        let (id, _) = commands.register_target("010-0000-0004", "kept").await;
        commands.mark_dormant(&id).await;
        let side = mileage_e2e::ReadSide::of(&database);
        let (_, _, reason) = eventually("the notices consumer stops", WAIT, || async {
            let notices = side.consumer("notices").await?;
            (notices.state == "stopped")
                .then_some(notices.error)
                .flatten()
        })
        .await;
        assert!(
            reason.contains(&status.to_string()) && reason.contains("NOTIFIER_URL"),
            "{reason}"
        );
        assert!(
            !reason.contains("01000000004") && !reason.contains("refused: "),
            "{reason}"
        );
        projector.stop().await;
        let store = mileage_e2e::event_store(&database).await;
        assert!(
            store
                .read_stream(&format!("managerMessage-{id}"), 0, 10)
                .await
                .unwrap()
                .is_empty(),
            "no notice recorded as failed"
        );
        assert_eq!(
            store
                .read_stream(&format!("dormantMember-{id}"), 0, 10)
                .await
                .unwrap()
                .len(),
            2,
            "registered and marked dormant: not destroyed"
        );
        let keys = mileage_e2e::person_keys(&database).await;
        assert!(
            keys.get(&format!("dormantMember-{id}"))
                .await
                .unwrap()
                .is_some()
        );

        // Fixed: the restarted projector sends it.
        let fixed = Gateway::start(&[]).await;
        let again = start_projector(&database, Some(&fixed)).await;
        eventually(
            "the notice is sent once the gateway is fixed",
            WAIT,
            || async {
                let row = target(&read, &id).await?;
                (row == ("DORMANT".into(), Some("SENT".into()), false)).then_some(())
            },
        )
        .await;
        again.stop().await;
    }
}

#[tokio::test]
async fn a_gateway_outage_postpones_the_notice_instead_of_destroying_data() {
    let database = fresh_database().await;
    let gateway = Gateway::start(&[]).await;
    gateway.fail_next(5);
    let commands = CommandApi::spawn(&database).await;
    let projector = start_projector(&database, Some(&gateway)).await;
    let read = read_client(&database).await;

    let (id, _) = commands.register_target("010-0000-0003", "patient").await;
    commands.mark_dormant(&id).await;
    eventually("the notice is sent after the outage", WAIT, || async {
        let row = target(&read, &id).await?;
        (row == ("DORMANT".into(), Some("SENT".into()), false)).then_some(())
    })
    .await;
    projector.stop().await;
    assert_eq!(gateway.received().len(), 1);
}

#[tokio::test]
async fn a_withdrawal_erases_the_member_and_every_copy_held_for_them_even_if_the_command_api_kept_the_keys()
 {
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let store = mileage_e2e::event_store(&database).await;
    let keys = mileage_e2e::person_keys(&database).await;
    let read = read_client(&database).await;

    // A member with a dormant target registered for them (the target holds
    // its own sealed copy of the phone number and nickname).
    let member = commands.join("010-0000-0031", "leaving").await;
    let (status, body) = commands
        .send(
            reqwest::Method::POST,
            "/dormantMembers",
            Some(serde_json::json!({ "memberId": member, "phoneNo": "010-0000-0031", "nickname": "leaving" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let target_id = body["id"].as_str().unwrap().to_owned();
    let (status, body) = commands
        .send(reqwest::Method::DELETE, &format!("/members/{member}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    // As if the command API had died between its append and deleting the
    // key: the key is put back (same bytes do not matter; its presence does).
    keys.get_or_create(&format!("member-{member}"))
        .await
        .unwrap();
    assert!(
        keys.get(&format!("dormantMember-{target_id}"))
            .await
            .unwrap()
            .is_some()
    );

    let _projector = start_projector(&database, None).await;
    eventually(
        "both keys are deleted from the log's say-so",
        WAIT,
        || async {
            let member_key = keys.get(&format!("member-{member}")).await.ok()?;
            let target_key = keys.get(&format!("dormantMember-{target_id}")).await.ok()?;
            (member_key.is_none() && target_key.is_none()).then_some(())
        },
    )
    .await;
    eventually("the target's row is erased", WAIT, || async {
        read.query_opt(
            &format!(
                "SELECT {} AND {} FROM managerpage.targets WHERE id = $1",
                key_gone("phone_sealed"),
                key_gone("nickname_sealed")
            ),
            &[&target_id],
        )
        .await
        .ok()
        .flatten()
        .filter(|row| row.get::<_, bool>(0))
    })
    .await;
    let events = store.read_all(None, 100).await.unwrap();
    let withdrawn = events
        .iter()
        .find(|e| e.event_type == "MemberWithdrawn")
        .expect("the withdrawal is in the log");
    let released = events
        .iter()
        .find(|e| e.event_type == "PhoneReleased")
        .expect("the number was given back");
    assert_eq!(
        withdrawn.position.commit, released.position.commit,
        "withdrawal and release are one append"
    );
}

/// On a store that appends a withdrawal's two parts in order, the second
/// (the number given back) can be lost with its process, and once the
/// member's keys are erased nobody can tell which number was theirs: the
/// erasure process manager gives it back before it deletes the keys, under
/// ids derived from the withdrawal, so the number is free for the next
/// person and the log says so.
#[tokio::test]
async fn a_withdrawal_whose_number_was_not_given_back_has_it_given_back_by_the_erasure() {
    let double = mileage_store::esdb_double::Double::start().await;
    // Before 25.1 the withdrawal's two parts go in one by one.
    let before = mileage_store::esdb_double::VERSION_BEFORE_SESSIONS;
    double.behave(|b| b.version = Some(before.into()));
    let database = fresh_database().await;
    let commands = CommandApi::spawn_on(&database, Some(double.url())).await;
    let member = commands.join("01055550001", "lost").await;
    double.behave(|b| b.refuse_streams_starting = Some("memberPhone-".into()));
    let (status, body) = commands
        .send(reqwest::Method::DELETE, &format!("/members/{member}"), None)
        .await;
    assert_eq!(status, 503, "the release was refused: {body}");
    double.behave(|b| b.refuse_streams_starting = None);
    let claim_events = || {
        double
            .log()
            .into_iter()
            .filter(|e| e.stream.starts_with("memberPhone-"))
            .map(|e| e.event_type)
            .collect::<Vec<_>>()
    };
    assert_eq!(claim_events(), ["PhoneClaimed"], "withdrawn, still held");

    let mut settings = mileage_e2e::projector_settings(&database, None);
    settings.eventstoredb_url = Some(double.url());
    let projector = mileage_projector::startup::start(&settings).await.unwrap();
    eventually("the number given back", WAIT, || async {
        (claim_events() == ["PhoneClaimed", "PhoneReleased"]).then_some(())
    })
    .await;
    let withdrawn = double
        .log()
        .into_iter()
        .find(|e| e.event_type == "MemberWithdrawn")
        .unwrap();
    let released = double
        .log()
        .into_iter()
        .find(|e| e.event_type == "PhoneReleased")
        .unwrap();
    let metadata: serde_json::Value = serde_json::from_slice(&released.custom_metadata).unwrap();
    assert_eq!(
        metadata["$causationId"],
        withdrawn.id.to_string(),
        "caused by the withdrawal: {metadata}"
    );
    let next = commands.join("01055550001", "next").await;
    assert_ne!(next, member);
    assert_eq!(
        claim_events(),
        ["PhoneClaimed", "PhoneReleased", "PhoneClaimed"],
        "claimed again without freeing a stale claim"
    );
    projector.stop().await;
}
