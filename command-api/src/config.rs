//! Settings from the environment, checked before any port opens.

use std::net::SocketAddr;

/// What the service needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen (`COMMAND_API_ADDR`, default `127.0.0.1:8081`).
    pub addr: SocketAddr,
    /// The PostgreSQL event store (`DATABASE_URL`).
    pub database_url: String,
}

impl Settings {
    /// Reads the settings; the error names the setting that is wrong.
    pub fn from_env() -> anyhow::Result<Self> {
        let addr = std::env::var("COMMAND_API_ADDR").unwrap_or_else(|_| "127.0.0.1:8081".into());
        let addr = addr.parse().map_err(|e| {
            anyhow::anyhow!("COMMAND_API_ADDR={addr:?} is not a socket address: {e}")
        })?;
        let database_url = std::env::var("DATABASE_URL").map_err(|_| {
            anyhow::anyhow!("DATABASE_URL is not set (postgres://user@host:port/db)")
        })?;
        Ok(Self { addr, database_url })
    }
}
