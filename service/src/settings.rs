//! Settings every service reads the same way: an optional TOML file named by
//! `MILEAGE_CONFIG`, overridden by environment variables of the same names in
//! upper case, checked before any port opens. Each service declares its own
//! typed settings and builds them from these checked pieces; an error names
//! the setting at fault and never shows a secret's value.

use std::num::NonZeroU32;
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use mileage_store::EventStore;
use mileage_store::eventstoredb::EsdbEventStore;
use mileage_store::postgres::PgEventStore;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

pub use crate::limits::RateLimits;

/// Shortest HS256 secret accepted, in bytes (RFC 7518: at least the hash size).
const MIN_JWT_SECRET_LEN: usize = 32;

/// The environment variable naming the optional TOML settings file.
pub const CONFIG_FILE_VAR: &str = "MILEAGE_CONFIG";

/// The token settings as written: part of each service's settings, read by
/// [`shared`], so every key is declared once, here.
#[derive(serde::Deserialize, Default)]
pub struct RawTokens {
    pub jwt_hs256_secret: Option<String>,
    pub jwt_rs256_public_key: Option<String>,
    pub jwt_key_id: Option<String>,
    pub jwt_previous_hs256_secret: Option<String>,
    pub jwt_previous_rs256_public_key: Option<String>,
    pub jwt_previous_key_id: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_max_lifetime_secs: Option<i64>,
}

impl RawTokens {
    /// The environment variables these are read from.
    pub const KEYS: [&'static str; 9] = [
        "JWT_HS256_SECRET",
        "JWT_RS256_PUBLIC_KEY",
        "JWT_KEY_ID",
        "JWT_PREVIOUS_HS256_SECRET",
        "JWT_PREVIOUS_RS256_PUBLIC_KEY",
        "JWT_PREVIOUS_KEY_ID",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWT_MAX_LIFETIME_SECS",
    ];

    /// The checked keys and rules (see [`jwt_keys`] and [`token_rules`]).
    pub fn check(self) -> anyhow::Result<(JwtKeys, TokenRules)> {
        let keys = jwt_keys(
            (self.jwt_hs256_secret, self.jwt_rs256_public_key),
            self.jwt_key_id,
            (
                self.jwt_previous_hs256_secret,
                self.jwt_previous_rs256_public_key,
            ),
            self.jwt_previous_key_id,
        )?;
        let rules = token_rules(
            self.jwt_issuer,
            self.jwt_audience,
            self.jwt_max_lifetime_secs,
        )?;
        Ok((keys, rules))
    }
}

/// The rate-limit settings as written, read like [`RawTokens`].
#[derive(serde::Deserialize, Default)]
pub struct RawRateLimits {
    /// `RATE_LIMIT_JOINS_PER_MINUTE` (the command API's public join).
    pub rate_limit_joins_per_minute: Option<i64>,
    /// `RATE_LIMIT_COMMANDS_PER_SECOND` (the command API's callers).
    pub rate_limit_commands_per_second: Option<i64>,
    /// `RATE_LIMIT_AUTH_FAILURES_PER_MINUTE` (both APIs).
    pub rate_limit_auth_failures_per_minute: Option<i64>,
    pub trusted_client_ip_header: Option<String>,
}

impl RawRateLimits {
    /// The environment variables these are read from.
    pub const KEYS: [&'static str; 4] = [
        "RATE_LIMIT_JOINS_PER_MINUTE",
        "RATE_LIMIT_COMMANDS_PER_SECOND",
        "RATE_LIMIT_AUTH_FAILURES_PER_MINUTE",
        "TRUSTED_CLIENT_IP_HEADER",
    ];

    /// The checked limits (see [`rate_limits`]).
    pub fn check(self) -> anyhow::Result<RateLimits> {
        rate_limits(
            self.rate_limit_joins_per_minute,
            self.rate_limit_commands_per_second,
            self.rate_limit_auth_failures_per_minute,
            self.trusted_client_ip_header,
        )
    }
}

