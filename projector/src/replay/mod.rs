//! The replay tooling behind the `replay` binary: rebuild, verify, inspect,
//! trace, export, import, status. Each command returns a report that the
//! binary prints for people or, with `--json`, as one JSON object.

pub mod archive;
pub mod inspect;
pub mod rebuild;
pub mod status;
pub mod upcast;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mileage_store::keys::{KeyStore, PgKeyStore};
use mileage_store::postgres::PgEventStore;
use tokio_postgres::{Client, NoTls};

/// What every command works with.
pub struct Context {
    /// The PostgreSQL event store (and person keys).
    pub store: Arc<PgEventStore>,
    /// Person keys.
    pub keys: Arc<dyn KeyStore>,
    /// The read database's URL.
    pub read_url: String,
    /// Progress bars on stderr (off for `--json` and when not a terminal).
    pub progress: bool,
}

impl Context {
    /// Connects the event store.
    pub async fn connect(
        database_url: &str,
        read_url: &str,
        progress: bool,
    ) -> anyhow::Result<Self> {
        let store = PgEventStore::connect(database_url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the event store at DATABASE_URL: {e}"))?;
        let keys: Arc<dyn KeyStore> = Arc::new(PgKeyStore::new(store.pool().clone()));
        Ok(Self {
            store: Arc::new(store),
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

    /// How many events the log holds (for progress bars).
    pub async fn log_size(&self) -> Option<u64> {
        let client = self.store.pool().get().await.ok()?;
        let row = client
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .ok()?;
        u64::try_from(row.get::<_, i64>(0)).ok()
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
