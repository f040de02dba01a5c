//! The EventStoreDB adapter's failure paths, against the wire-level double
//! (`mileage_store::esdb_double`): what the adapter does with each answer a real cluster can
//! give. These run everywhere; the conformance suite against a real server
//! (`eventstoredb.rs`) is what proves EventStoreDB's own rules.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mileage_store::conformance::{event, fresh_stream};
use mileage_store::eventstoredb::EsdbEventStore;
use mileage_store::{EventStore, ExpectedVersion, RecordedEvent, StoreError};

use mileage_store::esdb_double::{Behaviour, Double, STRIDE, VERSION_BEFORE_SESSIONS};

async fn started() -> (Double, Arc<dyn EventStore>) {
    let double = Double::start().await;
    let store = EsdbEventStore::connect(&double.url()).expect("a valid URL");
    (double, Arc::new(store))
}

/// Collects `count` events from a subscription, skipping the errors it
/// yields (each one a cut-off read it recovers from); returns both.
async fn collect(
    subscription: &mut futures::stream::BoxStream<'static, Result<RecordedEvent, StoreError>>,
    count: usize,
) -> (Vec<RecordedEvent>, usize) {
    let mut events = Vec::new();
    let mut errors = 0;
    while events.len() < count {
        match tokio::time::timeout(Duration::from_secs(30), subscription.next()).await {
            Ok(Some(Ok(e))) => events.push(e),
            Ok(Some(Err(e))) => {
                assert!(e.is_transient(), "{e}");
                errors += 1;
            }
            Ok(None) => panic!("the subscription ended"),
            Err(elapsed) => panic!("{elapsed}: no event within 30 s; got {}", events.len()),
        }
    }
    (events, errors)
}

