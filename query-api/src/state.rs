//! What every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use deadpool_postgres::Pool;
use mileage_service::auth::Verifier;
use mileage_store::keys::KeyStore;
use secrecy::SecretString;

use crate::progress::Progress;

/// Shared state of the query API.
#[derive(Clone)]
pub struct QueryState {
    /// Read-model connections.
    pub pool: Pool,
    /// The person keys: personal data in the read models is sealed and
    /// opened per read with the keys as they are then.
    pub keys: Arc<dyn KeyStore>,
    /// Checks bearer tokens.
    pub verifier: Arc<Verifier>,
    /// Each projection's checkpoint.
    pub progress: Progress,
    /// Longest read-your-writes wait.
    pub wait_limit: Duration,
    /// Where the admin page sends commands.
    pub command_api_url: Arc<str>,
    /// Keys the phone-number index the search by number looks numbers up
    /// by; `None` when not configured.
    pub phone_secret: Option<Arc<SecretString>>,
}

impl FromRef<QueryState> for Arc<Verifier> {
    fn from_ref(state: &QueryState) -> Self {
        Arc::clone(&state.verifier)
    }
}
