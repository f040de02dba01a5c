//! Settings from an optional TOML file (`MILEAGE_CONFIG`) and the
//! environment (which wins), checked before any port opens.

use std::net::SocketAddr;
use std::time::Duration;

use mileage_service::settings::{
    JwtKeys, RateLimits, RawRateLimits, RawTokens, TokenRules, layered, positive, postgres_url,
    shared, socket_addr,
};
use secrecy::SecretString;
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
    /// The command API's `PHONE_INDEX_SECRET`, for the search by number
    /// (which looks the number up by its keyed index, never stored in
    /// clear); unset, that search answers 503 saying so.
    pub phone_secret: Option<SecretString>,
}

#[derive(Deserialize, Default)]
struct Raw {
    query_api_addr: Option<String>,
    database_url: Option<String>,
    read_database_url: Option<String>,
    /// Read by [`mileage_service::settings::shared`].
    #[serde(skip)]
    tokens: RawTokens,
    /// Read by [`mileage_service::settings::shared`].
    #[serde(skip)]
    limits: RawRateLimits,
    query_wait_ms: Option<i64>,
    command_api_url: Option<String>,
    query_pool_size: Option<i64>,
    phone_index_secret: Option<String>,
}

/// The environment variables read (besides the shared ones,
/// [`mileage_service::settings::shared`]).
const KEYS: [&str; 7] = [
    "QUERY_API_ADDR",
    "DATABASE_URL",
    "READ_DATABASE_URL",
    "QUERY_WAIT_MS",
    "COMMAND_API_URL",
    "QUERY_POOL_SIZE",
    "PHONE_INDEX_SECRET",
];

impl Settings {
    /// Reads the settings; the error names the setting that is wrong.
    pub fn load() -> anyhow::Result<Self> {
        let (tokens, limits) = shared()?;
        let raw = Raw {
            tokens,
            limits,
            ..layered(&KEYS)?
        };
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
        let phone_secret = raw
            .phone_index_secret
            .map(|secret| {
                anyhow::ensure!(
                    secret.len() >= 16,
                    "phone_index_secret must be at least 16 bytes (the command API's)"
                );
                Ok(SecretString::from(secret))
            })
            .transpose()?;
        let (jwt, token_rules) = raw.tokens.check()?;
        // The read routes limit refused tokens only; the command quotas,
        // which a shared file may set, are the command API's.
        let rate_limits = RateLimits {
            joins_per_minute: None,
            commands_per_second: None,
            ..raw.limits.check()?
        };
        Ok(Self {
            addr,
            read_database_url,
            keys_database_url,
            jwt,
            token_rules,
            rate_limits,
            wait_limit: Duration::from_millis(positive("query_wait_ms", raw.query_wait_ms, 2000)?),
            command_api_url: command_api_url.trim_end_matches('/').to_owned(),
            pool_size: usize::try_from(positive("query_pool_size", raw.query_pool_size, 16)?)?,
            phone_secret,
        })
    }
}