#[tokio::test]
async fn a_process_that_installed_a_crypto_provider_first_still_connects() {
    // eventstore 4.0 panicked in its connection task here.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (_double, store) = started().await;
    let stream = fresh_stream("crypto");
    store
        .append(&stream, ExpectedVersion::NoStream, &[event("A", 1)])
        .await
        .expect("append after a provider was installed");
    assert_eq!(store.read_stream(&stream, 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn events_cross_the_wire_with_ids_versions_metadata_and_sub_second_times() {
    let (double, store) = started().await;
    let stream = fresh_stream("wire");
    let written = vec![event("A", 1), event("B", 2)];
    let outcome = store
        .append(&stream, ExpectedVersion::NoStream, &written)
        .await
        .unwrap();
    assert_eq!(outcome.last_version, 1);
    assert!(!outcome.already_appended);
    let read = store.read_stream(&stream, 0, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].position, outcome.position);
    for ((r, w), stored) in read.iter().zip(&written).zip(double.log()) {
        assert_eq!(r.event_id, w.event_id);
        assert_eq!(r.metadata.correlation_id, w.causation.correlation_id);
        assert_eq!(
            i64::from(r.metadata.recorded_at.timestamp_subsec_nanos()),
            stored.created_ticks % 10_000_000 * 100,
            "the server's 100 ns ticks are kept, not cut to seconds"
        );
    }
    let wrong = store
        .append(&stream, ExpectedVersion::Exact(0), &[event("C", 3)])
        .await;
    assert!(
        matches!(
            wrong,
            Err(StoreError::WrongExpectedVersion {
                actual: Some(1),
                ..
            })
        ),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn system_events_are_never_the_head_and_never_lag() {
    let (double, store) = started().await;
    let stream = fresh_stream("head");
    let outcome = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            &[event("A", 1), event("B", 2)],
        )
        .await
        .unwrap();
    for _ in 0..3 {
        double.write_system_event();
    }
    assert_eq!(store.head_position().await.unwrap(), Some(outcome.position));
    let caught_up = store.backlog(Some(outcome.position), 1000).await.unwrap();
    assert_eq!(caught_up.events, 0, "caught up, whatever the server wrote");
    assert_eq!(caught_up.oldest, None);
    let everything = store.backlog(None, 1000).await.unwrap();
    assert_eq!(
        everything.events, 2,
        "events, not the {STRIDE}-byte steps of the positions"
    );
    assert!(everything.oldest.is_some());
    let capped = store.backlog(None, 1).await.unwrap();
    assert_eq!((capped.events, capped.more), (1, true));
}

#[tokio::test]
async fn the_server_filters_its_own_events_out_of_reads_of_the_log() {
    for namespace in [None, Some("ns")] {
        let double = Double::start().await;
        let url = match namespace {
            Some(n) => format!("{}&namespace={n}", double.url()),
            None => double.url(),
        };
        let store = EsdbEventStore::connect(&url).unwrap();
        let other = EsdbEventStore::connect(&format!("{}&namespace=other", double.url())).unwrap();
        for _ in 0..50 {
            double.write_system_event();
        }
        other
            .append(
                &fresh_stream("theirs"),
                ExpectedVersion::NoStream,
                &[event("X", 9)],
            )
            .await
            .unwrap();
        store
            .append(
                &fresh_stream("ours"),
                ExpectedVersion::NoStream,
                &[event("A", 1)],
            )
            .await
            .unwrap();
        let read = store.read_all(None, 100).await.unwrap();
        let head = store.head_position().await.unwrap();
        let expected = if namespace.is_some() { 1 } else { 2 };
        assert_eq!(read.len(), expected, "{namespace:?}");
        assert_eq!(head, read.last().map(|e| e.position), "{namespace:?}");
        assert_eq!(
            double.system_events_sent(),
            0,
            "{namespace:?}: none of the 50 system events crossed the wire"
        );
    }
}

#[tokio::test]
async fn following_the_log_survives_cut_reads_early_ends_and_interleaved_checkpoints() {
    let (double, store) = started().await;
    let stream = fresh_stream("follow");
    let first: Vec<_> = (0..5).map(|n| event("A", n)).collect();
    store
        .append(&stream, ExpectedVersion::NoStream, &first)
        .await
        .unwrap();
    double.write_system_event();
    double.behave(|b| {
        b.cut_read_after = Some(2);
        b.end_reads_after = Some(3);
        b.interleave = true;
    });
    let mut subscription = store.subscribe_all(None);
    let (events, errors) = collect(&mut subscription, 5).await;
    assert!(errors >= 1, "the cut-off read was reported");
    assert_eq!(
        events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        first.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        "every event once, in order, none skipped after the cut or the early end"
    );
    let later: Vec<_> = (5..7).map(|n| event("A", n)).collect();
    store
        .append(&stream, ExpectedVersion::Exact(4), &later)
        .await
        .unwrap();
    let (events, _) = collect(&mut subscription, 2).await;
    assert_eq!(
        events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        later.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        "it goes on following after the server ended reads with OK"
    );
    assert_eq!(store.read_all(None, 100).await.unwrap().len(), 7);
}

/// An append the double stores and then answers with a failure (`fail`
/// turns that answer on or off) is an unknown outcome, and its retry with
/// the same ids appends nothing and answers the stored position.
async fn stored_then_failed(name: &str, fail: fn(&mut Behaviour, bool)) {
    let (double, store) = started().await;
    let stream = fresh_stream(name);
    let batch = vec![event("A", 1), event("B", 2)];
    double.behave(|b| fail(b, true));
    let timed_out = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await;
    assert!(
        matches!(timed_out, Err(StoreError::OutcomeUnknown(_))),
        "{timed_out:?}"
    );
    double.behave(|b| fail(b, false));
    let retry = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .expect("the retry with the same ids succeeds");
    assert!(
        !retry.already_appended,
        "answered like a first write, as the server answers a recognised retry"
    );
    assert_eq!(retry.last_version, 1);
    let stored = store.read_stream(&stream, 0, 10).await.unwrap();
    assert_eq!(stored.len(), 2, "stored once");
    assert_eq!(retry.position, stored[1].position, "the stored position");
}

#[tokio::test]
async fn a_timed_out_append_is_an_unknown_outcome_and_its_retry_appends_nothing() {
    stored_then_failed("deadline", |b, on| b.store_then_deadline = on).await;
}

#[tokio::test]
async fn the_servers_commit_timeout_is_an_unknown_outcome_and_the_retry_finds_the_append() {
    stored_then_failed("commit-timeout", |b, on| b.store_then_commit_timeout = on).await;
}

#[tokio::test]
async fn an_append_never_answered_is_cut_off_as_an_unknown_outcome() {
    let double = Double::start().await;
    let store = EsdbEventStore::connect(&double.url())
        .unwrap()
        .with_append_deadline(Duration::from_secs(1));
    double.behave(|b| b.never_answer = true);
    let cut = store
        .append(
            &fresh_stream("hang"),
            ExpectedVersion::NoStream,
            &[event("A", 1)],
        )
        .await;
    assert!(matches!(cut, Err(StoreError::OutcomeUnknown(_))), "{cut:?}");
}

#[tokio::test]
async fn a_retry_answered_without_a_position_is_resolved_to_the_stored_one() {
    let (double, store) = started().await;
    let stream = fresh_stream("noposition");
    let batch = [event("A", 1)];
    store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    double.behave(|b| b.retries_unreadable = true);
    let retry = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    let stored = double.log();
    assert!(retry.already_appended, "no position: only a retry has none");
    assert_eq!(retry.position.commit, stored[0].position);
    assert_ne!(retry.position.commit, 0, "never the start of the log");
    assert_eq!(stored.len(), 1);
}

#[tokio::test]
async fn a_retry_the_server_drops_until_the_first_write_is_replicated_is_an_unknown_outcome() {
    let double = Double::start().await;
    let store = EsdbEventStore::connect(&double.url())
        .unwrap()
        .with_append_deadline(Duration::from_secs(1));
    let stream = fresh_stream("notready");
    let batch = [event("A", 1)];
    store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    double.behave(|b| b.retries_not_ready = true);
    let dropped = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await;
    assert!(
        matches!(dropped, Err(StoreError::OutcomeUnknown(_))),
        "{dropped:?}"
    );
    double.behave(|b| b.retries_not_ready = false);
    let later = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .expect("once replicated, the retry is answered");
    assert_eq!(later.position.commit, double.log()[0].position);
    assert_eq!(double.log().len(), 1, "stored once");
}

#[tokio::test]
async fn a_retry_under_any_is_recognised_only_while_the_server_remembers_its_ids() {
    let (double, store) = started().await;
    double.behave(|b| b.recent_ids = Some(2));
    let stream = fresh_stream("any");
    let first = [event("A", 1)];
    store
        .append(&stream, ExpectedVersion::Any, &first)
        .await
        .unwrap();
    store
        .append(&stream, ExpectedVersion::Any, &first)
        .await
        .unwrap();
    assert_eq!(double.log().len(), 1, "remembered: a retry, stored once");
    store
        .append(
            &stream,
            ExpectedVersion::Any,
            &[event("B", 2), event("C", 3)],
        )
        .await
        .unwrap();
    store
        .append(&stream, ExpectedVersion::Any, &first)
        .await
        .unwrap();
    assert_eq!(
        double.log().len(),
        4,
        "forgotten after two newer events: stored again, as the server does"
    );
    assert!(
        !store.idempotency().any_retry_recognised,
        "and the adapter does not claim otherwise"
    );
}

#[tokio::test]
async fn a_stream_deleted_outside_mileage_is_a_named_error_and_the_log_reads_on() {
    let (double, store) = started().await;
    let stream = fresh_stream("deleted");
    store
        .append(&stream, ExpectedVersion::NoStream, &[event("A", 1)])
        .await
        .unwrap();
    double.tombstone(&stream);
    let append = store
        .append(&stream, ExpectedVersion::Any, &[event("B", 2)])
        .await;
    let read = store.read_stream(&stream, 0, 10).await;
    for error in [append.map(|_| ()), read.map(|_| ())] {
        match error {
            Err(e @ StoreError::Backend(_)) => {
                assert!(e.to_string().contains("deleted"), "{e}");
                assert!(!e.is_transient(), "a retry cannot help: {e}");
            }
            other => panic!("a deleted stream: {other:?}"),
        }
    }
    let log = store.read_all(None, 10).await.expect("$all reads on");
    assert_eq!(log.len(), 1, "the tombstone is the server's own event");
}

#[tokio::test]
async fn access_denied_is_a_configuration_error_not_worth_retrying() {
    let (double, store) = started().await;
    double.behave(|b| b.access_denied = true);
    let append = store
        .append(&fresh_stream("acl"), ExpectedVersion::Any, &[event("A", 1)])
        .await;
    let read = store.read_all(None, 10).await;
    for error in [append.map(|_| ()), read.map(|_| ())] {
        match error {
            Err(e @ StoreError::Config(_)) => {
                assert!(e.to_string().contains("denied access"), "{e}");
                assert!(!e.is_transient());
            }
            other => panic!("access denied: {other:?}"),
        }
    }
}

#[tokio::test]
async fn not_leader_is_a_transient_error_and_the_next_call_reaches_the_leader() {
    let leader = Double::start().await;
    let follower = Double::start().await;
    follower.behave(|b| b.not_leader = Some(("127.0.0.1".into(), leader.port)));
    let store: Arc<dyn EventStore> =
        Arc::new(EsdbEventStore::connect(&follower.url()).expect("a valid URL"));
    let stream = fresh_stream("leader");
    let batch = [event("A", 1)];
    let first = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await;
    assert!(
        matches!(&first, Err(e) if e.is_transient()),
        "not-leader is worth retrying: {first:?}"
    );
    let mut retried = None;
    for _ in 0..20 {
        match store
            .append(&stream, ExpectedVersion::NoStream, &batch)
            .await
        {
            Ok(outcome) => {
                retried = Some(outcome);
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(retried.is_some(), "a retry reached the leader");
    assert_eq!(leader.log().len(), 1, "stored on the leader");
    assert!(follower.log().is_empty());
}

#[tokio::test]
async fn a_read_the_server_never_answers_is_cut_off_as_unavailable() {
    let double = Double::start().await;
    let store = EsdbEventStore::connect(&double.url())
        .unwrap()
        .with_read_deadline(Duration::from_secs(1));
    let stream = fresh_stream("hung-read");
    store
        .append(&stream, ExpectedVersion::NoStream, &[event("A", 1)])
        .await
        .unwrap();
    double.behave(|b| b.hang_reads = true);
    // Without the deadline these would wait for good: bounded here.
    let stream_read =
        tokio::time::timeout(Duration::from_secs(20), store.read_stream(&stream, 0, 10))
            .await
            .expect("cut off by the store, not hung");
    assert!(
        matches!(&stream_read, Err(StoreError::Unavailable(_))),
        "{stream_read:?}"
    );
    let log_read = tokio::time::timeout(Duration::from_secs(20), store.read_all(None, 10))
        .await
        .expect("cut off by the store, not hung");
    assert!(
        matches!(&log_read, Err(e) if e.is_transient()),
        "{log_read:?}"
    );
    let search = tokio::time::timeout(
        Duration::from_secs(20),
        store.find_in_stream(&stream, uuid::Uuid::nil()),
    )
    .await
    .expect("cut off by the store, not hung");
    assert!(matches!(&search, Err(e) if e.is_transient()), "{search:?}");
    double.behave(|b| b.hang_reads = false);
    assert_eq!(store.read_stream(&stream, 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_read_on_a_follower_is_a_transient_error_and_a_later_one_reaches_the_leader() {
    let leader = Double::start().await;
    let follower = Double::start().await;
    let stream = fresh_stream("leader-read");
    let on_leader = EsdbEventStore::connect(&leader.url()).expect("a valid URL");
    on_leader
        .append(&stream, ExpectedVersion::NoStream, &[event("A", 1)])
        .await
        .unwrap();
    follower.behave(|b| b.not_leader = Some(("127.0.0.1".into(), leader.port)));
    let store = EsdbEventStore::connect(&follower.url()).expect("a valid URL");
    let first = store.read_stream(&stream, 0, 10).await;
    assert!(
        matches!(&first, Err(e) if e.is_transient()),
        "not-leader is worth retrying: {first:?}"
    );
    let read = mileage_testkit::until_every(
        Duration::from_millis(100),
        Duration::from_secs(10),
        || store.read_stream(&stream, 0, 10),
        Result::is_ok,
    )
    .await;
    assert_eq!(read.unwrap().len(), 1, "read on the leader");
}

#[tokio::test]
async fn the_store_identity_is_created_once_and_shared() {
    let (double, store) = started().await;
    let id = store.identity().await.unwrap();
    assert!(id.starts_with("eventstoredb:"), "{id}");
    assert_eq!(store.identity().await.unwrap(), id);
    let other = EsdbEventStore::connect(&double.url()).unwrap();
    assert_eq!(
        other.identity().await.unwrap(),
        id,
        "another process agrees"
    );
    assert!(
        store.read_all(None, 10).await.unwrap().is_empty(),
        "the identity is a system stream no reader sees"
    );
    assert_eq!(store.head_position().await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_error_naming_the_store() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let store = EsdbEventStore::connect(&format!("esdb://127.0.0.1:{port}?tls=false")).unwrap();
    let error = tokio::time::timeout(Duration::from_secs(120), store.identity())
        .await
        .expect("gives up within two minutes")
        .expect_err("nothing listens there");
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("event store unavailable"),
        "{error}"
    );
}

#[tokio::test]
async fn namespaces_share_a_server_without_seeing_each_other() {
    let double = Double::start().await;
    let url = |namespace: &str| format!("{}&namespace={namespace}", double.url());
    let one: Arc<dyn EventStore> = Arc::new(EsdbEventStore::connect(&url("one")).unwrap());
    let two: Arc<dyn EventStore> = Arc::new(EsdbEventStore::connect(&url("two")).unwrap());
    let written = one
        .append("member-1", ExpectedVersion::NoStream, &[event("A", 1)])
        .await
        .unwrap();
    two.append(
        "member-1",
        ExpectedVersion::NoStream,
        &[event("B", 1), event("B", 2)],
    )
    .await
    .expect("the same stream name in another namespace is another stream");
    let seen = one.read_all(None, 100).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].stream, "member-1", "the prefix is taken off");
    assert_eq!(one.read_stream("member-1", 0, 10).await.unwrap().len(), 1);
    assert_eq!(two.read_all(None, 100).await.unwrap().len(), 2);
    assert_eq!(one.backlog(None, 100).await.unwrap().events, 1);
    assert_eq!(one.head_position().await.unwrap(), Some(written.position));
    assert_ne!(one.identity().await.unwrap(), two.identity().await.unwrap());
    assert!(
        double.log().iter().any(|e| e.stream == "one.member-1"),
        "stored under the namespace"
    );
}

/// Two attempts of one command on two streams, under the same event ids
/// but deciding different things (a join drawing different member ids):
/// the second finds its first part stored with the first attempt's data,
/// and appends nothing more. (It appended its own second part, applying
/// the losing attempt after all: an extra member in the crash run.)
#[tokio::test]
async fn a_part_another_attempt_stored_under_its_ids_ends_the_append_there() {
    let double = Double::start().await;
    double.behave(|b| b.version = Some(VERSION_BEFORE_SESSIONS.into()));
    let store = EsdbEventStore::connect(&double.url()).unwrap();
    two_attempts_of_one_pair(&store, |lost| {
        let lost = lost.unwrap();
        assert!(lost[0].already_appended, "another attempt's part");
        assert_eq!(lost.len(), 1, "nothing after it");
    })
    .await;
}

/// The same on 25.1 and later, in one atomic append: its first part a
/// retry, its second not, which the server cannot answer plainly (an
/// internal error): an unknown outcome, and nothing of it is stored. The
/// executor's next attempt finds the first attempt's outcome.
#[tokio::test]
async fn an_atomic_append_partly_another_attempts_stores_nothing_and_is_an_unknown_outcome() {
    let (double, store) = started().await;
    two_attempts_of_one_pair(&*store, |lost| {
        assert!(
            matches!(lost, Err(StoreError::OutcomeUnknown(_))),
            "{lost:?}"
        );
    })
    .await;
    assert!(store.multi_stream_atomic());
    assert_eq!(double.log().len(), 2, "the first attempt's two events only");
}

/// Two attempts of a claim and a join: the first stored, the second with
/// the same claim ids but other data and another member stream; `lost`
/// checks the second's answer. Then the second member stream is still
/// empty, and the first attempt's retry answers both parts.
async fn two_attempts_of_one_pair(
    store: &dyn EventStore,
    lost: impl FnOnce(Result<Vec<mileage_store::AppendOutcome>, StoreError>),
) {
    let (claim, first_member, second_member) = (
        fresh_stream("claim"),
        fresh_stream("memberA"),
        fresh_stream("memberB"),
    );
    let with_data = |n: u64, data: &str| {
        let mut e = event("TestHappened", n);
        e.data = bytes::Bytes::from(data.to_owned());
        e
    };
    let first_claim = [with_data(1, r#"{"holder":"a"}"#)];
    let first_join = [event("Joined", 2)];
    let second_claim = [{
        let mut e = with_data(1, r#"{"holder":"b"}"#);
        e.event_id = first_claim[0].event_id;
        e
    }];
    let second_join = [event("Joined", 3)];
    let won = store
        .append_many(&two_parts(&claim, &first_claim, &first_member, &first_join))
        .await
        .unwrap();
    assert!(won.iter().all(|o| !o.already_appended));
    lost(
        store
            .append_many(&two_parts(
                &claim,
                &second_claim,
                &second_member,
                &second_join,
            ))
            .await,
    );
    assert!(
        store
            .read_stream(&second_member, 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "the losing attempt's second part is not appended"
    );
    // The same parts again (a retry of the first attempt) still answer both.
    let again = store
        .append_many(&two_parts(&claim, &first_claim, &first_member, &first_join))
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
}

/// A claim part and a member part, each to a new stream.
fn two_parts<'a>(
    claim: &'a str,
    claim_events: &'a [mileage_store::NewEvent],
    member: &'a str,
    join_events: &'a [mileage_store::NewEvent],
) -> [mileage_store::StreamAppend<'a>; 2] {
    [
        mileage_store::StreamAppend {
            stream: claim,
            expected: ExpectedVersion::NoStream,
            events: claim_events,
        },
        mileage_store::StreamAppend {
            stream: member,
            expected: ExpectedVersion::NoStream,
            events: join_events,
        },
    ]
}

/// Two attempts of one join, their event ids derived from one key, each
/// decided on the empty stream with its own time and nonces: the second's
/// append reaches the server after the first's is stored, and the server
/// answers it as it answers a first write. Both must answer the first
/// attempt's outcome, and the second instance must cache what the log
/// holds, not its own decision.
#[tokio::test]
async fn an_attempt_the_server_takes_for_a_retry_answers_the_first_attempts_outcome() {
    use mileage_domain::Aggregate;
    use mileage_domain::envelope::Causation;
    use mileage_domain::ids::MemberId;
    use mileage_domain::member::{Member, MemberCommand};
    use mileage_domain::pii::PersonKey;
    use mileage_store::executor::{EventIds, Executor};

    let (double, store) = started().await;
    let cached = std::num::NonZeroUsize::new(16).unwrap();
    let (first, second) = (
        Executor::new(store.clone(), cached),
        Executor::new(store.clone(), cached),
    );
    let member_id = MemberId::parse("7").unwrap();
    let stream = mileage_domain::aggregate::stream_name::<Member>(&member_id);
    let key = PersonKey::new("member-7", [7; 32]);
    let join = |nonce: u8, second: i64| MemberCommand::Join {
        member_id: member_id.clone(),
        phone: key.seal("phone", "01012345678", [nonce; 24]),
        nickname: key.seal("nickname", "kim", [nonce; 24]),
        at: chrono::DateTime::from_timestamp(1_700_000_000 + second, 0).unwrap(),
        rejoining: None,
    };
    let ids = EventIds::DerivedFrom(uuid::Uuid::new_v4());
    let causation = Causation::root(uuid::Uuid::new_v4());

    double.behave(|b| b.stall_appends = Some(Duration::from_secs(2)));
    let late = second.execute::<Member>(&stream, join(2, 2), ids, causation.clone());
    let early = async {
        while double.appends() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        double.behave(|b| b.stall_appends = None);
        first
            .execute::<Member>(&stream, join(1, 1), ids, causation)
            .await
            .expect("the first attempt")
    };
    let (late, early) = tokio::join!(late, early);
    let late = late.expect("the second attempt");
    assert!(!early.replayed);
    assert!(late.replayed, "the first attempt's outcome, from the log");
    assert_eq!(late.state, early.state, "the first attempt's data");
    assert_eq!(
        (late.version, late.position),
        (early.version, early.position)
    );
    let stored: Vec<_> = store
        .read_stream(&stream, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.decode().unwrap())
        .collect();
    assert_eq!(stored.len(), 1, "appended once");
    let (cached, _) = second.load::<Member>(&stream).await.unwrap();
    assert_eq!(
        cached,
        Member::from_events(&stored),
        "the cache holds the log"
    );
}

#[tokio::test]
async fn a_server_older_than_the_minimum_is_refused_at_connect_naming_both_versions() {
    for (reported, says) in [
        ("21.10.5", "is version 21.10.5"),
        ("22.6.0", "is version 22.6.0"),
        ("", "reports no version"),
    ] {
        let double = Double::start().await;
        double.behave(|b| b.version = Some(reported.to_owned()));
        let store = EsdbEventStore::connect(&double.url()).unwrap();
        match store.identity().await {
            Err(e @ StoreError::Config(_)) => {
                let text = e.to_string();
                assert!(text.contains(says), "{text}");
                assert!(text.contains("22.10 or later"), "{text}");
            }
            other => panic!("{reported}: {other:?}"),
        }
        assert_eq!(double.log().len(), 0, "{reported}: nothing written to it");
    }
    let double = Double::start().await;
    double.behave(|b| b.version = Some("22.10.0".to_owned()));
    let store = EsdbEventStore::connect(&double.url()).unwrap();
    store.identity().await.expect("22.10 is supported");
    let version = store.server_version().await.unwrap();
    assert_eq!((version.major, version.minor), (22, 10));
}

#[tokio::test]
async fn an_atomic_append_on_a_follower_is_transient_and_the_next_one_reaches_the_leader() {
    let leader = Double::start().await;
    let follower = Double::start().await;
    follower.behave(|b| b.not_leader = Some(("127.0.0.1".into(), leader.port)));
    let store = EsdbEventStore::connect(&follower.url()).unwrap();
    let (a, b) = (fresh_stream("leaderA"), fresh_stream("leaderB"));
    let (to_a, to_b) = ([event("A", 1)], [event("B", 2)]);
    let parts = two_parts(&a, &to_a, &b, &to_b);
    let first = store.append_many(&parts).await;
    assert!(
        matches!(&first, Err(e) if e.is_transient()),
        "not-leader is worth retrying: {first:?}"
    );
    let retried = store
        .append_many(&parts)
        .await
        .expect("the leader takes it");
    assert_eq!(retried.len(), 2);
    assert_eq!(leader.log().len(), 2, "both parts on the leader");
    assert!(follower.log().is_empty());
}

/// A command on two streams answers one position however its outcome is
/// known: the first attempt's append (which on 25.1 answers every part at
/// the session's last record, and in order each part at its own), and a
/// second attempt that finds it in the log (which reads each part's last
/// event). Found by the crash run: two attempts of one withdrawal answered
/// 81800 and 81700.
#[tokio::test]
async fn every_attempt_of_a_command_on_two_streams_answers_the_same_position() {
    use mileage_domain::envelope::Causation;
    use mileage_domain::id_sequence::{IdSequence, IdSequenceCommand};
    use mileage_store::executor::{EventIds, Executor, FirstDecision};

    for version in [mileage_store::esdb_double::VERSION, VERSION_BEFORE_SESSIONS] {
        let double = Double::start().await;
        double.behave(|b| b.version = Some(version.into()));
        let store: Arc<dyn EventStore> = Arc::new(EsdbEventStore::connect(&double.url()).unwrap());
        let cached = std::num::NonZeroUsize::new(16).unwrap();
        let (first, second) = (
            Executor::new(store.clone(), cached),
            Executor::new(store.clone(), cached),
        );
        let reserve = IdSequenceCommand {
            size: 10,
            at: chrono::Utc::now(),
        };
        let (a, b) = (fresh_stream("idSequence"), fresh_stream("idSequence"));
        let ids = EventIds::DerivedFrom(uuid::Uuid::new_v4());
        let causation = Causation::root(uuid::Uuid::new_v4());
        let mut answers = Vec::new();
        for executor in [&first, &second] {
            answers.push(
                executor
                    .execute_pair::<IdSequence, IdSequence>(
                        (&a, reserve.clone()),
                        (&b, reserve.clone()),
                        FirstDecision::OnRead,
                        ids,
                        causation.clone(),
                    )
                    .await
                    .expect("an attempt"),
            );
        }
        let [(a1, b1), (a2, b2)] = <[_; 2]>::try_from(answers).ok().unwrap();
        assert!(a2.replayed, "{version}: found in the log");
        assert_eq!(
            (a1.position, b1.position),
            (a2.position, b2.position),
            "{version}"
        );
        assert_eq!(
            a1.position, b1.position,
            "{version}: one command, one position"
        );
        assert_eq!(
            a1.position.map(|p| p.commit),
            double.log().last().map(|e| e.position),
            "{version}: where readers see all of it"
        );
    }
}
