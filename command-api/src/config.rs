//! Settings from an optional TOML file and the environment (which wins),
//! checked before any port opens.

use std::net::SocketAddr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;

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
    /// PostgreSQL (`DATABASE_URL`): the event store unless
    /// `eventstoredb_url` is set, and always the person and idempotency keys.
    pub database_url: String,
    /// EventStoreDB as the event store (`EVENTSTOREDB_URL`, an `esdb://` or
    /// `esdb+discover://` connection string); unset: PostgreSQL.
    pub eventstoredb_url: Option<String>,
    /// Keys the phone-number uniqueness index (`PHONE_INDEX_SECRET`, at least
    /// 16 bytes). Must stay the same for the life of the log.
    pub phone_secret: String,
    /// Bearer-token key.
    pub jwt: JwtKey,
    /// The release's join: where (`MEMBER_API_URL`, in-process when unset),
    /// timeout (`JOIN_TIMEOUT_MS`, 610), breaker (`BREAKER_FAILURES`, 3;
    /// `BREAKER_OPEN_SECS`, 5).
    pub join: GuardSettings,
    /// Origins whose pages may call this API from a browser
    /// (`CORS_ALLOWED_ORIGINS`, comma-separated; `*` for any; none by default,
    /// as behind the gateway the admin page is same-origin).
    pub cors_allowed_origins: Vec<String>,
    /// How long an idempotency key is remembered (`IDEMPOTENCY_KEY_HOURS`,
    /// 24): a retry within it answers the first result.
    pub idempotency_retention: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The settings as written in the file or the environment, before checks.
/// Keys are the environment names in lower case (`database_url`), so one
/// `mileage.toml` can serve every service.
#[derive(Deserialize, Default)]
struct Raw {
    command_api_addr: Option<String>,
    database_url: Option<String>,
    eventstoredb_url: Option<String>,
    phone_index_secret: Option<String>,
    jwt_hs256_secret: Option<String>,
    jwt_rs256_public_key: Option<String>,
    member_api_url: Option<String>,
    join_timeout_ms: Option<i64>,
    breaker_failures: Option<i64>,
    breaker_open_secs: Option<i64>,
    cors_allowed_origins: Option<String>,
    idempotency_key_hours: Option<i64>,
}

/// The environment variables read, each overriding the same key in the file.
const KEYS: [&str; 12] = [
    "CORS_ALLOWED_ORIGINS",
    "IDEMPOTENCY_KEY_HOURS",
    "COMMAND_API_ADDR",
    "DATABASE_URL",
    "EVENTSTOREDB_URL",
    "PHONE_INDEX_SECRET",
    "JWT_HS256_SECRET",
    "JWT_RS256_PUBLIC_KEY",
    "MEMBER_API_URL",
    "JOIN_TIMEOUT_MS",
    "BREAKER_FAILURES",
    "BREAKER_OPEN_SECS",
];

/// The longest idempotency-key retention accepted (ten years).
const MAX_RETENTION_SECS: u64 = 10 * 366 * 24 * 3600;

/// The environment variable naming the optional TOML settings file.
pub const CONFIG_FILE_VAR: &str = "MILEAGE_CONFIG";

impl Settings {
    /// Reads the settings: the TOML file named by `MILEAGE_CONFIG` (when
    /// set), overridden by the environment. The error names the setting that
    /// is wrong, never its value when it is a secret.
    pub fn load() -> anyhow::Result<Self> {
        let raw: Raw = layered(&KEYS)?;
        Self::check(raw)
    }

