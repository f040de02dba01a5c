//! What every Mileage service shares, so the command API, the projector and
//! the query API start, log, measure, authenticate, fail and stop the same
//! way: layered [`settings`], [`telemetry`] (logs and the Prometheus
//! recorder), bearer-token [`auth`], the problem+json [`error`] with its
//! [`extract`]ors, [`correlation`] ids, the [`ops`] router (`/health`,
//! `/ready`, `/metrics`, `/openapi.json`), [`shutdown`] and [`serve`].
//!
//! No service depends on another service crate: what two of them need lives
//! here (HTTP plumbing), in `mileage-store` (the log) or in
//! `mileage-read-model` (the read side's tables).

pub mod auth;
pub mod correlation;
pub mod docs;
pub mod error;
pub mod extract;
pub mod limits;
pub mod ops;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod traces;

pub use error::ApiError;

/// Binds `addr`, naming it in the error (so a taken port says which).
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// Serves `app` on `listener` until `stop` resolves, then lets in-flight
/// requests finish.
///
/// Paths are normalised before routing, as the source document's clients
/// write them: `//dormantMembers/1` and `/managerpages/` reach
/// `/dormantMembers/1` and `/managerpages`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::ServiceExt;
    use tower::Layer;
    let app = tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash().layer(app);
    // The peer address reaches handlers and middleware (rate limits).
    axum::serve(
        listener,
        ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
            std::net::SocketAddr,
        >(app),
    )
    .with_graceful_shutdown(stop)
    .await
}
