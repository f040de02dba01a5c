//! The contract every [`EventStore`] adapter must meet, written once.
//!
//! Each function is one behaviour and panics when the store breaks it. Test
//! files run them through [`conformance_tests!`] against a concrete store.
//! Streams get a fresh random prefix, and global-log checks start from the
//! head seen before the test, so tests can share one server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mileage_domain::envelope::Causation;
use uuid::Uuid;

use crate::{EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError};

/// A fresh stream name unique to one test run.
pub fn fresh_stream(label: &str) -> String {
    format!("{label}{}-1", Uuid::new_v4().simple())
}

/// A test event with a fresh id.
pub fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: Bytes::from(format!("{{\"n\":{n}}}")),
        causation: Causation::root(Uuid::new_v4()),
        recorded_at: None,
        request: None,
    }
}

fn events(count: u64) -> Vec<NewEvent> {
    (0..count).map(|n| event("TestHappened", n)).collect()
}

/// Appending to a new stream and reading it back, whole and from a version.
pub async fn append_and_read_stream(store: Arc<dyn EventStore>) {
    let stream = fresh_stream("read");
    let written = events(3);
    let outcome = store
        .append(&stream, ExpectedVersion::NoStream, &written)
        .await
        .expect("append to a new stream");
    assert_eq!(outcome.last_version, 2);
    assert!(!outcome.already_appended);

    let read = store
        .read_stream(&stream, 0, 100)
        .await
        .expect("read stream");
    assert_eq!(read.len(), 3);
    for (i, (r, w)) in read.iter().zip(&written).enumerate() {
        assert_eq!(r.stream, stream);
        assert_eq!(r.stream_version, i as u64);
        assert_eq!(r.event_id, w.event_id);
        assert_eq!(r.event_type, w.event_type);
        assert_eq!(r.schema_version, w.schema_version);
        assert_eq!(r.metadata.correlation_id, w.causation.correlation_id);
        assert_eq!(r.metadata.causation_id, w.causation.causation_id);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&r.data).unwrap()["n"],
            i
        );
    }
    assert_eq!(
        read[2].position, outcome.position,
        "append answers the last event's position"
    );
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));

    let from_one = store
        .read_stream(&stream, 1, 100)
        .await
        .expect("read from version 1");
    assert_eq!(
        from_one
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    let limited = store.read_stream(&stream, 0, 1).await.expect("read one");
    assert_eq!(limited.len(), 1);
    let unknown = store
        .read_stream(&fresh_stream("none"), 0, 10)
        .await
        .expect("read unknown");
    assert!(unknown.is_empty());
}

/// Every kind of wrong expectation is a typed conflict naming stream,
/// expected and actual, and writes nothing.
pub async fn conflict_on_wrong_expected_version(store: Arc<dyn EventStore>) {
    let stream = fresh_stream("conflict");
    store
        .append(&stream, ExpectedVersion::NoStream, &events(3))
        .await
        .expect("seed the stream");

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(5),
    ] {
        match store.append(&stream, expected, &events(1)).await {
            Err(StoreError::WrongExpectedVersion {
                stream: s,
                expected: e,
                actual,
            }) => {
                assert_eq!(
                    (s.as_str(), e, actual),
                    (stream.as_str(), expected, Some(2))
                );
            }
            other => panic!("expected a conflict for {expected}, got {other:?}"),
        }
    }
    let missing = fresh_stream("missing");
    match store
        .append(&missing, ExpectedVersion::Exact(0), &events(1))
        .await
    {
        Err(StoreError::WrongExpectedVersion { actual: None, .. }) => {}
        other => panic!("expected a conflict on a missing stream, got {other:?}"),
    }
    assert!(
        store.read_stream(&missing, 0, 10).await.unwrap().is_empty(),
        "nothing written"
    );
    assert_eq!(
        store.read_stream(&stream, 0, 10).await.unwrap().len(),
        3,
        "nothing written"
    );

    let exact = store
        .append(&stream, ExpectedVersion::Exact(2), &events(2))
        .await
        .expect("the right version appends");
    assert_eq!(exact.last_version, 4);
    let any = store
        .append(&stream, ExpectedVersion::Any, &events(1))
        .await
        .expect("any appends");
    assert_eq!(any.last_version, 5);
}