    fn check(raw: Raw) -> anyhow::Result<Self> {
        let addr = raw
            .command_api_addr
            .unwrap_or_else(|| "127.0.0.1:8081".into());
        let addr = addr.parse().map_err(|e| {
            anyhow::anyhow!("command_api_addr={addr:?} is not a socket address: {e}")
        })?;
        let database_url = postgres_url("database_url", raw.database_url)?;
        let eventstoredb_url = eventstoredb_url(raw.eventstoredb_url)?;
        let phone_secret = raw
            .phone_index_secret
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .ok_or_else(|| {
                anyhow::anyhow!("phone_index_secret must be set to at least {MIN_SECRET_LEN} bytes")
            })?;
        let jwt = jwt_key(raw.jwt_hs256_secret, raw.jwt_rs256_public_key)?;
        let member_api_url = match raw.member_api_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => Some(url),
            Some(url) => anyhow::bail!("member_api_url={url:?} must be an http:// or https:// URL"),
            None => None,
        };
        let join = GuardSettings {
            member_api_url,
            timeout: Duration::from_millis(positive("join_timeout_ms", raw.join_timeout_ms, 610)?),
            failures_to_open: u32::try_from(positive("breaker_failures", raw.breaker_failures, 3)?)
                .map_err(|_| anyhow::anyhow!("breaker_failures is too large"))?,
            open_for: Duration::from_secs(positive("breaker_open_secs", raw.breaker_open_secs, 5)?),
        };
        let cors_allowed_origins: Vec<String> = raw
            .cors_allowed_origins
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        for origin in &cors_allowed_origins {
            anyhow::ensure!(
                origin == "*" || origin.starts_with("http://") || origin.starts_with("https://"),
                "cors_allowed_origins: {origin:?} is not * or an http(s) origin"
            );
        }
        let idempotency_retention = Duration::from_secs(
            positive("idempotency_key_hours", raw.idempotency_key_hours, 24)?
                .checked_mul(3600)
                .filter(|secs| *secs <= MAX_RETENTION_SECS)
                .ok_or_else(|| anyhow::anyhow!("idempotency_key_hours must be at most 10 years"))?,
        );
        Ok(Self {
            addr,
            database_url,
            eventstoredb_url,
            phone_secret,
            jwt,
            join,
            cors_allowed_origins,
            idempotency_retention,
        })
    }
}

/// Checks a PostgreSQL URL setting called `name`: set, and a connection
/// string tokio-postgres accepts. The error never shows the value (it may
/// carry a password).
pub fn postgres_url(name: &str, url: Option<String>) -> anyhow::Result<String> {
    let url = url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| anyhow::anyhow!("{name} is not set (postgres://user@host:port/db)"))?;
    url.parse::<deadpool_postgres::tokio_postgres::Config>()
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
    mileage_store::eventstoredb::EsdbEventStore::parse(&url).map_err(|_| {
        anyhow::anyhow!("eventstoredb_url is not a valid EventStoreDB connection string")
    })?;
    Ok(Some(url))
}

/// The event store the settings name: EventStoreDB when `eventstoredb_url`
/// is set, otherwise the PostgreSQL store `pg`.
pub fn event_store(
    eventstoredb_url: Option<&str>,
    pg: mileage_store::postgres::PgEventStore,
) -> anyhow::Result<std::sync::Arc<dyn mileage_store::EventStore>> {
    match eventstoredb_url {
        Some(url) => eventstoredb(url),
        None => Ok(std::sync::Arc::new(pg)),
    }
}

/// The EventStoreDB event store at `url` (the client connects lazily).
pub fn eventstoredb(url: &str) -> anyhow::Result<std::sync::Arc<dyn mileage_store::EventStore>> {
    Ok(std::sync::Arc::new(
        mileage_store::eventstoredb::EsdbEventStore::connect(url)
            .map_err(|e| anyhow::anyhow!("cannot reach EventStoreDB: {e}"))?,
    ))
}

/// Settings of type `T` from the TOML file named by `MILEAGE_CONFIG` (when
/// set), overridden by the environment variables `keys` (upper-case names
/// of `T`'s lower-case fields). Every service reads its settings this way.
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

