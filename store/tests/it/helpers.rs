//! One-line setup for store tests.

use std::sync::Arc;

use mileage_store::EventStore;
use mileage_store::postgres::PgEventStore;
use mileage_store::testing::fresh_database;

/// A PostgreSQL event store on a fresh database of the test server.
pub(crate) async fn pg_store() -> PgEventStore {
    let url = fresh_database().await;
    PgEventStore::connect(&url)
        .await
        .expect("the test database should accept the store")
}

/// The same, behind the port.
pub(crate) async fn pg_dyn() -> Arc<dyn EventStore> {
    Arc::new(pg_store().await)
}

/// A raw connection to a store's database, for tests that must reach under
/// the adapter (open transactions, corrupt rows).
pub(crate) async fn raw_client(store: &PgEventStore) -> deadpool_postgres::Object {
    store.pool().get().await.expect("a pooled connection")
}