/// Retrying an append with the same event ids stores nothing new.
pub async fn idempotent_retry(store: Arc<dyn EventStore>) {
    let stream = fresh_stream("retry");
    let batch = events(2);
    let first = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .expect("first append");
    let retry = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .expect("a retry with the same ids succeeds");
    assert_eq!(retry.last_version, first.last_version);
    let stored = store.read_stream(&stream, 0, 10).await.unwrap();
    assert_eq!(stored.len(), 2, "the retry stored nothing new");
    assert_eq!(
        stored.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        batch.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
}

/// Each store keeps the idempotency rules it declares
/// ([`EventStore::idempotency`]), and every store the one the rest of
/// Mileage relies on.
pub async fn idempotency_rules(store: Arc<dyn EventStore>) {
    let rules = store.idempotency();
    assert!(
        rules.exact_retry_recognised,
        "every store must recognise a retry under the same exact expectation"
    );
    let stream = fresh_stream("rules");
    let batch = events(2);
    let first = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .expect("first append");
    let exact = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .expect("a retry under the same expectation succeeds");
    assert_eq!(exact.last_version, first.last_version);
    assert_eq!(exact.position, first.position, "the first position again");
    assert_eq!(
        exact.already_appended, rules.retry_reported,
        "the retry says it was one exactly where the store declares it does"
    );
    let ids = |stored: &[RecordedEvent]| stored.iter().map(|e| e.event_id).collect::<Vec<_>>();
    assert_eq!(
        ids(&store.read_stream(&stream, 0, 10).await.unwrap()),
        ids_of(&batch),
        "stored once"
    );
    if rules.any_retry_recognised {
        store
            .append(&stream, ExpectedVersion::Any, &batch)
            .await
            .expect("a retry under Any succeeds");
        assert_eq!(
            ids(&store.read_stream(&stream, 0, 10).await.unwrap()),
            ids_of(&batch),
            "a retry under Any stored nothing new"
        );
    }
    let elsewhere = fresh_stream("rules-elsewhere");
    let reused = store
        .append(&elsewhere, ExpectedVersion::NoStream, &batch[..1])
        .await;
    if rules.ids_unique_across_streams {
        assert!(
            matches!(reused, Err(StoreError::DuplicateEventId { ref stored_in, .. }) if *stored_in == stream),
            "an id stored in another stream is refused: {reused:?}"
        );
    } else {
        reused.expect("this store keeps ids unique per stream only");
        assert_eq!(
            ids(&store.read_stream(&elsewhere, 0, 10).await.unwrap()),
            ids_of(&batch[..1])
        );
    }
}

fn ids_of(events: &[NewEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// A store names itself the same way every time it is asked.
pub async fn identity_is_stable(store: Arc<dyn EventStore>) {
    let id = store.identity().await.expect("identity");
    let (kind, uuid) = id.split_once(':').expect("{kind}:{uuid}");
    assert!(
        ["postgresql", "eventstoredb"].contains(&kind),
        "a known kind: {id}"
    );
    uuid.parse::<Uuid>().expect("a UUID after the kind");
    assert_eq!(store.identity().await.expect("identity again"), id);
}

/// The backlog after a position counts events (never position units),
/// up to the limit, and dates the first of them.
pub async fn backlog_counts_events_after_a_position(store: Arc<dyn EventStore>) {
    let stream = fresh_stream("backlog");
    store
        .append(&stream, ExpectedVersion::NoStream, &events(3))
        .await
        .expect("append");
    let stored = store.read_stream(&stream, 0, 10).await.unwrap();
    // A store may show a commit a moment late (PostgreSQL, behind another
    // test's transaction still open on the server), never out of order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let after_first = loop {
        let backlog = store
            .backlog(Some(stored[0].position), 1_000_000)
            .await
            .expect("backlog");
        if backlog.events >= 2 || tokio::time::Instant::now() > deadline {
            break backlog;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(after_first.events >= 2, "{after_first:?}");
    assert!(!after_first.more);
    assert_eq!(
        after_first.oldest,
        Some(stored[1].metadata.recorded_at),
        "dated by the first event after the position"
    );
    let capped = store
        .backlog(Some(stored[0].position), 1)
        .await
        .expect("backlog");
    assert_eq!((capped.events, capped.more), (1, true));
}

/// The global log reads in append order from any checkpoint.
pub async fn global_read_from_checkpoint(store: Arc<dyn EventStore>) {
    let start = store.head_position().await.expect("head");
    let streams: Vec<String> = (0..3).map(|_| fresh_stream("global")).collect();
    let mut written = Vec::new();
    for round in 0..2 {
        for stream in &streams {
            let batch = events(2);
            let expected = if round == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(1)
            };
            store
                .append(stream, expected, &batch)
                .await
                .expect("append");
            written.extend(batch.iter().map(|e| e.event_id));
        }
    }
    let ours = |e: &RecordedEvent| streams.contains(&e.stream);
    let all = read_until_seen(&*store, start, 7, &ours, written.len()).await;
    assert_eq!(
        all.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        written,
        "global order is append order"
    );
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "positions increase"
    );

    let checkpoint = all[4].position;
    let rest = read_until_seen(&*store, Some(checkpoint), 100, &ours, written.len() - 5).await;
    assert_eq!(
        rest.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        written[5..],
        "reading resumes strictly after the checkpoint"
    );
}

/// A subscription yields what is stored, then what is appended later.
pub async fn subscription_catches_up_then_follows(store: Arc<dyn EventStore>) {
    let start = store.head_position().await.expect("head");
    let stream = fresh_stream("sub");
    let before = events(2);
    store
        .append(&stream, ExpectedVersion::NoStream, &before)
        .await
        .expect("append before subscribing");
    let mut subscription = store.subscribe_all(start);
    let after = events(2);
    let appender = {
        let store = Arc::clone(&store);
        let stream = stream.clone();
        let after = after.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            store
                .append(&stream, ExpectedVersion::Exact(1), &after)
                .await
        })
    };
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 4 {
        let next = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .expect("the subscription should deliver within 20 s")
            .expect("a subscription never ends")
            .expect("no subscription error");
        if next.stream == stream {
            seen.push(next.event_id);
        }
    }
    appender.await.unwrap().expect("append after subscribing");
    let expected: Vec<Uuid> = before.iter().chain(&after).map(|e| e.event_id).collect();
    assert_eq!(seen, expected);
}