/// Reads the settings every service shares ([`RawTokens`] and
/// [`RawRateLimits`]) from the same file and environment as its own (see
/// [`layered`]); read on their own, so an error names the key at fault.
pub fn shared() -> anyhow::Result<(RawTokens, RawRateLimits)> {
    Ok((layered(&RawTokens::KEYS)?, layered(&RawRateLimits::KEYS)?))
}

/// How bearer tokens are checked. The secret never prints (`Debug` redacts).
#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HS256 with a shared secret (`JWT_HS256_SECRET`).
    Hs256(SecretString),
    /// RS256 with a PEM public key (`JWT_RS256_PUBLIC_KEY`).
    Rs256(String),
}

impl JwtKey {
    /// An HS256 key from a secret held in clear (tests, `mint-token`).
    pub fn hs256(secret: &str) -> Self {
        Self::Hs256(SecretString::from(secret))
    }

    /// The HS256 secret's bytes, for minting tokens; `None` for RS256.
    pub fn hs256_secret(&self) -> Option<&[u8]> {
        match self {
            Self::Hs256(secret) => Some(secret.expose_secret().as_bytes()),
            Self::Rs256(_) => None,
        }
    }
}

/// The keys bearer tokens may be signed with: the current one and, during a
/// rotation, the one before it. Tokens name their key with the `kid` header;
/// a token without one is tried against each key.
#[derive(Clone, Debug)]
pub struct JwtKeys {
    /// The key new tokens are signed with.
    pub current: JwtKey,
    /// The `kid` of the current key's tokens (`JWT_KEY_ID`), if named.
    pub current_id: Option<String>,
    /// The key being retired and its `kid` (`JWT_PREVIOUS_KEY_ID` with
    /// `JWT_PREVIOUS_HS256_SECRET` or `JWT_PREVIOUS_RS256_PUBLIC_KEY`):
    /// its tokens stay valid until it is removed.
    pub previous: Option<(String, JwtKey)>,
}

impl From<JwtKey> for JwtKeys {
    /// One key, not named: every token is checked against it.
    fn from(current: JwtKey) -> Self {
        Self {
            current,
            current_id: None,
            previous: None,
        }
    }
}

/// The token keys from the current key's settings (see [`jwt_key`]) and
/// `jwt_key_id`, and, during a rotation, `jwt_previous_hs256_secret` or
/// `jwt_previous_rs256_public_key` with `jwt_previous_key_id`. Both keys
/// must then be named, differently.
pub fn jwt_keys(
    current: (Option<String>, Option<String>),
    current_id: Option<String>,
    previous: (Option<String>, Option<String>),
    previous_id: Option<String>,
) -> anyhow::Result<JwtKeys> {
    let named = |name: &str, id: Option<String>| match id {
        Some(id) if id.trim().is_empty() => anyhow::bail!("{name} is set but empty"),
        other => Ok(other),
    };
    let current_key = jwt_key(current.0, current.1)?;
    let current_id = named("jwt_key_id", current_id)?;
    let previous_id = named("jwt_previous_key_id", previous_id)?;
    let previous = match previous {
        (None, None) => {
            anyhow::ensure!(
                previous_id.is_none(),
                "jwt_previous_key_id is set without jwt_previous_hs256_secret or jwt_previous_rs256_public_key"
            );
            None
        }
        (secret, pem) => {
            let key = prefixed_jwt_key("jwt_previous", secret, pem)?;
            let (Some(previous_id), Some(current_id)) = (&previous_id, &current_id) else {
                anyhow::bail!(
                    "jwt_key_id and jwt_previous_key_id must both be set during a key rotation"
                );
            };
            anyhow::ensure!(
                previous_id != current_id,
                "jwt_key_id and jwt_previous_key_id must differ"
            );
            Some((previous_id.clone(), key))
        }
    };
    Ok(JwtKeys {
        current: current_key,
        current_id,
        previous,
    })
}

