//! Settings from an optional TOML file (`MILEAGE_CONFIG`) and the
//! environment (which wins), checked before any port opens.

use std::net::SocketAddr;
use std::time::Duration;

use mileage_service::settings::{
    JwtKeys, RateLimits, TokenRules, jwt_keys, layered, positive, postgres_url, rate_limits,
    socket_addr, token_rules,
};
use serde::Deserialize;

/// What the query API needs to start. Secrets never print.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where to listen (`QUERY_API_ADDR`, default `127.0.0.1:8084`).
    pub addr: SocketAddr,
    /// The read models (`READ_DATABASE_URL`, default `DATABASE_URL`). The
    /// query API reads nothing else: not the event store, whichever it is.
    pub read_database_url: String,
    /// The person keys that open the read models' personal data
    /// (`DATABASE_URL`, where the command API keeps them; the read database
    /// when only `READ_DATABASE_URL` is set).
    pub keys_database_url: String,
    /// Bearer-token key (`JWT_HS256_SECRET` or `JWT_RS256_PUBLIC_KEY`).
    pub jwt: JwtKeys,
    /// What tokens must also say (`JWT_ISSUER`, `JWT_AUDIENCE`,
    /// `JWT_MAX_LIFETIME_SECS`).
    pub token_rules: TokenRules,
    /// Refused tokens per client address
    /// (`RATE_LIMIT_AUTH_FAILURES_PER_MINUTE`, 0 for off;
    /// `TRUSTED_CLIENT_IP_HEADER` behind a gateway).
    pub rate_limits: RateLimits,
    /// Longest wait for a requested position (`QUERY_WAIT_MS`, 2000).
    pub wait_limit: Duration,
    /// Where the admin page sends commands (`COMMAND_API_URL`, default
    /// `http://127.0.0.1:8081`; empty for the same origin, behind a gateway).
    pub command_api_url: String,
    /// Read-database connections (`QUERY_POOL_SIZE`, 16).
    pub pool_size: usize,
}

#[derive(Deserialize, Default)]
struct Raw {
    query_api_addr: Option<String>,
    database_url: Option<String>,
    read_database_url: Option<String>,
    jwt_hs256_secret: Option<String>,
    jwt_rs256_public_key: Option<String>,
    jwt_key_id: Option<String>,
    jwt_previous_hs256_secret: Option<String>,
    jwt_previous_rs256_public_key: Option<String>,
    jwt_previous_key_id: Option<String>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    jwt_max_lifetime_secs: Option<i64>,
    rate_limit_auth_failures_per_minute: Option<i64>,
    trusted_client_ip_header: Option<String>,
    query_wait_ms: Option<i64>,
    command_api_url: Option<String>,
    query_pool_size: Option<i64>,
}

const KEYS: [&str; 17] = [
    "JWT_KEY_ID",
    "JWT_PREVIOUS_HS256_SECRET",
    "JWT_PREVIOUS_RS256_PUBLIC_KEY",
    "JWT_PREVIOUS_KEY_ID",
    "RATE_LIMIT_AUTH_FAILURES_PER_MINUTE",
    "TRUSTED_CLIENT_IP_HEADER",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_MAX_LIFETIME_SECS",
    "QUERY_API_ADDR",
    "DATABASE_URL",
    "READ_DATABASE_URL",
    "JWT_HS256_SECRET",
    "JWT_RS256_PUBLIC_KEY",
    "QUERY_WAIT_MS",
    "COMMAND_API_URL",
    "QUERY_POOL_SIZE",
];

impl Settings {
    /// Reads the settings; the error names the setting that is wrong.
    pub fn load() -> anyhow::Result<Self> {
        let raw: Raw = layered(&KEYS)?;
        let addr = socket_addr("query_api_addr", raw.query_api_addr, "127.0.0.1:8084")?;
        let keys_database_url = raw
            .database_url
            .clone()
            .map(|url| postgres_url("database_url", Some(url)))
            .transpose()?;
        let read_database_url = match raw.read_database_url {
            Some(url) => postgres_url("read_database_url", Some(url))?,
            None => postgres_url("database_url", raw.database_url)?,
        };
        let keys_database_url = keys_database_url.unwrap_or_else(|| read_database_url.clone());
        let command_api_url = raw
            .command_api_url
            .unwrap_or_else(|| "http://127.0.0.1:8081".into());
        anyhow::ensure!(
            command_api_url.is_empty()
                || command_api_url.starts_with("http://")
                || command_api_url.starts_with("https://"),
            "command_api_url={command_api_url:?} must be empty or an http(s) URL"
        );
        Ok(Self {
            addr,
            read_database_url,
            keys_database_url,
            jwt: jwt_keys(
                (raw.jwt_hs256_secret, raw.jwt_rs256_public_key),
                raw.jwt_key_id,
                (
                    raw.jwt_previous_hs256_secret,
                    raw.jwt_previous_rs256_public_key,
                ),
                raw.jwt_previous_key_id,
            )?,
            token_rules: token_rules(raw.jwt_issuer, raw.jwt_audience, raw.jwt_max_lifetime_secs)?,
            rate_limits: rate_limits(
                None,
                None,
                raw.rate_limit_auth_failures_per_minute,
                raw.trusted_client_ip_header,
            )?,
            wait_limit: Duration::from_millis(positive("query_wait_ms", raw.query_wait_ms, 2000)?),
            command_api_url: command_api_url.trim_end_matches('/').to_owned(),
            pool_size: usize::try_from(positive("query_pool_size", raw.query_pool_size, 16)?)?,
        })
    }
}
