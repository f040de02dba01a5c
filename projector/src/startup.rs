//! Starting every consumer and the HTTP endpoints, and stopping them.

use std::sync::Arc;

use mileage_store::EventStore;
use mileage_store::keys::{KeyStore, PgKeyStore};
use mileage_store::postgres::PgEventStore;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Settings;
use crate::consumer::Consumer;
use crate::notifier::{self, Notifier};
use crate::process::destruction::Destruction;
use crate::process::dormancy::Dormancy;
use crate::process::erasure::Erasure;
use crate::process::notices::Notices;
use crate::process::releases::Releases;
use crate::projections::Projection;
use crate::projections::managerpage::Managerpage;
use crate::projections::members::Members;
use crate::projections::messages::Messages;
use crate::projections::phones::Phones;
use crate::projections::timeline::Timeline;
use crate::runner::{Exit, Runner};

/// A running projector.
pub struct Running {
    port: u16,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<(String, Exit)>,
    /// The dormancy scheduler, when this process runs it.
    scheduler: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The port of `/health`, `/ready`, `/metrics`, `/status`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many consumers are still running (every one, until they stop).
    pub fn consumers(&self) -> usize {
        self.tasks.len()
    }

    /// Waits until every consumer has stopped (after [`Self::stop`], or each
    /// at a poison event), and the dormancy scheduler with them.
    pub async fn wait(mut self) {
        let scheduler = self.scheduler.take();
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((name, Exit::Stopped(error))) => {
                    tracing::error!(consumer = %name, %error, "consumer stopped");
                }
                Ok((name, Exit::Failed(reason) | Exit::Refused(reason))) => {
                    tracing::error!(consumer = %name, %reason, "consumer failed");
                }
                Ok((name, Exit::Shutdown | Exit::Reached)) => {
                    tracing::info!(consumer = %name, "consumer stopped");
                }
                Err(e) => tracing::error!(error = %e, "consumer task failed"),
            }
        }
        // With every consumer stopped the scheduler stops too, between two
        // of its steps.
        let _ = self.shutdown.send(true);
        if let Some(scheduler) = scheduler
            && let Err(e) = scheduler.await
        {
            tracing::error!(error = %e, "dormancy scheduler task failed");
        }
    }

    /// Asks every consumer to stop after its current batch, and waits.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// Asks to stop without waiting (for signal handlers).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Connects, prepares the bookkeeping tables, and starts every consumer with
/// the notifier the settings name.
pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    let notifier: Arc<dyn Notifier> = notifier::from_settings(&settings.notifier)?.into();
    start_with(settings, notifier).await
}

/// [`start`] with a given notifier.
pub async fn start_with(
    settings: &Settings,
    notifier: Arc<dyn Notifier>,
) -> anyhow::Result<Running> {
    mileage_service::telemetry::prometheus();
    series_at_zero();
    let pg = PgEventStore::connect(&settings.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("database_url: {e}"))?;
    let keys: Arc<dyn KeyStore> = Arc::new(PgKeyStore::new(pg.pool().clone()));
    let store: Arc<dyn EventStore> =
        mileage_service::settings::event_store(settings.eventstoredb_url.as_deref(), pg).await?;
    let read_config: tokio_postgres::Config = settings
        .read_database_url
        .parse()
        .map_err(|e| anyhow::anyhow!("malformed read_database_url: {e}"))?;
    prepare_bookkeeping(&read_config).await?;

    let (shutdown, stop_rx) = watch::channel(false);
    let runner = Runner::new(
        Arc::clone(&store),
        &settings.read_database_url,
        settings.batch_size,
        stop_rx.clone(),
    )?;
    let mut tasks = JoinSet::new();
    for consumer in consumers(&store, &keys, notifier, &settings.dormancy) {
        let runner = runner.clone();
        tasks.spawn(async move {
            let name = consumer.name().to_owned();
            (name, runner.run(consumer).await)
        });
    }
    let scheduler = if settings.dormancy.applies {
        let scheduler = crate::scheduler::Scheduler::new(
            Arc::clone(&store),
            Arc::clone(&keys),
            read_config.clone(),
            settings.dormancy.clone(),
            stop_rx.clone(),
        );
        Some(tokio::spawn(scheduler.run()))
    } else {
        None
    };
    let (lags, lags_rx) = watch::channel(crate::head::Lags::new());
    tokio::spawn(crate::head::publish(
        Arc::clone(&store),
        read_config.clone(),
        lags,
        stop_rx.clone(),
    ));
    let listener = mileage_service::bind(settings.addr).await?;
    let port = listener.local_addr()?.port();
    let app = crate::http::router(crate::http::Probe {
        store,
        read_config,
        lags: lags_rx,
        dormancy: settings.dormancy.clone(),
    });
    let mut http_stop = stop_rx;
    tokio::spawn(async move {
        let stopped = async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        };
        if let Err(e) = mileage_service::serve(listener, app, stopped).await {
            tracing::error!(error = %e, "projector HTTP endpoint failed");
        }
    });
    Ok(Running {
        port,
        shutdown,
        tasks,
        scheduler,
    })
}

/// Creates the bookkeeping tables in the read database, and the dormancy
/// scheduler's, if missing.
async fn prepare_bookkeeping(read_config: &tokio_postgres::Config) -> anyhow::Result<()> {
    let (client, connection) = read_config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| anyhow::anyhow!("read_database_url: cannot reach the read database: {e}"))?;
    let connection = tokio::spawn(connection);
    let migrated = match mileage_read_model::bookkeeping::migrate(&client).await {
        Ok(()) => mileage_read_model::dormancy::migrate(&client).await,
        failed => failed,
    };
    drop(client);
    connection.abort();
    Ok(migrated?)
}

/// Every projection and process manager the projector runs.
fn consumers(
    store: &Arc<dyn EventStore>,
    keys: &Arc<dyn KeyStore>,
    notifier: Arc<dyn Notifier>,
    dormancy: &crate::config::DormancySettings,
) -> Vec<Arc<dyn Consumer>> {
    let mut consumers: Vec<Arc<dyn Consumer>> = vec![
        Arc::new(Projection::<Managerpage>::live()),
        Arc::new(Projection::<Members>::live()),
        Arc::new(Projection::<Messages>::live()),
        Arc::new(Projection::<Phones>::live()),
        Arc::new(Projection::<Timeline>::live()),
        Arc::new(Notices::new(Arc::clone(store), Arc::clone(keys), notifier)),
        Arc::new(Destruction::new(Arc::clone(store), Arc::clone(keys))),
        Arc::new(Erasure::new(Arc::clone(store), Arc::clone(keys))),
        Arc::new(Releases::new(Arc::clone(store))),
    ];
    if dormancy.applies {
        consumers.push(Arc::new(Dormancy::new(
            Arc::clone(store),
            dormancy.policy,
            dormancy.clock.clone(),
        )));
    }
    consumers
}

/// Registers the process managers' counters (and the executor's, which
/// they command through) without changing any, so each has a series from
/// the first scrape; each consumer registers its own when it starts.
fn series_at_zero() {
    mileage_store::executor::series_at_zero();
    crate::scheduler::series_at_zero();
    for counter in [
        "notifier_retries_total",
        "destructions_total",
        "destructions_refused_total",
        "releases_undone_total",
        "person_keys_erased_total",
        "phone_claims_given_back_total",
        "eventstoredb_foreign_events_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
    for outcome in ["sent", "failed", "misconfigured", "postponed"] {
        metrics::counter!("notices_total", "outcome" => outcome).increment(0);
    }
}