/// Many concurrent writers; a reader following the global log sees every
/// committed event exactly once, in one consistent order, none skipped.
pub async fn concurrent_writers_reader_sees_every_event_once(store: Arc<dyn EventStore>) {
    const WRITERS: usize = 16;
    const APPENDS_PER_WRITER: usize = 25;
    let start = store.head_position().await.expect("head");
    let prefix = format!("conc{}", Uuid::new_v4().simple());
    let mut subscription = store.subscribe_all(start);

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        let prefix = prefix.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..APPENDS_PER_WRITER {
                // Four streams per writer, appended round-robin, 1-3 events each.
                let stream = format!("{prefix}-{w}x{}", i % 4);
                let batch = events(1 + (i % 3) as u64);
                store
                    .append(&stream, ExpectedVersion::Any, &batch)
                    .await
                    .expect("concurrent append");
                ids.extend(batch.iter().map(|e| e.event_id));
            }
            ids
        }));
    }
    let mut written = HashSet::new();
    for writer in writers {
        written.extend(writer.await.expect("writer task"));
    }

    let mut seen: Vec<RecordedEvent> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < written.len() {
        let next = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {} events arrived in 60 s",
                    seen.len(),
                    written.len()
                )
            })
            .expect("a subscription never ends")
            .expect("no subscription error");
        if next.stream.starts_with(&prefix) {
            seen.push(next);
        }
    }
    let ids: Vec<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no event delivered twice"
    );
    assert_eq!(
        ids.iter().copied().collect::<HashSet<_>>(),
        written,
        "every committed event delivered"
    );
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "positions strictly increase"
    );
    let mut last_version: HashMap<&str, u64> = HashMap::new();
    for e in &seen {
        if let Some(prev) = last_version.insert(&e.stream, e.stream_version) {
            assert_eq!(
                e.stream_version,
                prev + 1,
                "stream {} delivered in version order",
                e.stream
            );
        }
    }
    let reread: Vec<Uuid> = read_everything_after(&*store, start, 97)
        .await
        .into_iter()
        .filter(|e| e.stream.starts_with(&prefix))
        .map(|e| e.event_id)
        .collect();
    assert_eq!(reread, ids, "a later read sees the same order");
}

