//! Settings from an optional TOML file (`MILEAGE_CONFIG`) and the
//! environment (which wins), checked before anything starts.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use mileage_domain::dormancy::Policy;

use mileage_service::settings::{
    eventstoredb_url, http_url, layered, positive, postgres_url, socket_addr,
};
use serde::Deserialize;

/// What the projector needs to start.
#[derive(Clone)]
pub struct Settings {
    /// Health, readiness and metrics (`PROJECTOR_ADDR`, default
    /// `127.0.0.1:8085`).
    pub addr: SocketAddr,
    /// The PostgreSQL event store, also holding the person keys
    /// (`DATABASE_URL`).
    pub database_url: String,
    /// EventStoreDB as the event store (`EVENTSTOREDB_URL`); unset:
    /// PostgreSQL at `database_url`, which keeps the person keys either way.
    pub eventstoredb_url: Option<String>,
    /// Where the read models live (`READ_DATABASE_URL`, default the event
    /// store's database).
    pub read_database_url: String,
    /// Events handled per transaction at most (`PROJECTOR_BATCH`, 1000).
    pub batch_size: usize,
    /// How dormant notices are delivered.
    pub notifier: NotifierSettings,
    /// The dormancy policy and its scheduler.
    pub dormancy: DormancySettings,
}

/// The dormancy policy and how its scheduler applies it.
#[derive(Clone, Debug)]
pub struct DormancySettings {
    /// Days without activity before a member becomes a target
    /// (`DORMANCY_AFTER_DAYS`, 335), and days more before the target is
    /// marked dormant (`DORMANCY_GRACE_DAYS`, 30).
    pub policy: Policy,
    /// Targets registered, marked or lifted per second at most
    /// (`DORMANCY_RATE`, 20): a pass after downtime catches up at this pace,
    /// and so do the notices the marks send, whatever the backlog.
    pub rate: NonZeroU32,
    /// Seconds between passes (`DORMANCY_SCAN_SECONDS`, 60).
    pub every: Duration,
    /// Whether this projector applies the policy: its scheduler and the
    /// `dormancy` process manager (`DORMANCY_POLICY`, `on`; `off` on every
    /// replica leaves dormancy to the operators). Replicas that apply it
    /// take turns: one acts, the others stand by.
    pub applies: bool,
    /// The policy's clock (`DORMANCY_CLOCK_OFFSET_SECONDS`, 0): for tests
    /// and drills only.
    pub clock: crate::clock::Clock,
}

impl Default for DormancySettings {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            rate: NonZeroU32::new(20).expect("not zero"),
            every: Duration::from_secs(60),
            applies: true,
            clock: crate::clock::Clock::default(),
        }
    }
}

/// The dormant notice's delivery.
#[derive(Clone, Debug)]
pub struct NotifierSettings {
    /// The SMS gateway's webhook (`NOTIFIER_URL`); unset: the development
    /// adapter, which logs the notice and reports it sent.
    pub url: Option<String>,
    /// Per attempt (`NOTIFIER_TIMEOUT_MS`, 2000).
    pub timeout: Duration,
    /// Attempts on timeouts and 5xx answers before the notice counts as
    /// failed (`NOTIFIER_MAX_ATTEMPTS`, 5).
    pub max_attempts: u32,
    /// First retry delay, doubled each time (`NOTIFIER_BACKOFF_MS`, 200).
    pub backoff: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field("batch_size", &self.batch_size)
            .field("notifier", &self.notifier)
            .field("dormancy", &self.dormancy)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Default)]
struct Raw {
    projector_addr: Option<String>,
    database_url: Option<String>,
    eventstoredb_url: Option<String>,
    read_database_url: Option<String>,
    projector_batch: Option<i64>,
    notifier_url: Option<String>,
    notifier_timeout_ms: Option<i64>,
    notifier_max_attempts: Option<i64>,
    notifier_backoff_ms: Option<i64>,
    dormancy_after_days: Option<i64>,
    dormancy_grace_days: Option<i64>,
    dormancy_rate: Option<i64>,
    dormancy_scan_seconds: Option<i64>,
    dormancy_policy: Option<String>,
    dormancy_clock_offset_seconds: Option<i64>,
}

const KEYS: [&str; 15] = [
    "PROJECTOR_ADDR",
    "DATABASE_URL",
    "EVENTSTOREDB_URL",
    "READ_DATABASE_URL",
    "PROJECTOR_BATCH",
    "NOTIFIER_URL",
    "NOTIFIER_TIMEOUT_MS",
    "NOTIFIER_MAX_ATTEMPTS",
    "NOTIFIER_BACKOFF_MS",
    "DORMANCY_AFTER_DAYS",
    "DORMANCY_GRACE_DAYS",
    "DORMANCY_RATE",
    "DORMANCY_SCAN_SECONDS",
    "DORMANCY_POLICY",
    "DORMANCY_CLOCK_OFFSET_SECONDS",
];

