//! Settings from an optional TOML file and the environment (which wins),
//! checked before any port opens.

use std::net::SocketAddr;
use std::time::Duration;

use mileage_domain::member::PointLimits;
use mileage_service::settings::{
    JwtKeys, RateLimits, RawRateLimits, RawTokens, TokenRules, eventstoredb_url, http_url, layered,
    positive, postgres_url, shared, socket_addr,
};
use secrecy::SecretString;
use serde::Deserialize;

pub use crate::release_guard::GuardSettings;

/// Shortest phone-index secret accepted, in bytes.
const MIN_SECRET_LEN: usize = 16;
/// What the service needs to start. Secrets never print (`Debug` redacts
/// them).
#[derive(Clone, Debug)]
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
    pub phone_secret: SecretString,
    /// Bearer-token key.
    pub jwt: JwtKeys,
    /// What tokens must also say (`JWT_ISSUER`, `JWT_AUDIENCE`,
    /// `JWT_MAX_LIFETIME_SECS`).
    pub token_rules: TokenRules,
    /// Requests per client address and caller
    /// (`RATE_LIMIT_JOINS_PER_MINUTE`, `RATE_LIMIT_COMMANDS_PER_SECOND`,
    /// `RATE_LIMIT_AUTH_FAILURES_PER_MINUTE`, each 0 for off;
    /// `TRUSTED_CLIENT_IP_HEADER` behind a gateway).
    pub rate_limits: RateLimits,
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
    /// How long a key whose request has not answered yet stays "in flight"
    /// (`IDEMPOTENCY_LEASE_SECS`, 10): after it, a retry with the key takes
    /// it over and finishes the command (which appends nothing twice).
    pub idempotency_lease: Duration,
    /// The most points one command may earn or use
    /// (`MAX_POINTS_PER_COMMAND`, 1,000,000) and one balance may hold
    /// (`MAX_BALANCE`, 1,000,000,000); neither past
    /// [`mileage_domain::member::POINTS_CEILING`].
    pub points: PointLimits,
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
    /// Read by [`mileage_service::settings::shared`].
    #[serde(skip)]
    tokens: RawTokens,
    /// Read by [`mileage_service::settings::shared`].
    #[serde(skip)]
    limits: RawRateLimits,
    member_api_url: Option<String>,
    join_timeout_ms: Option<i64>,
    breaker_failures: Option<i64>,
    breaker_open_secs: Option<i64>,
    cors_allowed_origins: Option<String>,
    idempotency_key_hours: Option<i64>,
    idempotency_lease_secs: Option<i64>,
    max_points_per_command: Option<i64>,
    max_balance: Option<i64>,
}

/// The environment variables read (besides the shared ones,
/// [`mileage_service::settings::shared`]), each overriding the same key in
/// the file.
const KEYS: [&str; 13] = [
    "MAX_POINTS_PER_COMMAND",
    "MAX_BALANCE",
    "IDEMPOTENCY_LEASE_SECS",
    "CORS_ALLOWED_ORIGINS",
    "IDEMPOTENCY_KEY_HOURS",
    "COMMAND_API_ADDR",
    "DATABASE_URL",
    "EVENTSTOREDB_URL",
    "PHONE_INDEX_SECRET",
    "MEMBER_API_URL",
    "JOIN_TIMEOUT_MS",
    "BREAKER_FAILURES",
    "BREAKER_OPEN_SECS",
];

/// The longest idempotency-key retention accepted (ten years).
const MAX_RETENTION_SECS: u64 = 10 * 366 * 24 * 3600;

impl Settings {
    /// Reads the settings: the TOML file named by `MILEAGE_CONFIG` (when
    /// set), overridden by the environment. The error names the setting that
    /// is wrong, never its value when it is a secret.
    pub fn load() -> anyhow::Result<Self> {
        let (tokens, limits) = shared()?;
        let raw = Raw {
            tokens,
            limits,
            ..layered(&KEYS)?
        };
        Self::check(raw)
    }

    /// The settings of a deployment that sets only the required ones, for
    /// services embedded in tests and benchmarks (which then adjust fields,
    /// `addr` first).
    pub fn with_defaults(
        database_url: &str,
        jwt_hs256_secret: &str,
        phone_index_secret: &str,
    ) -> anyhow::Result<Self> {
        Self::check(Raw {
            database_url: Some(database_url.to_owned()),
            tokens: RawTokens {
                jwt_hs256_secret: Some(jwt_hs256_secret.to_owned()),
                ..RawTokens::default()
            },
            phone_index_secret: Some(phone_index_secret.to_owned()),
            ..Raw::default()
        })
    }

