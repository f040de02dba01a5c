//! What every use case commands through: the one executor, the person-key
//! store and the id allocator.

use std::sync::Arc;

use mileage_store::executor::Executor;
use mileage_store::keys::KeyStore;

use crate::ids::IdAllocator;

/// What every use case commands through.
#[derive(Clone)]
pub(crate) struct Context {
    /// Runs commands against the event store (load, decide, append).
    pub(crate) executor: Arc<Executor>,
    /// Per-person keys that seal personal data.
    pub(crate) keys: Arc<dyn KeyStore>,
    /// Sequential ids.
    pub(crate) ids: Arc<IdAllocator>,
}
