//! The conformance suite against a real EventStoreDB, when `EVENTSTOREDB_URL`
//! is set (e.g. `esdb://127.0.0.1:2113?tls=false`). Without it every test here
//! is reported as ignored, with the reason, by name.

use std::sync::Arc;

use mileage_store::EventStore;
use mileage_store::eventstoredb::EsdbEventStore;

#[allow(dead_code)]
fn esdb() -> Arc<dyn EventStore> {
    let url =
        std::env::var("EVENTSTOREDB_URL").expect("EVENTSTOREDB_URL was set when this was compiled");
    Arc::new(
        EsdbEventStore::connect(&url).expect("EVENTSTOREDB_URL should be a valid EventStoreDB URL"),
    )
}

mileage_store::conformance_tests!(
    esdb(),
    #[cfg_attr(not(eventstoredb_url_set), ignore = "skipped: EVENTSTOREDB_URL is not set (no EventStoreDB server here)")]
);
