//! The replay tooling behind the `replay` binary: rebuild, verify, inspect,
//! trace, export, import, status, adopt. Each command returns a report that
//! the binary prints for people or, with `--json`, as one JSON object.
//!
//! Every command works on the configured event store: EventStoreDB when
//! `EVENTSTOREDB_URL` is set, the PostgreSQL log otherwise (person keys are
//! always in PostgreSQL), the same store the services use.

pub mod adopt;
pub mod archive;
pub mod forecast;
pub mod inspect;
pub mod rebuild;
pub mod status;
pub mod upcast;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mileage_store::EventStore;
use mileage_store::eventstoredb::EsdbEventStore;
use mileage_store::keys::{KeyStore, PgKeyStore};
use mileage_store::postgres::PgEventStore;
use tokio_postgres::{Client, NoTls};

/// How long a tool waits for EventStoreDB to answer before giving up.
const REACH: Duration = Duration::from_secs(30);

/// What every command works with.
pub struct Context {
    /// The configured event store.
    pub store: Arc<dyn EventStore>,
    /// The PostgreSQL database of person keys, and of the log when it is
    /// the configured store (`Some` then).
    pub postgres_log: Option<PgEventStore>,
    /// Person keys.
    pub keys: Arc<dyn KeyStore>,
    /// The read database's URL.
    pub read_url: String,
    /// Progress bars on stderr (off for `--json` and when not a terminal).
    pub progress: bool,
}

impl Context {
    /// Connects the configured event store: EventStoreDB at
    /// `eventstoredb_url` when given (checked reachable now, so a wrong URL
    /// is one clear error, not a half-run command), else the PostgreSQL log
    /// at `database_url`, which holds the person keys either way.
    pub async fn connect(
        database_url: &str,
        eventstoredb_url: Option<&str>,
        read_url: &str,
        progress: bool,
    ) -> anyhow::Result<Self> {
        let pg = PgEventStore::connect(database_url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database at DATABASE_URL: {e}"))?;
        let keys: Arc<dyn KeyStore> = Arc::new(PgKeyStore::new(pg.pool().clone()));
        let (store, postgres_log): (Arc<dyn EventStore>, _) = match eventstoredb_url {
            Some(url) => {
                let esdb = EsdbEventStore::connect(url)
                    .map_err(|e| anyhow::anyhow!("EVENTSTOREDB_URL: {e}"))?;
                tokio::time::timeout(REACH, esdb.head_position())
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "cannot reach EventStoreDB at EVENTSTOREDB_URL within {} s",
                            REACH.as_secs()
                        )
                    })?
                    .map_err(|e| {
                        anyhow::anyhow!("cannot reach EventStoreDB at EVENTSTOREDB_URL: {e}")
                    })?;
                (Arc::new(esdb), None)
            }
            None => (Arc::new(pg.clone()), Some(pg)),
        };
        Ok(Self {
            store,
            postgres_log,
            keys,
            read_url: read_url.to_owned(),
            progress,
        })
    }

    /// A new connection to the read database, with the bookkeeping tables.
    pub async fn read_client(&self) -> anyhow::Result<Client> {
        let (client, connection) = tokio_postgres::connect(&self.read_url, NoTls)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the read database: {e}"))?;
        tokio::spawn(connection);
        mileage_read_model::bookkeeping::migrate(&client).await?;
        Ok(client)
    }

    /// A progress bar of `total` events (a spinner when unknown).
    pub fn bar(&self, message: &str, total: Option<u64>) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {human_pos}/{human_len} events  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {human_pos} events  {per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// How many events the log holds (for progress bars and the export's
    /// completeness check): counted on PostgreSQL, unknown on EventStoreDB
    /// (a spinner then).
    pub async fn log_size(&self) -> Option<u64> {
        self.postgres_log.as_ref()?.count_events().await.ok()
    }
}

/// `name` if it is a plain lower-case identifier (a schema or consumer name).
pub fn identifier(name: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "{name:?} is not a plain lower-case identifier"
    );
    Ok(name)
}
