//! The conformance suite against the EventStoreDB wire double: the double
//! answers by the server's rules where the suite looks (idempotency,
//! expectations, positions), so the suite's EventStoreDB branches run on
//! every machine, not only where `EVENTSTOREDB_URL` names a server.

use std::sync::Arc;

use mileage_store::EventStore;
use mileage_store::esdb_double::Double;
use mileage_store::eventstoredb::EsdbEventStore;

/// The adapter on a fresh double.
async fn on_double() -> Arc<dyn EventStore> {
    let double = Double::start().await;
    Arc::new(EsdbEventStore::connect(&double.url()).expect("the double's URL"))
}

mileage_store::conformance_tests!(on_double().await);