impl Settings {
    /// Reads the settings; the error names the setting that is wrong.
    pub fn load() -> anyhow::Result<Self> {
        let raw: Raw = layered(&KEYS)?;
        Self::check(raw)
    }

    fn check(raw: Raw) -> anyhow::Result<Self> {
        let dormancy = dormancy(&raw)?;
        let addr = socket_addr("projector_addr", raw.projector_addr, "127.0.0.1:8085")?;
        let database_url = postgres_url("database_url", raw.database_url)?;
        let read_database_url = match raw.read_database_url {
            Some(url) => postgres_url("read_database_url", Some(url))?,
            None => database_url.clone(),
        };
        let url = http_url("notifier_url", raw.notifier_url)?;
        Ok(Self {
            addr,
            read_database_url,
            database_url,
            eventstoredb_url: eventstoredb_url(raw.eventstoredb_url)?,
            batch_size: usize::try_from(positive("projector_batch", raw.projector_batch, 1000)?)?,
            notifier: NotifierSettings {
                url,
                timeout: Duration::from_millis(positive(
                    "notifier_timeout_ms",
                    raw.notifier_timeout_ms,
                    2000,
                )?),
                max_attempts: u32::try_from(positive(
                    "notifier_max_attempts",
                    raw.notifier_max_attempts,
                    5,
                )?)?,
                backoff: Duration::from_millis(positive(
                    "notifier_backoff_ms",
                    raw.notifier_backoff_ms,
                    200,
                )?),
            },
            dormancy,
        })
    }
}

/// The dormancy settings of `raw`; the error names the setting.
fn dormancy(raw: &Raw) -> anyhow::Result<DormancySettings> {
    let days = |value: Option<i64>, default| value.unwrap_or(default);
    let policy = Policy::new(
        days(raw.dormancy_after_days, Policy::DEFAULT_AFTER_DAYS),
        days(raw.dormancy_grace_days, Policy::DEFAULT_GRACE_DAYS),
    )?;
    let rate = positive("dormancy_rate", raw.dormancy_rate, 20)?;
    let applies = match raw.dormancy_policy.as_deref().map(str::trim) {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => anyhow::bail!("dormancy_policy={other:?} must be on or off"),
    };
    let offset = raw.dormancy_clock_offset_seconds.unwrap_or(0);
    if offset.unsigned_abs() > 20 * 366 * 86_400 {
        anyhow::bail!("dormancy_clock_offset_seconds={offset} is more than twenty years");
    }
    Ok(DormancySettings {
        policy,
        rate: NonZeroU32::new(u32::try_from(rate).map_err(|_| {
            anyhow::anyhow!("dormancy_rate={rate} is more than {} per second", u32::MAX)
        })?)
        .expect("positive"),
        every: Duration::from_secs(positive(
            "dormancy_scan_seconds",
            raw.dormancy_scan_seconds,
            60,
        )?),
        applies,
        clock: crate::clock::Clock::offset_by(offset),
    })
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]
mod tests {
    use figment::Jail;

    use super::Settings;

    #[test]
    fn defaults_file_and_environment() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "mileage.toml",
                "database_url = \"postgres://events\"\nnotifier_max_attempts = 2\n",
            )?;
            jail.set_env("MILEAGE_CONFIG", "mileage.toml");
            jail.set_env("NOTIFIER_URL", "http://127.0.0.1:9/sms");
            let settings = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(settings.read_database_url, "postgres://events");
            assert_eq!(settings.notifier.max_attempts, 2);
            assert_eq!(
                settings.notifier.url.as_deref(),
                Some("http://127.0.0.1:9/sms")
            );
            assert_eq!(settings.batch_size, 1000);
            assert_eq!(settings.dormancy.policy.after_days(), 335);
            assert_eq!(settings.dormancy.policy.grace_days(), 30);
            assert!(settings.dormancy.applies);
            jail.set_env("DORMANCY_AFTER_DAYS", "0");
            let text = Settings::load().err().ok_or("zero days")?.to_string();
            assert!(text.contains("DORMANCY_AFTER_DAYS"), "{text}");
            jail.set_env("DORMANCY_AFTER_DAYS", "100");
            jail.set_env("DORMANCY_POLICY", "maybe");
            let text = Settings::load().err().ok_or("bad switch")?.to_string();
            assert!(text.contains("dormancy_policy"), "{text}");
            jail.set_env("DORMANCY_POLICY", "off");
            jail.set_env("DORMANCY_CLOCK_OFFSET_SECONDS", "-86400");
            let moved = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(moved.dormancy.policy.after_days(), 100);
            assert!(!moved.dormancy.applies);
            assert_eq!(moved.dormancy.clock.offset(), chrono::TimeDelta::days(-1));
            jail.set_env("NOTIFIER_URL", "ftp://nowhere");
            let text = Settings::load().err().ok_or("bad url")?.to_string();
            assert!(text.contains("notifier_url"), "{text}");
            Ok(())
        });
    }
}