/// Settings of type `T` from the TOML file named by `MILEAGE_CONFIG` (when
/// set), overridden by the environment variables `keys` (upper-case names
/// of `T`'s lower-case fields).
pub fn layered<T: DeserializeOwned>(keys: &[&str]) -> anyhow::Result<T> {
    let mut figment = Figment::new();
    if let Some(path) = std::env::var_os(CONFIG_FILE_VAR) {
        let path = std::path::PathBuf::from(path);
        anyhow::ensure!(
            path.is_file(),
            "{CONFIG_FILE_VAR}={} is not a readable file",
            path.display()
        );
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Env::raw().only(keys))
        .extract()
        .map_err(|e| anyhow::anyhow!("bad setting: {e}"))
}

/// A socket address setting called `name`, or `default` when unset.
pub fn socket_addr(
    name: &str,
    value: Option<String>,
    default: &str,
) -> anyhow::Result<std::net::SocketAddr> {
    let addr = value.unwrap_or_else(|| default.to_owned());
    addr.parse()
        .map_err(|e| anyhow::anyhow!("{name}={addr:?} is not a socket address: {e}"))
}

/// An optional `http://` or `https://` URL setting called `name`.
pub fn http_url(name: &str, value: Option<String>) -> anyhow::Result<Option<String>> {
    match value {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => Ok(Some(url)),
        Some(url) => anyhow::bail!("{name}={url:?} must be an http:// or https:// URL"),
        None => Ok(None),
    }
}

/// Checks a PostgreSQL URL setting called `name`: set, and a connection
/// string tokio-postgres accepts. The error never shows the value (it may
/// carry a password).
pub fn postgres_url(name: &str, url: Option<String>) -> anyhow::Result<String> {
    let url = url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| anyhow::anyhow!("{name} is not set (postgres://user@host:port/db)"))?;
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| anyhow::anyhow!("{name} is not a PostgreSQL connection string: {e}"))?;
    Ok(url)
}

/// Checks an `eventstoredb_url` setting: an EventStoreDB connection string
/// the client accepts, or unset. The error never shows the value (it may
/// carry credentials).
pub fn eventstoredb_url(url: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    anyhow::ensure!(
        url.starts_with("esdb://") || url.starts_with("esdb+discover://"),
        "eventstoredb_url must be an esdb:// or esdb+discover:// connection string"
    );
    EsdbEventStore::parse(&url).map_err(|_| {
        anyhow::anyhow!("eventstoredb_url is not a valid EventStoreDB connection string")
    })?;
    Ok(Some(url))
}

/// How long start-up waits for EventStoreDB to answer.
const EVENTSTOREDB_REACH: std::time::Duration = std::time::Duration::from_secs(30);

/// The event store the settings name: EventStoreDB when `eventstoredb_url`
/// is set, otherwise the PostgreSQL store `pg`. Asks the store who it is
/// before answering (creating its identity on first use), so an
/// unreachable server stops start-up with one clear error instead of
/// failing the first request.
pub async fn event_store(
    eventstoredb_url: Option<&str>,
    pg: PgEventStore,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let store: Arc<dyn EventStore> = match eventstoredb_url {
        Some(url) => Arc::new(
            EsdbEventStore::connect(url).map_err(|e| anyhow::anyhow!("eventstoredb_url: {e}"))?,
        ),
        None => Arc::new(pg),
    };
    let setting = if eventstoredb_url.is_some() {
        "eventstoredb_url"
    } else {
        "database_url"
    };
    let identity = tokio::time::timeout(EVENTSTOREDB_REACH, store.identity())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{setting}: the event store did not answer within {} s",
                EVENTSTOREDB_REACH.as_secs()
            )
        })?
        .map_err(|e| anyhow::anyhow!("{setting}: cannot reach the event store: {e}"))?;
    tracing::info!(store = %identity, "event store");
    Ok(store)
}

/// The bearer-token key from `jwt_hs256_secret` (at least 32 bytes) or
/// `jwt_rs256_public_key`, exactly one of them.
pub fn jwt_key(
    hs256_secret: Option<String>,
    rs256_public_key: Option<String>,
) -> anyhow::Result<JwtKey> {
    prefixed_jwt_key("jwt", hs256_secret, rs256_public_key)
}

