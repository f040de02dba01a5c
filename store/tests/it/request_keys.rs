//! Request keys on PostgreSQL: a keyed command's append writes its key in
//! its own statement, and the first append or refusal of a key wins.

use mileage_store::conformance::event;
use mileage_store::{EventStore, ExpectedVersion, NewEvent, RequestKey, StoreError, StreamAppend};
use uuid::Uuid;

use crate::helpers::{pg_store, raw_client};

/// `events` with `key` on the first, as the executor sends a keyed
/// command's append.
fn keyed(key: RequestKey, mut events: Vec<NewEvent>) -> Vec<NewEvent> {
    events[0].request = Some(key);
    events
}

fn request(key: Uuid) -> RequestKey {
    RequestKey {
        key,
        request: Uuid::new_v4(),
    }
}

/// The key's row: its request, and the transaction that wrote it (as the
/// events table numbers transactions).
async fn row(client: &tokio_postgres::Client, key: Uuid) -> Option<(Uuid, i64)> {
    client
        .query_opt(
            "SELECT request, xmin::text::bigint FROM request_keys WHERE key = $1",
            &[&key],
        )
        .await
        .expect("request_keys")
        .map(|r| (r.get(0), r.get(1)))
}

#[tokio::test]
async fn a_keyed_append_writes_its_key_in_its_own_transaction_and_a_second_request_is_stopped() {
    let store = pg_store().await;
    let client = raw_client(&store).await;
    let first = request(Uuid::new_v4());
    let appended = store
        .append(
            "member-1",
            ExpectedVersion::NoStream,
            &keyed(first, vec![event("A", 1), event("B", 2)]),
        )
        .await
        .expect("the first request's append");
    let (request_id, xid) = row(&client, first.key).await.expect("the key's row");
    assert_eq!(request_id, first.request);
    assert_eq!(
        u64::try_from(xid).unwrap(),
        appended.position.commit % (1 << 32),
        "written by the append's transaction"
    );

    // Another request under the key, on another stream: nothing appended.
    let other = RequestKey {
        key: first.key,
        request: Uuid::new_v4(),
    };
    let refused = store
        .append(
            "member-2",
            ExpectedVersion::NoStream,
            &keyed(other, vec![event("A", 3)]),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::RequestKeyUsed { key }) if key == first.key),
        "{refused:?}"
    );
    assert!(
        store
            .read_stream("member-2", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The same request's next append (a command that appends twice) goes
    // on; the key stays the first append's.
    store
        .append(
            "member-3",
            ExpectedVersion::NoStream,
            &keyed(first, vec![event("C", 4)]),
        )
        .await
        .expect("the same request's second append");
    assert_eq!(row(&client, first.key).await.map(|r| r.1), Some(xid));
}

#[tokio::test]
async fn a_kept_refusal_stops_every_append_of_its_key() {
    let store = pg_store().await;
    let client = raw_client(&store).await;
    let refused = request(Uuid::new_v4());
    client
        .execute(
            "INSERT INTO request_keys (key, request, status) VALUES ($1, $2, 422)",
            &[&refused.key, &refused.request],
        )
        .await
        .unwrap();
    let again = store
        .append(
            "member-1",
            ExpectedVersion::NoStream,
            &keyed(refused, vec![event("A", 1)]),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::RequestKeyUsed { .. })),
        "{again:?}"
    );
    let parts = [
        StreamAppend {
            stream: "member-1",
            expected: ExpectedVersion::NoStream,
            events: &keyed(refused, vec![event("A", 2)]),
        },
        StreamAppend {
            stream: "member-2",
            expected: ExpectedVersion::NoStream,
            events: &[event("B", 3)],
        },
    ];
    let many = store.append_many(&parts).await;
    assert!(
        matches!(many, Err(StoreError::RequestKeyUsed { .. })),
        "{many:?}"
    );
    assert_eq!(
        store.head_position().await.unwrap(),
        None,
        "nothing appended"
    );
}

#[tokio::test]
async fn an_append_refused_for_its_version_writes_no_key() {
    let store = pg_store().await;
    let client = raw_client(&store).await;
    store
        .append("member-1", ExpectedVersion::NoStream, &[event("A", 1)])
        .await
        .unwrap();
    for (expected, events) in [
        (ExpectedVersion::Exact(5), vec![event("B", 2)]),
        (
            ExpectedVersion::Exact(5),
            vec![event("B", 3), event("C", 4)],
        ),
        (ExpectedVersion::NoStream, vec![event("B", 5)]),
    ] {
        let key = request(Uuid::new_v4());
        let refused = store
            .append("member-1", expected, &keyed(key, events))
            .await;
        assert!(
            matches!(refused, Err(StoreError::WrongExpectedVersion { .. })),
            "{refused:?}"
        );
        assert_eq!(row(&client, key.key).await, None, "{expected:?}");
    }
}

/// Many keyed appends at once (the group commit writes them together),
/// two requests per key: for every key one request's events are in the
/// log, the other request is stopped, and the key names the one appended.
#[tokio::test]
async fn of_two_requests_under_one_key_at_once_exactly_one_is_appended() {
    let store = pg_store().await;
    let client = raw_client(&store).await;
    let keys: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    let attempts = keys.iter().enumerate().flat_map(|(n, key)| {
        [0, 1].map(|which| {
            let store = &store;
            let request = request(*key);
            async move {
                let stream = format!("member-{n}-{which}");
                let outcome = store
                    .append(
                        &stream,
                        ExpectedVersion::NoStream,
                        &keyed(request, vec![event("A", 1)]),
                    )
                    .await;
                (n, request, stream, outcome)
            }
        })
    });
    let outcomes = futures::future::join_all(attempts).await;
    for (n, key) in keys.iter().enumerate() {
        let pair: Vec<_> = outcomes.iter().filter(|o| o.0 == n).collect();
        let won: Vec<_> = pair.iter().filter(|o| o.3.is_ok()).collect();
        assert_eq!(
            won.len(),
            1,
            "key {n}: {:?}",
            pair.iter().map(|o| &o.3).collect::<Vec<_>>()
        );
        for lost in pair.iter().filter(|o| o.3.is_err()) {
            assert!(
                matches!(lost.3, Err(StoreError::RequestKeyUsed { .. })),
                "{:?}",
                lost.3
            );
            assert!(store.read_stream(&lost.2, 0, 10).await.unwrap().is_empty());
        }
        assert_eq!(
            row(&client, *key).await.map(|r| r.0),
            Some(won[0].1.request),
            "key {n} names the request appended"
        );
    }
}
