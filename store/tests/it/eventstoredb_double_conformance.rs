//! The conformance suite against the EventStoreDB wire double: the double
//! answers by the server's rules where the suite looks (idempotency,
//! expectations, positions), so the suite's EventStoreDB branches run on
//! every machine, not only where `EVENTSTOREDB_URL` names a server.

use std::sync::Arc;

use mileage_store::EventStore;
use mileage_store::esdb_double::Double;
use mileage_store::eventstoredb::EsdbEventStore;

/// The adapter on a fresh double reporting `version`.
async fn on_double(version: &str) -> Arc<dyn EventStore> {
    let double = Double::start().await;
    double.behave(|b| b.version = Some(version.to_owned()));
    Arc::new(EsdbEventStore::connect(&double.url()).expect("the double's URL"))
}

/// KurrentDB 25.1 and later: a command's parts in one atomic append.
mod atomic {
    use super::on_double;
    mileage_store::conformance_tests!(on_double(mileage_store::esdb_double::VERSION).await);
}

/// Before 25.1: a command's parts appended in order.
mod in_order {
    use super::on_double;
    mileage_store::conformance_tests!(
        on_double(mileage_store::esdb_double::VERSION_BEFORE_SESSIONS).await
    );
}