/// A key from `{prefix}_hs256_secret` or `{prefix}_rs256_public_key`
/// (the current key's `jwt_`, the retiring key's `jwt_previous_`), errors
/// naming those settings.
fn prefixed_jwt_key(
    prefix: &str,
    hs256_secret: Option<String>,
    rs256_public_key: Option<String>,
) -> anyhow::Result<JwtKey> {
    let (secret_name, pem_name) = (
        format!("{prefix}_hs256_secret"),
        format!("{prefix}_rs256_public_key"),
    );
    match (hs256_secret, rs256_public_key) {
        (Some(secret), None) if secret.len() >= MIN_JWT_SECRET_LEN => {
            Ok(JwtKey::Hs256(SecretString::from(secret)))
        }
        (Some(_), None) => {
            anyhow::bail!("{secret_name} must be at least {MIN_JWT_SECRET_LEN} bytes")
        }
        (None, Some(pem)) => {
            jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                anyhow::anyhow!("{pem_name} is not an RSA public key in PEM form: {e}")
            })?;
            Ok(JwtKey::Rs256(pem))
        }
        (Some(_), Some(_)) => anyhow::bail!("set only one of {secret_name} and {pem_name}"),
        (None, None) => anyhow::bail!("{secret_name} or {pem_name} must be set"),
    }
}

/// What a token must also say, beyond a valid signature and expiry: who
/// issued it and for whom (when set, required), and how long it may be
/// valid at most (`JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_MAX_LIFETIME_SECS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRules {
    /// The `iss` every token must carry, if set.
    pub issuer: Option<String>,
    /// The `aud` every token must include, if set.
    pub audience: Option<String>,
    /// The longest validity accepted, from `iat` (or from now, without it)
    /// to `exp`: a leaked long-lived token is refused.
    pub max_lifetime: std::time::Duration,
}

