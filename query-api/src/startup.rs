//! Building and running the query API: bind first (so tests can use port 0),
//! serve until SIGTERM or Ctrl-C.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use mileage_service::auth::Verifier;
use mileage_service::limits::Guard;
use mileage_store::keys::{KeyStore, PgKeyStore};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::progress::Progress;
use crate::routes::router;
use crate::state::QueryState;

/// A bound, ready-to-run query API.
pub struct Application {
    listener: TcpListener,
    state: QueryState,
    guard: Guard,
}

impl Application {
    /// Connects the read database (creating the read-model tables if the
    /// projector has not yet), follows the checkpoints, binds the port.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        mileage_service::telemetry::prometheus();
        mileage_service::telemetry::requests_at_zero();
        let verifier =
            Arc::new(Verifier::from_keys(&settings.jwt)?.with_rules(&settings.token_rules));
        let read_config: tokio_postgres::Config = settings
            .read_database_url
            .parse()
            .map_err(|e| anyhow::anyhow!("malformed read_database_url: {e}"))?;
        // The read queries are few and parameterised the same way each time:
        // plan them once per connection instead of once per request.
        let mut pool_config = read_config.clone();
        pool_config.options("-c plan_cache_mode=force_generic_plan");
        let manager = Manager::from_config(
            pool_config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .build()?;
        {
            let client = pool.get().await.map_err(|e| {
                anyhow::anyhow!("read_database_url: cannot reach the read database: {e}")
            })?;
            mileage_read_model::create_read_side(&client).await?;
        }
        // A pool of its own even on the read database: a read holds a
        // read connection while it fetches keys, so sharing one pool lets
        // as many reads as connections wait on each other for ever.
        let keys: Arc<dyn KeyStore> = Arc::new(PgKeyStore::new(keys_pool(
            &settings.keys_database_url,
            settings.pool_size,
        )?));
        let listener = mileage_service::bind(settings.addr).await?;
        Ok(Self {
            listener,
            guard: Guard::reads(&settings.rate_limits, &verifier),
            state: QueryState {
                pool,
                keys,
                verifier,
                progress: Progress::follow(read_config),
                wait_limit: settings.wait_limit,
                command_api_url: settings.command_api_url.as_str().into(),
                phone_secret: settings.phone_secret.clone().map(Arc::new),
            },
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// Serves until a shutdown signal, then finishes in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        mileage_service::serve(
            self.listener,
            router(self.state, self.guard),
            mileage_service::shutdown::signal(),
        )
        .await
    }
}

/// Connections to the database of person keys.
fn keys_pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("malformed database_url: {e}"))?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(size).build()?)
}
