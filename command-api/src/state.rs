//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use mileage_store::executor::Executor;
use mileage_store::keys::KeyStore;

use crate::ids::IdAllocator;
use crate::membership::JoinGuard;
use mileage_service::auth::Verifier;

/// Shared application state: the ports and the id allocator.
#[derive(Clone)]
pub struct AppState {
    /// Runs commands against the event store (load, decide, append).
    pub executor: Arc<Executor>,
    /// Per-person keys that seal personal data.
    pub keys: Arc<dyn KeyStore>,
    /// Sequential ids.
    pub ids: Arc<IdAllocator>,
    /// The release's guarded call to the member context's join.
    pub join: Arc<JoinGuard>,
    /// Checks bearer tokens.
    pub verifier: Arc<Verifier>,
    /// Secret of the phone-number index (see `mileage_domain::pii::phone_index`).
    pub phone_secret: Arc<[u8]>,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.verifier)
    }
}