/// The bearer-token key from `jwt_hs256_secret` (at least 32 bytes) or
/// `jwt_rs256_public_key`, exactly one of them; shared by every service
/// that checks tokens.
pub fn jwt_key(
    hs256_secret: Option<String>,
    rs256_public_key: Option<String>,
) -> anyhow::Result<JwtKey> {
    match (hs256_secret, rs256_public_key) {
        (Some(secret), None) if secret.len() >= MIN_JWT_SECRET_LEN => Ok(JwtKey::Hs256(secret)),
        (Some(_), None) => {
            anyhow::bail!("jwt_hs256_secret must be at least {MIN_JWT_SECRET_LEN} bytes")
        }
        (None, Some(pem)) => {
            jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                anyhow::anyhow!("jwt_rs256_public_key is not an RSA public key in PEM form: {e}")
            })?;
            Ok(JwtKey::Rs256(pem))
        }
        (Some(_), Some(_)) => {
            anyhow::bail!("set only one of jwt_hs256_secret and jwt_rs256_public_key")
        }
        (None, None) => anyhow::bail!("jwt_hs256_secret or jwt_rs256_public_key must be set"),
    }
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
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]
mod tests {
    use figment::Jail;

    use super::{JwtKey, Settings};

    const FILE: &str = r#"
        database_url = "postgres://file@localhost/mileage"
        phone_index_secret = "0123456789abcdef"
        jwt_hs256_secret = "0123456789abcdef0123456789abcdef"
        join_timeout_ms = 250
        command_api_addr = "127.0.0.1:9001"
    "#;

    #[test]
    fn the_file_is_read_and_the_environment_overrides_it() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("mileage.toml", FILE)?;
            jail.set_env("MILEAGE_CONFIG", "mileage.toml");
            jail.set_env("COMMAND_API_ADDR", "127.0.0.1:9002");
            let settings = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(settings.addr.port(), 9002, "the environment wins");
            assert_eq!(settings.database_url, "postgres://file@localhost/mileage");
            assert_eq!(settings.join.timeout.as_millis(), 250);
            assert_eq!(settings.join.failures_to_open, 3, "defaults fill the rest");
            assert!(matches!(settings.jwt, JwtKey::Hs256(_)));
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_setting_and_never_a_secret() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("mileage.toml", FILE)?;
            jail.set_env("MILEAGE_CONFIG", "mileage.toml");
            jail.set_env("JWT_HS256_SECRET", "short-secret-value");
            let error = Settings::load().err().ok_or("a short secret is refused")?;
            let text = error.to_string();
            assert!(text.contains("jwt_hs256_secret"), "{text}");
            assert!(!text.contains("short-secret-value"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_and_a_bad_number_are_named() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("MILEAGE_CONFIG", "nowhere.toml");
            let text = Settings::load().err().ok_or("missing file")?.to_string();
            assert!(text.contains("nowhere.toml"), "{text}");
            jail.create_file("mileage.toml", FILE)?;
            jail.set_env("MILEAGE_CONFIG", "mileage.toml");
            jail.set_env("BREAKER_FAILURES", "0");
            let text = Settings::load().err().ok_or("zero failures")?.to_string();
            assert!(text.contains("breaker_failures"), "{text}");
            jail.set_env("BREAKER_FAILURES", "many");
            let text = Settings::load().err().ok_or("not a number")?.to_string();
            assert!(text.to_lowercase().contains("breaker_failures"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn an_eventstoredb_url_is_checked_without_showing_it() {
        assert_eq!(super::eventstoredb_url(None).unwrap(), None);
        assert_eq!(super::eventstoredb_url(Some(" ".into())).unwrap(), None);
        let good = "esdb://admin:changeit@127.0.0.1:2113?tls=false";
        assert_eq!(
            super::eventstoredb_url(Some(good.into()))
                .unwrap()
                .as_deref(),
            Some(good)
        );
        for bad in [
            "postgres://admin:secret@host/db",
            "esdb://admin:secret@host:2113?tls=maybe",
        ] {
            let error = super::eventstoredb_url(Some(bad.into()))
                .unwrap_err()
                .to_string();
            assert!(error.contains("eventstoredb_url"), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