    fn check(raw: Raw) -> anyhow::Result<Self> {
        let addr = socket_addr("command_api_addr", raw.command_api_addr, "127.0.0.1:8081")?;
        let database_url = postgres_url("database_url", raw.database_url)?;
        let eventstoredb_url = eventstoredb_url(raw.eventstoredb_url)?;
        let phone_secret = raw
            .phone_index_secret
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .map(SecretString::from)
            .ok_or_else(|| {
                anyhow::anyhow!("phone_index_secret must be set to at least {MIN_SECRET_LEN} bytes")
            })?;
        let (jwt, token_rules) = raw.tokens.check()?;
        let rate_limits = raw.limits.check()?;
        let member_api_url = http_url("member_api_url", raw.member_api_url)?;
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
        let idempotency_lease = Duration::from_secs(positive(
            "idempotency_lease_secs",
            raw.idempotency_lease_secs,
            10,
        )?);
        let points = PointLimits::new(
            positive(
                "max_points_per_command",
                raw.max_points_per_command,
                PointLimits::DEFAULT.max_amount().0,
            )?,
            positive(
                "max_balance",
                raw.max_balance,
                PointLimits::DEFAULT.max_balance().0,
            )?,
        )
        .map_err(|e| anyhow::anyhow!("max_points_per_command, max_balance: {e}"))?;
        Ok(Self {
            addr,
            database_url,
            eventstoredb_url,
            phone_secret,
            jwt,
            token_rules,
            rate_limits,
            join,
            cors_allowed_origins,
            idempotency_retention,
            idempotency_lease,
            points,
        })
    }
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]
mod tests {
    use figment::Jail;

    use super::Settings;
    use mileage_service::settings::JwtKey;

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
            assert!(matches!(settings.jwt.current, JwtKey::Hs256(_)));
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

    /// The token and rate-limit keys are declared once, in `service`, and
    /// flattened in: numbers and text from the file and the environment
    /// still reach them.
    #[test]
    fn shared_token_and_limit_settings_are_read_from_file_and_environment() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "mileage.toml",
                &format!("{FILE}jwt_issuer = \"mileage-file\"\nrate_limit_joins_per_minute = 7\n"),
            )?;
            jail.set_env("MILEAGE_CONFIG", "mileage.toml");
            jail.set_env("JWT_MAX_LIFETIME_SECS", "120");
            jail.set_env("RATE_LIMIT_COMMANDS_PER_SECOND", "0");
            jail.set_env("TRUSTED_CLIENT_IP_HEADER", "X-Real-IP");
            let settings = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(settings.token_rules.issuer.as_deref(), Some("mileage-file"));
            assert_eq!(settings.token_rules.max_lifetime.as_secs(), 120);
            let limits = &settings.rate_limits;
            assert_eq!(limits.joins_per_minute.map(std::num::NonZero::get), Some(7));
            assert_eq!(limits.commands_per_second, None, "0 is off");
            assert_eq!(
                limits
                    .client_ip_header
                    .as_ref()
                    .map(axum::http::HeaderName::as_str),
                Some("x-real-ip")
            );
            jail.set_env("JWT_MAX_LIFETIME_SECS", "soon");
            let text = Settings::load().err().ok_or("a bad number")?.to_string();
            assert!(
                text.to_lowercase().contains("jwt_max_lifetime_secs"),
                "the key is named: {text}"
            );
            Ok(())
        });
    }

    #[test]
    fn point_limits_default_and_are_checked() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("mileage.toml", FILE)?;
            jail.set_env("MILEAGE_CONFIG", "mileage.toml");
            let settings = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(
                settings.points,
                mileage_domain::member::PointLimits::DEFAULT
            );
            jail.set_env("MAX_POINTS_PER_COMMAND", "500");
            jail.set_env("MAX_BALANCE", "100");
            let text = Settings::load()
                .err()
                .ok_or("amount above the cap")?
                .to_string();
            assert!(text.contains("max_balance"), "{text}");
            jail.set_env("MAX_BALANCE", "9007199254740992");
            let text = Settings::load()
                .err()
                .ok_or("cap above the ceiling")?
                .to_string();
            assert!(text.contains("max_balance"), "{text}");
            jail.set_env("MAX_BALANCE", "1000");
            let settings = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(settings.points.max_amount().0, 500);
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
}
