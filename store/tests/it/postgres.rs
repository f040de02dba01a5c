//! The conformance suite and PostgreSQL-specific behaviour.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mileage_domain::member::MemberEvent;
use mileage_store::conformance::{event, fresh_stream};
use mileage_store::postgres::{PgEventStore, PgOptions};
use mileage_store::{EventStore, ExpectedVersion, StoreError, StreamAppend};
use uuid::Uuid;

use crate::helpers::{pg_dyn, pg_store, raw_client};

mileage_store::conformance_tests!(pg_dyn().await);

#[tokio::test]
async fn a_retry_reports_already_appended_and_writes_nothing() {
    let store = pg_store().await;
    let stream = fresh_stream("retry");
    let batch = vec![event("A", 1), event("B", 2)];
    let first = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Any,
        ExpectedVersion::Exact(7),
    ] {
        let retry = store.append(&stream, expected, &batch).await.unwrap();
        assert!(retry.already_appended, "{expected}");
        assert_eq!(
            (retry.last_version, retry.position),
            (first.last_version, first.position)
        );
    }
    assert_eq!(store.read_stream(&stream, 0, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_event_id_reused_elsewhere_is_a_named_error() {
    let store = pg_store().await;
    let stored = event("A", 1);
    let first = fresh_stream("first");
    store
        .append(
            &first,
            ExpectedVersion::NoStream,
            std::slice::from_ref(&stored),
        )
        .await
        .unwrap();
    let other = fresh_stream("other");
    match store
        .append(
            &other,
            ExpectedVersion::NoStream,
            &[event("B", 1), stored.clone()],
        )
        .await
    {
        Err(StoreError::DuplicateEventId {
            event_id,
            stored_in,
            stored_version,
        }) => {
            assert_eq!(
                (event_id, stored_in, stored_version),
                (stored.event_id, first, 0)
            );
        }
        result => panic!("expected DuplicateEventId, got {result:?}"),
    }
    assert!(
        store.read_stream(&other, 0, 10).await.unwrap().is_empty(),
        "all or nothing"
    );
}

#[tokio::test]
async fn a_reader_never_passes_an_event_that_commits_later() {
    let store = pg_store().await;
    let head = store.head_position().await.unwrap();
    // A transaction takes the lower global position and stays open...
    let mut slow = raw_client(&store).await;
    let tx = slow.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, correlation_id, causation_id)
         VALUES ('slow-1', 0, $1, 'Slow', 1, '{}', $1, $1)",
        &[&Uuid::new_v4()],
    )
    .await
    .unwrap();
    // ...while a later append commits with a higher one.
    let fast = store
        .append("fast-1", ExpectedVersion::NoStream, &[event("Fast", 1)])
        .await
        .unwrap();
    let visible = store.read_all(head, 100).await.unwrap();
    assert!(
        visible.is_empty(),
        "the committed later event must wait for the earlier one: {visible:?}"
    );
    assert_eq!(store.head_position().await.unwrap(), head);

    tx.commit().await.unwrap();
    // Other tests' transactions on this server may hold the horizon back a
    // moment (xmin is cluster-wide): wait, bounded, for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut visible = store.read_all(head, 100).await.unwrap();
    while visible.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        visible = store.read_all(head, 100).await.unwrap();
    }
    let streams: Vec<&str> = visible.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, ["slow-1", "fast-1"], "both, in commit order");
    assert_eq!(visible[1].position, fast.position);
}