/// Recorded time and causal metadata survive the store.
pub async fn metadata_round_trip(store: Arc<dyn EventStore>) {
    let stream = fresh_stream("meta");
    let correlation = Uuid::new_v4();
    let cause = Uuid::new_v4();
    let mut e = event("TestHappened", 1);
    e.schema_version = 3;
    let trace: mileage_domain::envelope::TraceContext =
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("a traceparent");
    let actor: mileage_domain::envelope::Actor = "manager:김 대리".parse().expect("an actor");
    e.causation = Causation::caused_by(correlation, cause)
        .in_trace(Some(trace))
        .by(actor.clone());
    let mut untraced = event("TestHappened", 2);
    untraced.causation = Causation::caused_by(correlation, cause);
    let before = chrono::Utc::now() - chrono::Duration::minutes(5);
    let head_before = store.head_position().await.expect("the head");
    store
        .append(&stream, ExpectedVersion::NoStream, &[e.clone(), untraced])
        .await
        .expect("append");
    let read = store.read_stream(&stream, 0, 2).await.unwrap();
    let stored = &read[0];
    assert_eq!(
        stored.metadata.trace,
        Some(trace),
        "the trace context is kept"
    );
    assert_eq!(
        read[1].metadata.trace, None,
        "and an event without one has none"
    );
    assert_eq!(
        (
            stored.metadata.actor.as_ref(),
            read[1].metadata.actor.as_ref()
        ),
        (Some(&actor), None),
        "the actor is kept, and an event without one has none"
    );
    let in_log = read_until_seen(&*store, head_before, 1000, &|r| r.event_id == e.event_id, 1)
        .await
        .into_iter()
        .next()
        .expect("the event in the log");
    assert_eq!(
        in_log.metadata.actor.as_ref(),
        Some(&actor),
        "in the log too"
    );
    assert_eq!(stored.metadata.correlation_id, correlation);
    assert_eq!(stored.metadata.causation_id, cause);
    assert_eq!(stored.schema_version, 3);
    assert!(stored.metadata.recorded_at > before);
    assert!(stored.metadata.recorded_at < chrono::Utc::now() + chrono::Duration::minutes(5));
    let envelope = stored.to_envelope().expect("envelope");
    assert_eq!(envelope.data["n"], 1);
}

/// An event appended with the time it was first recorded (an import of
/// an archive) reads back with that time, from its stream and from the
/// log, on a store that stamps appends with their own time; a retry of the
/// import changes nothing.
pub async fn imported_events_keep_their_recorded_time(store: Arc<dyn EventStore>) {
    let stream = fresh_stream("imported");
    let first_recorded = chrono::DateTime::parse_from_rfc3339("2021-03-04T05:06:07.089Z")
        .expect("a time")
        .with_timezone(&chrono::Utc);
    let mut imported = event("TestHappened", 1);
    imported.recorded_at = Some(first_recorded);
    let fresh = event("TestHappened", 2);
    let before = chrono::Utc::now() - chrono::Duration::minutes(5);
    let batch = [imported, fresh];
    let outcome = store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .expect("append");
    store
        .append(&stream, ExpectedVersion::NoStream, &batch)
        .await
        .expect("the import run again");
    let read = store.read_stream(&stream, 0, 2).await.unwrap();
    assert_eq!(
        read[0].metadata.recorded_at, first_recorded,
        "from the stream"
    );
    assert!(read[1].metadata.recorded_at > before, "a new event: now");
    let logged = read_until_seen(&*store, None, 100, &|e| e.stream == stream, 2).await;
    assert_eq!(
        logged[0].metadata.recorded_at, first_recorded,
        "from the log"
    );
    assert_eq!(logged[1].position, outcome.position);
}