impl Default for TokenRules {
    /// No issuer or audience required; tokens valid for at most a day.
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_lifetime: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// The token rules from `jwt_issuer`, `jwt_audience` and
/// `jwt_max_lifetime_secs` (default a day).
pub fn token_rules(
    issuer: Option<String>,
    audience: Option<String>,
    max_lifetime_secs: Option<i64>,
) -> anyhow::Result<TokenRules> {
    let non_empty = |name: &str, value: Option<String>| match value {
        Some(v) if v.trim().is_empty() => anyhow::bail!("{name} is set but empty"),
        other => Ok(other),
    };
    Ok(TokenRules {
        issuer: non_empty("jwt_issuer", issuer)?,
        audience: non_empty("jwt_audience", audience)?,
        max_lifetime: std::time::Duration::from_secs(positive(
            "jwt_max_lifetime_secs",
            max_lifetime_secs,
            TokenRules::default().max_lifetime.as_secs(),
        )?),
    })
}

/// The rate limits from `rate_limit_joins_per_minute`,
/// `rate_limit_commands_per_second`, `rate_limit_auth_failures_per_minute`
/// (each `0` to turn it off; defaults in [`RateLimits::default`]) and
/// `trusted_client_ip_header`.
pub fn rate_limits(
    joins_per_minute: Option<i64>,
    commands_per_second: Option<i64>,
    auth_failures_per_minute: Option<i64>,
    client_ip_header: Option<String>,
) -> anyhow::Result<RateLimits> {
    let defaults = RateLimits::default();
    let quota = |name: &str, value: Option<i64>, default: Option<NonZeroU32>| match value {
        None => Ok(default),
        Some(n) => u32::try_from(n)
            .map(NonZeroU32::new)
            .map_err(|_| anyhow::anyhow!("{name}={n} must be 0 (off) or a positive whole number")),
    };
    let client_ip_header = match client_ip_header.filter(|h| !h.trim().is_empty()) {
        None => None,
        Some(name) => Some(name.trim().parse::<axum::http::HeaderName>().map_err(|_| {
            anyhow::anyhow!("trusted_client_ip_header={name:?} is not a header name")
        })?),
    };
    Ok(RateLimits {
        joins_per_minute: quota(
            "rate_limit_joins_per_minute",
            joins_per_minute,
            defaults.joins_per_minute,
        )?,
        commands_per_second: quota(
            "rate_limit_commands_per_second",
            commands_per_second,
            defaults.commands_per_second,
        )?,
        auth_failures_per_minute: quota(
            "rate_limit_auth_failures_per_minute",
            auth_failures_per_minute,
            defaults.auth_failures_per_minute,
        )?,
        client_ip_header,
    })
}

/// A positive number, or the default when unset (`name` for the error).
pub fn positive(name: &str, value: Option<i64>, default: u64) -> anyhow::Result<u64> {
    match value {
        None => Ok(default),
        Some(n) => u64::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| anyhow::anyhow!("{name}={n} must be a positive whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::{JwtKey, RateLimits, eventstoredb_url, jwt_key, jwt_keys, rate_limits};

    #[test]
    fn rate_limits_default_turn_off_with_zero_and_refuse_nonsense() {
        assert_eq!(
            rate_limits(None, None, None, None).unwrap(),
            RateLimits::default()
        );
        let off = rate_limits(Some(0), Some(0), Some(0), None).unwrap();
        assert_eq!(off, RateLimits::off());
        let error = rate_limits(Some(-1), None, None, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("rate_limit_joins_per_minute"), "{error}");
        let error = rate_limits(None, None, None, Some("not a header".into()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("trusted_client_ip_header"), "{error}");
        let header = rate_limits(None, None, None, Some("X-Real-IP".into())).unwrap();
        assert_eq!(
            header.client_ip_header.map(|h| h.to_string()).as_deref(),
            Some("x-real-ip")
        );
    }

    #[test]
    fn an_eventstoredb_url_is_checked_without_showing_it() {
        assert_eq!(eventstoredb_url(None).unwrap(), None);
        assert_eq!(eventstoredb_url(Some(" ".into())).unwrap(), None);
        let good = "esdb://admin:changeit@127.0.0.1:2113?tls=false";
        assert_eq!(
            eventstoredb_url(Some(good.into())).unwrap().as_deref(),
            Some(good)
        );
        for bad in [
            "postgres://admin:secret@host/db",
            "esdb://admin:secret@host:2113?tls=maybe",
        ] {
            let error = eventstoredb_url(Some(bad.into())).unwrap_err().to_string();
            assert!(error.contains("eventstoredb_url"), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn a_rotation_names_both_keys_differently() {
        let secret = || Some("a-secret-of-thirty-two-bytes-or-more".to_owned());
        let old = || Some("the-old-secret-of-thirty-two-bytes-or-more".to_owned());
        let keys = jwt_keys(
            (secret(), None),
            Some("k2".into()),
            (old(), None),
            Some("k1".into()),
        )
        .unwrap();
        assert_eq!(keys.current_id.as_deref(), Some("k2"));
        assert_eq!(keys.previous.as_ref().map(|p| p.0.as_str()), Some("k1"));
        for (current_id, previous, previous_id, named) in [
            (None, old(), Some("k1"), "jwt_key_id"),
            (Some("k1"), old(), Some("k1"), "must differ"),
            (Some("k2"), None, Some("k1"), "jwt_previous_key_id"),
            (
                Some("k2"),
                Some("short".to_owned()),
                Some("k1"),
                "jwt_previous_hs256_secret",
            ),
        ] {
            let error = jwt_keys(
                (secret(), None),
                current_id.map(str::to_owned),
                (previous, None),
                previous_id.map(str::to_owned),
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains(named), "{error}");
            assert!(!error.contains("the-old-secret"), "{error}");
        }
    }

    #[test]
    fn a_jwt_secret_never_prints() {
        let key = jwt_key(Some("a-secret-of-thirty-two-bytes-or-more".into()), None).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("a-secret"), "{shown}");
        assert!(matches!(key, JwtKey::Hs256(_)));
    }
}