#[tokio::test]
async fn a_corrupt_event_is_yielded_with_its_position_never_skipped() {
    let store = pg_store().await;
    store
        .append(
            "member-1",
            ExpectedVersion::NoStream,
            &[event("MemberTeleported", 1)],
        )
        .await
        .unwrap();
    let mut subscription = store.subscribe_all(None);
    let recorded = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("delivered")
        .expect("not ended")
        .expect("the store itself reads it");
    match recorded.decode::<MemberEvent>() {
        Err(StoreError::Corrupt {
            position,
            event_type,
            reason,
        }) => {
            assert_eq!(position, recorded.position);
            assert_eq!(event_type, "MemberTeleported");
            assert!(reason.contains("unknown event type"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_reason() {
    let store = pg_store().await;
    let mut not_json = event("A", 1);
    not_json.data = bytes::Bytes::from_static(b"{nope");
    for (stream, events) in [
        ("s-1", vec![]),
        ("", vec![event("A", 1)]),
        ("$all", vec![event("A", 1)]),
        ("s-1", vec![not_json]),
    ] {
        match store.append(stream, ExpectedVersion::Any, &events).await {
            Err(StoreError::InvalidRequest(reason)) => assert!(!reason.is_empty()),
            other => panic!("expected InvalidRequest for {stream:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_malformed_url_is_a_configuration_error() {
    for url in ["postgres://u@h:notaport/db", "mysql:::"] {
        match PgEventStore::connect(url).await {
            Err(StoreError::Config(message)) => assert!(message.contains("URL"), "{message}"),
            Err(other) => panic!("expected Config for {url}, got {other}"),
            Ok(_) => panic!("expected Config for {url}, got a store"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_and_says_where() {
    let options = PgOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let started = Instant::now();
    match PgEventStore::connect_with("postgres://postgres@127.0.0.1:1/postgres", options).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1:1"), "{message}");
        }
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("nothing listens on port 1"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
}

#[tokio::test]
async fn migrations_are_idempotent_and_concurrent_safe() {
    let url = mileage_store::testing::fresh_database().await;
    let (a, b) = tokio::join!(PgEventStore::connect(&url), PgEventStore::connect(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.append("m-1", ExpectedVersion::NoStream, &[event("A", 1)])
        .await
        .unwrap();
    let again = PgEventStore::connect(&url).await.unwrap();
    assert_eq!(again.read_stream("m-1", 0, 10).await.unwrap().len(), 1);
    assert_eq!(b.read_stream("m-1", 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn another_process_wakes_a_subscriber_through_notify() {
    let url = mileage_store::testing::fresh_database().await;
    let slow_poll = PgOptions {
        poll_interval: Duration::from_secs(30),
        ..PgOptions::default()
    };
    let reader = PgEventStore::connect_with(&url, slow_poll).await.unwrap();
    let writer: Arc<dyn EventStore> = Arc::new(PgEventStore::connect(&url).await.unwrap());
    let mut subscription = reader.subscribe_all(None);
    // The subscription starts when first polled: poll it (nothing to read
    // yet) until its listener is connected, as the server shows.
    let _ = tokio::time::timeout(Duration::from_millis(100), subscription.next()).await;
    let server = PgEventStore::connect(&url).await.unwrap();
    let client = server.pool().get().await.unwrap();
    mileage_testkit::eventually(
        "the subscriber's LISTEN",
        Duration::from_secs(30),
        || async {
            let listening: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (listening > 0).then_some(())
        },
    )
    .await;
    writer
        .append("w-1", ExpectedVersion::NoStream, &[event("A", 1)])
        .await
        .unwrap();
    let started = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("woken well before the 30 s poll")
        .expect("not ended")
        .expect("no error");
    assert_eq!(got.stream, "w-1");
    assert!(started.elapsed() < Duration::from_secs(10));
}

// Many appends at once, as group commit batches them, get the same answers
// as one by one.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creators_of_one_stream_have_one_winner() {
    let store = Arc::new(pg_store().await);
    let contested = fresh_stream("contested");
    let racers: Vec<_> = (0..20)
        .map(|n| {
            let store = Arc::clone(&store);
            let stream = contested.clone();
            tokio::spawn(async move {
                store
                    .append(&stream, ExpectedVersion::NoStream, &[event("A", n)])
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(outcome) => {
                winners += 1;
                assert_eq!(outcome.last_version, 0);
            }
            Err(StoreError::WrongExpectedVersion {
                actual: Some(0), ..
            }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners, 1, "exactly one append creates the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_append_store_it_once() {
    let store = Arc::new(pg_store().await);
    let events = vec![event("R", 1), event("R", 2)];
    let stream = fresh_stream("retried");
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            let stream = stream.clone();
            let events = events.clone();
            tokio::spawn(async move {
                store
                    .append(&stream, ExpectedVersion::NoStream, &events)
                    .await
            })
        })
        .collect();
    for attempt in attempts {
        assert_eq!(
            attempt
                .await
                .unwrap()
                .expect("every attempt succeeds")
                .last_version,
            1
        );
    }
    assert_eq!(
        store.read_stream(&stream, 0, 10).await.unwrap().len(),
        2,
        "stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_optimistic_writers_each_get_their_own_version() {
    let store = Arc::new(pg_store().await);
    let chain = fresh_stream("chain");
    store
        .append(&chain, ExpectedVersion::NoStream, &[event("C", 0)])
        .await
        .unwrap();
    let writers: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(&store);
            let stream = chain.clone();
            tokio::spawn(async move {
                let mut expected = 0;
                loop {
                    match store
                        .append(&stream, ExpectedVersion::Exact(expected), &[event("C", n)])
                        .await
                    {
                        Ok(outcome) => return outcome.last_version,
                        Err(StoreError::WrongExpectedVersion {
                            actual: Some(actual),
                            ..
                        }) => expected = actual,
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    let mut versions = Vec::new();
    for writer in writers {
        versions.push(writer.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    let stored: Vec<u64> = store
        .read_stream(&chain, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(stored, (0..=8).collect::<Vec<u64>>());
}

/// Every append goes through the group commit (no minimum in flight), so
/// single- and multi-stream appends share statements: each multi-stream
/// append is still all or nothing, and one contested part refuses its own
/// append only, never the others of its statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_commit_keeps_multi_stream_appends_all_or_nothing() {
    let url = mileage_store::testing::fresh_database().await;
    let options = PgOptions {
        group_min_in_flight: 0,
        ..PgOptions::default()
    };
    let store = Arc::new(PgEventStore::connect_with(&url, options).await.unwrap());
    let claims: Vec<String> = (0..4).map(|_| fresh_stream("claim")).collect();
    let racers: Vec<_> = (0..32u64)
        .map(|n| {
            let store = Arc::clone(&store);
            let claim = claims[usize::try_from(n).unwrap() % claims.len()].clone();
            let own = fresh_stream("own");
            let single = fresh_stream("single");
            tokio::spawn(async move {
                let (claimed, mine) = (vec![event("Claimed", n)], vec![event("Joined", n)]);
                let parts = [
                    StreamAppend {
                        stream: &claim,
                        expected: ExpectedVersion::NoStream,
                        events: &claimed,
                    },
                    StreamAppend {
                        stream: &own,
                        expected: ExpectedVersion::NoStream,
                        events: &mine,
                    },
                ];
                let pair = store.append_many(&parts).await;
                let alone = store
                    .append(&single, ExpectedVersion::NoStream, &[event("Single", n)])
                    .await;
                (claim, own, pair, alone)
            })
        })
        .collect();
    let mut winners = std::collections::HashMap::new();
    for racer in racers {
        let (claim, own, pair, alone) = racer.await.unwrap();
        assert!(alone.is_ok(), "a single append beside them: {alone:?}");
        let own_events = store.read_stream(&own, 0, 10).await.unwrap();
        match pair {
            Ok(outcomes) => {
                assert_eq!(outcomes.len(), 2);
                assert_eq!(own_events.len(), 1);
                *winners.entry(claim).or_insert(0) += 1;
            }
            Err(StoreError::WrongExpectedVersion { ref stream, .. }) => {
                assert_eq!(stream, &claim);
                assert!(own_events.is_empty(), "a refused append wrote no part");
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    for claim in &claims {
        assert_eq!(winners.get(claim), Some(&1), "one winner per claim");
        assert_eq!(store.read_stream(claim, 0, 10).await.unwrap().len(), 1);
    }

    // A part whose expected version is missing (no unique clash, so the
    // statement goes through) holds its whole append back, and only it.
    let ghost = fresh_stream("ghost");
    let racers: Vec<_> = (0..16u64)
        .map(|n| {
            let (store, ghost) = (Arc::clone(&store), ghost.clone());
            let (own, single) = (fresh_stream("own"), fresh_stream("single"));
            tokio::spawn(async move {
                let (late, mine, one) = (
                    vec![event("Late", n)],
                    vec![event("Mine", n)],
                    [event("Single", n)],
                );
                let parts = [
                    StreamAppend {
                        stream: &own,
                        expected: ExpectedVersion::NoStream,
                        events: &mine,
                    },
                    StreamAppend {
                        stream: &ghost,
                        expected: ExpectedVersion::Exact(5),
                        events: &late,
                    },
                ];
                let (pair, alone) = tokio::join!(
                    store.append_many(&parts),
                    store.append(&single, ExpectedVersion::NoStream, &one)
                );
                (own, pair, alone)
            })
        })
        .collect();
    for racer in racers {
        let (own, pair, alone) = racer.await.unwrap();
        assert!(alone.is_ok(), "{alone:?}");
        assert!(
            matches!(pair, Err(StoreError::WrongExpectedVersion { ref stream, .. }) if *stream == ghost),
            "{pair:?}"
        );
        assert!(store.read_stream(&own, 0, 10).await.unwrap().is_empty());
    }
}
