//! How long one call of the EventStoreDB adapter takes, by the path it
//! goes: through the `kurrentdb` client (an append, a stream read) and
//! through the adapter's own `AppendSession` channel (an atomic append of
//! two streams), against the in-process wire double on 127.0.0.1, one call
//! at a time. Prints medians; asserts nothing.
//!
//! The client as released does not set `TCP_NODELAY` on its connections:
//! a request written in two pieces then waits for the server's delayed
//! acknowledgement (about 40 ms on Linux, as a real server's kernel delays
//! it) before its second piece goes out, and every call takes 40 ms. The
//! workspace patches the client (`store/vendor/kurrentdb`); this shows
//! every path at well under a millisecond, and 40 ms again if the patch is
//! lost.
//!
//! `cargo bench -p mileage-store --bench eventstoredb_calls`
//! Settings: `BENCH_CALLS` per path (default 50).

use std::time::{Duration, Instant};

use mileage_store::conformance::{event, fresh_stream};
use mileage_store::esdb_double::Double;
use mileage_store::eventstoredb::EsdbEventStore;
use mileage_store::{EventStore, ExpectedVersion, StreamAppend};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let double = Double::start().await;
    let store = EsdbEventStore::connect(&double.url()).expect("the double's URL");
    store.identity().await.expect("the double answers");
    let stream = fresh_stream("calls");
    let (mut appends, mut reads, mut sessions) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..calls as u64 {
        let expected = n
            .checked_sub(1)
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let started = Instant::now();
        store
            .append(&stream, expected, &[event("Called", n)])
            .await
            .expect("an append");
        appends.push(started.elapsed());
        let started = Instant::now();
        store.read_stream(&stream, 0, 10).await.expect("a read");
        reads.push(started.elapsed());
        let (a, b) = (fresh_stream("a"), fresh_stream("b"));
        let (to_a, to_b) = ([event("A", n)], [event("B", n)]);
        let parts = [
            StreamAppend {
                stream: &a,
                expected: ExpectedVersion::NoStream,
                events: &to_a,
            },
            StreamAppend {
                stream: &b,
                expected: ExpectedVersion::NoStream,
                events: &to_b,
            },
        ];
        let started = Instant::now();
        store.append_many(&parts).await.expect("a session");
        sessions.push(started.elapsed());
    }
    println!("EventStoreDB adapter on the wire double, one call at a time, median of {calls}");
    for (path, samples) in [
        ("append, kurrentdb client", appends),
        ("stream read, kurrentdb client", reads),
        ("atomic append of two streams, AppendSession", sessions),
    ] {
        println!(
            "{path:<46} {:>8.2} ms",
            median(samples).as_secs_f64() * 1000.0
        );
    }
}
