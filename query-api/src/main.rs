//! `query-api`: will serve the read models and the admin page; for now it
//! answers its liveness probe so the local stack and the gateway can be wired.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::var("QUERY_API_ADDR").unwrap_or_else(|_| "127.0.0.1:8084".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on QUERY_API_ADDR={addr}: {e}"))?;
    tracing::info!(%addr, "query-api listening");
    let app = Router::new().route("/health", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
