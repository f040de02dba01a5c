//! Settings from the environment, checked before any port opens.

use std::net::SocketAddr;
use std::time::Duration;

use crate::membership::GuardSettings;

/// Shortest phone-index secret accepted, in bytes.
const MIN_SECRET_LEN: usize = 16;
/// Shortest HS256 secret accepted, in bytes (RFC 7518: at least the hash size).
const MIN_JWT_SECRET_LEN: usize = 32;

/// How bearer tokens are checked.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with a shared secret (`JWT_HS256_SECRET`).
    Hs256(String),
    /// RS256 with a PEM public key (`JWT_RS256_PUBLIC_KEY`).
    Rs256(String),
}

/// What the service needs to start.
#[derive(Clone)]
pub struct Settings {
    /// Where to listen (`COMMAND_API_ADDR`, default `127.0.0.1:8081`).
    pub addr: SocketAddr,
    /// The PostgreSQL event store (`DATABASE_URL`).
    pub database_url: String,
    /// Keys the phone-number uniqueness index (`PHONE_INDEX_SECRET`, at least
    /// 16 bytes). Must stay the same for the life of the log.
    pub phone_secret: String,
    /// Bearer-token key.
    pub jwt: JwtKey,
    /// The release's join: where (`MEMBER_API_URL`, in-process when unset),
    /// timeout (`JOIN_TIMEOUT_MS`, 610), breaker (`BREAKER_FAILURES`, 3;
    /// `BREAKER_OPEN_SECS`, 5).
    pub join: GuardSettings,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
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
        let phone_secret = std::env::var("PHONE_INDEX_SECRET")
            .ok()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .ok_or_else(|| {
                anyhow::anyhow!("PHONE_INDEX_SECRET must be set to at least {MIN_SECRET_LEN} bytes")
            })?;
        let jwt = match (
            std::env::var("JWT_HS256_SECRET"),
            std::env::var("JWT_RS256_PUBLIC_KEY"),
        ) {
            (Ok(secret), Err(_)) if secret.len() >= MIN_JWT_SECRET_LEN => JwtKey::Hs256(secret),
            (Ok(_), Err(_)) => {
                anyhow::bail!("JWT_HS256_SECRET must be at least {MIN_JWT_SECRET_LEN} bytes")
            }
            (Err(_), Ok(pem)) => JwtKey::Rs256(pem),
            (Ok(_), Ok(_)) => {
                anyhow::bail!("set only one of JWT_HS256_SECRET and JWT_RS256_PUBLIC_KEY")
            }
            (Err(_), Err(_)) => {
                anyhow::bail!("JWT_HS256_SECRET or JWT_RS256_PUBLIC_KEY must be set")
            }
        };
        let member_api_url = match std::env::var("MEMBER_API_URL") {
            Ok(url) if url.starts_with("http://") || url.starts_with("https://") => Some(url),
            Ok(url) => anyhow::bail!("MEMBER_API_URL={url:?} must be an http:// or https:// URL"),
            Err(_) => None,
        };
        let join = GuardSettings {
            member_api_url,
            timeout: Duration::from_millis(number("JOIN_TIMEOUT_MS", 610)?),
            failures_to_open: u32::try_from(number("BREAKER_FAILURES", 3)?)
                .map_err(|_| anyhow::anyhow!("BREAKER_FAILURES is too large"))?,
            open_for: Duration::from_secs(number("BREAKER_OPEN_SECS", 5)?),
        };
        Ok(Self {
            addr,
            database_url,
            phone_secret,
            jwt,
            join,
        })
    }
}

/// A positive number from the environment, or the default.
fn number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(raw) => raw
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| anyhow::anyhow!("{name}={raw:?} must be a positive whole number")),
    }
}