/// Reads the global log after `start`, `batch` events at a time, until
/// `count` events matching `ours` are visible (a store may show a commit a
/// moment late, never out of order) or 20 s pass; returns the matching ones.
async fn read_until_seen(
    store: &dyn EventStore,
    start: Option<Position>,
    batch: usize,
    ours: &dyn Fn(&RecordedEvent) -> bool,
    count: usize,
) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Vec<RecordedEvent> = read_everything_after(store, start, batch)
            .await
            .into_iter()
            .filter(|e| ours(e))
            .collect();
        if seen.len() >= count || tokio::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An append to two streams: each part under its own expected version; the
/// same call again stores nothing new and answers the first outcomes.
pub async fn multi_stream_append_and_retry(store: Arc<dyn EventStore>) {
    let (a, b) = (fresh_stream("multiA"), fresh_stream("multiB"));
    store
        .append(&b, ExpectedVersion::NoStream, &events(2))
        .await
        .expect("b has two events");
    let (to_a, to_b) = (events(1), events(2));
    let parts = [
        crate::StreamAppend {
            stream: &a,
            expected: ExpectedVersion::NoStream,
            events: &to_a,
        },
        crate::StreamAppend {
            stream: &b,
            expected: ExpectedVersion::Exact(1),
            events: &to_b,
        },
    ];
    let first = store.append_many(&parts).await.expect("both parts fit");
    assert_eq!(first.len(), 2);
    assert_eq!((first[0].last_version, first[1].last_version), (0, 3));
    assert!(first.iter().all(|o| !o.already_appended));
    let again = store
        .append_many(&parts)
        .await
        .expect("a retry is not an error");
    assert_eq!(
        (again[0].last_version, again[1].last_version),
        (0, 3),
        "the first outcomes"
    );
    assert_eq!(store.read_stream(&a, 0, 10).await.unwrap().len(), 1);
    assert_eq!(store.read_stream(&b, 0, 10).await.unwrap().len(), 4);
    let found = store
        .find_in_stream(&b, to_b[1].event_id)
        .await
        .expect("find")
        .expect("the event is in b");
    assert_eq!(found.stream_version, 3);
    assert!(
        store
            .find_in_stream(&a, to_b[1].event_id)
            .await
            .expect("find")
            .is_none(),
        "only in its own stream"
    );
}

/// An event is found by its id however many events came after it: a retry
/// whose key table entry is gone (purged after its retention, or lost in
/// a crash) still finds its first attempt on a busy stream, and appends
/// nothing.
pub async fn find_in_stream_looks_through_the_whole_stream(store: Arc<dyn EventStore>) {
    let stream = fresh_stream("find-deep");
    let first = event("First", 0);
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            std::slice::from_ref(&first),
        )
        .await
        .expect("append the first");
    let mut last = 0;
    for batch in 0..12u64 {
        let events: Vec<NewEvent> = (0..100).map(|n| event("Later", batch * 100 + n)).collect();
        last = store
            .append(&stream, ExpectedVersion::Exact(last), &events)
            .await
            .expect("append later events")
            .last_version;
    }
    assert_eq!(last, 1200);
    let found = store
        .find_in_stream(&stream, first.event_id)
        .await
        .expect("find")
        .expect("the first event, 1,200 events back");
    assert_eq!((found.stream_version, found.event_id), (0, first.event_id));
    assert!(
        store
            .find_in_stream(&stream, Uuid::new_v4())
            .await
            .expect("find")
            .is_none(),
        "an id never appended is not found"
    );
}

