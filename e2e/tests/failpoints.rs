//! The process managers stopped at their step boundaries (failpoints, in
//! test builds only): each batch is handled again after the failure, the
//! way it is after a crash, and the step happens once. Failpoints are
//! process-wide, so this binary holds only these tests, and `FailScenario`
//! runs them one at a time.

use std::time::Duration;

use fail::FailScenario;
use mileage_e2e::{CommandApi, Gateway, eventually, start_projector};
use mileage_store::keys::KeyStore;
use mileage_store::testing::fresh_database;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_destruction_stopped_before_its_key_deletion_deletes_the_key_when_handled_again() {
    let scenario = FailScenario::setup();
    fail::cfg("destruction::before_key_delete", "1*return").unwrap();
    let database = fresh_database().await;
    let gateway = Gateway::start(&["01000000077"]).await;
    let commands = CommandApi::spawn(&database).await;
    let store = mileage_e2e::event_store(&database).await;
    let keys = mileage_e2e::person_keys(&database).await;
    let _projector = start_projector(&database, Some(&gateway)).await;

    let (target, _) = commands
        .register_target("010-0000-0077", "unreachable")
        .await;
    commands.mark_dormant(&target).await;
    let key = format!("dormantMember-{target}");
    eventually("the target's key is deleted after all", WAIT, || async {
        keys.get(&key).await.ok()?.is_none().then_some(())
    })
    .await;
    let destroyed = store
        .read_stream(&key, 0, 10)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "DormantMemberDestroyed")
        .count();
    assert_eq!(destroyed, 1, "destroyed once, though handled twice");
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notice_sent_but_not_recorded_is_sent_again_under_the_same_key_and_recorded_once() {
    let scenario = FailScenario::setup();
    fail::cfg("notices::after_send", "1*return").unwrap();
    let database = fresh_database().await;
    let gateway = Gateway::start(&[]).await;
    let commands = CommandApi::spawn(&database).await;
    let store = mileage_e2e::event_store(&database).await;
    let _projector = start_projector(&database, Some(&gateway)).await;

    let (target, _) = commands.register_target("010-0000-0078", "reachable").await;
    commands.mark_dormant(&target).await;
    let stream = format!("managerMessage-{target}");
    let recorded = eventually("the notice is recorded", WAIT, || async {
        let events = store.read_stream(&stream, 0, 10).await.ok()?;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(recorded.len(), 1, "recorded once");
    assert_eq!(recorded[0].event_type, "MessageSent");
    let sent = gateway.received();
    assert_eq!(sent.len(), 2, "sent again after the stop: {sent:?}");
    assert_eq!(
        sent[0].idempotency_key, sent[1].idempotency_key,
        "under the same key, so the SMS gateway delivers it once"
    );
    scenario.teardown();
}

/// The dormancy scheduler stopped right after a registration and right
/// after a mark (before it saved its place), three times each: it starts
/// over from its last saved place, finds what it did in the log, and no
/// member gets a second target, no target a second mark or notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduler_stopped_mid_pass_appends_nothing_twice() {
    let scenario = FailScenario::setup();
    fail::cfg("dormancy::after_register", "3*return").unwrap();
    fail::cfg("dormancy::after_mark", "3*return").unwrap();
    let database = fresh_database().await;
    let gateway = Gateway::start(&[]).await;
    let store = mileage_e2e::event_store(&database).await;
    let keys = mileage_e2e::person_keys(&database).await;
    let quiet_since = chrono::Utc::now() - chrono::TimeDelta::days(400);
    for n in 0..40 {
        let at = quiet_since + chrono::TimeDelta::minutes(n);
        let phone = format!("0103500{n:04}");
        mileage_e2e::seed_member(&*store, &keys, &format!("fp{n}"), &phone, at).await;
    }
    let mut settings = mileage_e2e::projector_settings(&database, Some(&gateway));
    settings.dormancy.every = Duration::from_secs(1);
    let clock = settings.dormancy.clock.clone();
    let _projector = mileage_projector::startup::start(&settings).await.unwrap();
    let registered = |events: &[mileage_store::RecordedEvent], kind: &str| {
        let mut per_stream = std::collections::HashMap::<String, usize>::new();
        for e in events.iter().filter(|e| e.event_type == kind) {
            *per_stream.entry(e.stream.clone()).or_default() += 1;
        }
        per_stream
    };
    let all = || async { store.read_all(None, 10_000).await.unwrap() };
    eventually("every quiet member registered", WAIT, || async {
        (registered(&all().await, "DormantMemberRegistered").len() == 40).then_some(())
    })
    .await;
    clock.advance(chrono::TimeDelta::days(31));
    eventually("every target noticed", WAIT, || async {
        (registered(&all().await, "MessageSent").len() == 40).then_some(())
    })
    .await;
    let events = all().await;
    for kind in [
        "DormantMemberRegistered",
        "DormantMemberChanged",
        "MessageSent",
    ] {
        let seen = registered(&events, kind);
        assert_eq!(seen.len(), 40, "{kind}");
        assert!(seen.values().all(|n| *n == 1), "{kind} twice: {seen:?}");
    }
    assert_eq!(gateway.tally().messages, 40, "one notice each");
    scenario.teardown();
}
