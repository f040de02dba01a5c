//! What every handler can reach: the use cases' shared context, the member
//! context, the guarded join of the release, and the token verifier.

use std::sync::Arc;

use axum::extract::FromRef;
use mileage_domain::member::PointLimits;
use mileage_service::auth::Verifier;

use crate::context::Context;
use crate::members::Members;
use crate::release_guard::JoinGuard;

/// Shared application state.
#[derive(Clone)]
pub(crate) struct AppState {
    /// What the dormant-target use cases command through.
    pub(crate) ctx: Context,
    /// The member context's use cases.
    pub(crate) members: Arc<Members>,
    /// The release's guarded call to the member context's join.
    pub(crate) join: Arc<JoinGuard>,
    /// Checks bearer tokens.
    pub(crate) verifier: Arc<Verifier>,
    /// The operator's limits on points, passed in with each points command.
    pub(crate) points: PointLimits,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.verifier)
    }
}