/// A multi-stream append whose second part expects the wrong version: the
/// whole append is refused with that part's conflict. Where the store says
/// it is atomic, the first part is not stored either; where it is not (the
/// documented fallback), the first part is, and a retry with the same ids
/// after the conflict is resolved completes it without storing it twice.
pub async fn multi_stream_append_is_all_or_nothing_where_atomic(store: Arc<dyn EventStore>) {
    let (a, b) = (fresh_stream("allA"), fresh_stream("allB"));
    store
        .append(&b, ExpectedVersion::NoStream, &events(1))
        .await
        .expect("b has one event");
    let (to_a, to_b) = (events(1), events(1));
    let parts = |expected_b| {
        [
            crate::StreamAppend {
                stream: &a,
                expected: ExpectedVersion::NoStream,
                events: &to_a,
            },
            crate::StreamAppend {
                stream: &b,
                expected: expected_b,
                events: &to_b,
            },
        ]
    };
    let refused = store
        .append_many(&parts(ExpectedVersion::Exact(5)))
        .await
        .expect_err("b is not at version 5");
    assert!(
        matches!(&refused, StoreError::WrongExpectedVersion { stream, actual: Some(0), .. } if *stream == b),
        "{refused:?}"
    );
    let stored_in_a = store.read_stream(&a, 0, 10).await.unwrap().len();
    if store.multi_stream_atomic() {
        assert_eq!(
            stored_in_a, 0,
            "nothing of a refused atomic append is stored"
        );
        assert_eq!(store.read_stream(&b, 0, 10).await.unwrap().len(), 1);
    } else {
        assert_eq!(stored_in_a, 1, "the fallback appends the parts in order");
    }
    let refused_twice = store
        .append_many(&parts(ExpectedVersion::Exact(5)))
        .await
        .expect_err("still the wrong version");
    assert!(matches!(
        refused_twice,
        StoreError::WrongExpectedVersion { .. }
    ));
    if store.multi_stream_atomic() {
        let done = store
            .append_many(&parts(ExpectedVersion::Exact(0)))
            .await
            .expect("with the right version it goes through");
        assert!(done.iter().all(|o| !o.already_appended));
        assert_eq!(store.read_stream(&a, 0, 10).await.unwrap().len(), 1);
        assert_eq!(store.read_stream(&b, 0, 10).await.unwrap().len(), 2);
    }
    let bad = store.append_many(&[]).await.expect_err("no parts");
    assert!(matches!(bad, StoreError::InvalidRequest(_)), "{bad:?}");
    let twice = [
        parts(ExpectedVersion::Any)[0],
        parts(ExpectedVersion::Any)[0],
    ];
    let bad = store.append_many(&twice).await.expect_err("a stream twice");
    assert!(matches!(bad, StoreError::InvalidRequest(_)), "{bad:?}");
}

/// Reads the global log after `start` to its end, `batch` events at a time.
async fn read_everything_after(
    store: &dyn EventStore,
    start: Option<Position>,
    batch: usize,
) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = start;
    loop {
        let page = store.read_all(after, batch).await.expect("read_all");
        let Some(last) = page.last() else { return all };
        after = Some(last.position);
        all.extend(page);
    }
}

/// Declares one `#[tokio::test]` per conformance behaviour, each running it
/// against the store `$make` evaluates to (an `Arc<dyn EventStore>`), with
/// optional extra attributes (e.g. `#[ignore = "…"]`).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr $(, #[$attr:meta])*) => {
        $crate::conformance_tests!(@each $make, [$(#[$attr])*],
            append_and_read_stream,
            conflict_on_wrong_expected_version,
            idempotent_retry,
            idempotency_rules,
            identity_is_stable,
            backlog_counts_events_after_a_position,
            global_read_from_checkpoint,
            subscription_catches_up_then_follows,
            concurrent_writers_reader_sees_every_event_once,
            metadata_round_trip,
            imported_events_keep_their_recorded_time,
            multi_stream_append_and_retry,
            multi_stream_append_is_all_or_nothing_where_atomic,
            find_in_stream_looks_through_the_whole_stream);
    };
    (@each $make:expr, $attrs:tt, $name:ident $(, $rest:ident)*) => {
        $crate::conformance_tests!(@one $make, $attrs, $name);
        $crate::conformance_tests!(@each $make, $attrs $(, $rest)*);
    };
    (@each $make:expr, $attrs:tt) => {};
    (@one $make:expr, [$(#[$attr:meta])*], $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            $crate::conformance::$name($make).await;
        }
    };
}
