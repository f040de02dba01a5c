//! The service's routes, one module per resource.

pub mod health;

use std::sync::Arc;

use axum::Router;
use mileage_store::EventStore;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The event store port.
    pub store: Arc<dyn EventStore>,
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    Router::new().merge(health::router()).with_state(state)
}
