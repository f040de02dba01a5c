//! Building and running the service: bind first (so tests can use port 0),
//! serve until SIGTERM or Ctrl-C, then drain.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use mileage_service::auth::Verifier;
use mileage_service::settings::event_store;
use mileage_store::EventStore;
use mileage_store::executor::Executor;
use mileage_store::keys::PgKeyStore;
use mileage_store::postgres::PgEventStore;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::context::Context;
use crate::idempotency::IdempotencyStore;
use crate::ids::IdAllocator;
use crate::members::Members;
use crate::release_guard::JoinGuard;
use crate::routes::router;
use crate::state::AppState;
use mileage_service::limits::RateLimits;

/// Streams whose folded state is kept between commands (a few hundred bytes
/// each).
const STATE_CACHE_STREAMS: NonZeroUsize = NonZeroUsize::new(10_000).expect("not zero");

/// Connections of the idempotency table's pool: two short statements per
/// keyed command (claim, answer), which commit without waiting for the
/// disk; as many as the event store's pool, so keyed commands never queue
/// for one (with 8, 32 clients waited on the pool: a third of the rate).
const IDEMPOTENCY_CONNECTIONS: usize = 16;
/// How often expired idempotency keys are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// How often person keys that seal nothing are looked for, and how old a
/// key must be before it is (far longer than any join or registration).
const SWEEP_KEYS_EVERY: Duration = Duration::from_secs(600);
const UNUSED_KEY_GRACE: Duration = Duration::from_secs(3600);

/// A bound, ready-to-run service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    idempotency: IdempotencyStore,
    idempotency_retention: Duration,
    cors_origins: Vec<String>,
    rate_limits: RateLimits,
    person_keys: Arc<PgKeyStore>,
}

impl Application {
    /// Connects the event store (applying its migrations) and binds the port.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        mileage_service::telemetry::prometheus();
        series_at_zero();
        let verifier =
            Arc::new(Verifier::from_keys(&settings.jwt)?.with_rules(&settings.token_rules));
        let pg = PgEventStore::connect(&settings.database_url)
            .await
            .map_err(|e| anyhow::anyhow!("database_url: {e}"))?;
        let keys = Arc::new(if settings.eventstoredb_url.is_none() {
            PgKeyStore::sharing_wal_with_events(&pg)?
        } else {
            PgKeyStore::new(pg.pool().clone())
        });
        let idempotency_pool = pg.lazy_commit_pool(IDEMPOTENCY_CONNECTIONS)?;
        let person_keys = Arc::clone(&keys);
        let store = event_store(settings.eventstoredb_url.as_deref(), pg).await?;
        let idempotency = IdempotencyStore::new(
            idempotency_pool,
            settings.idempotency_lease,
            store.idempotency().records_request_keys,
        )
        .await?;
        let executor = Arc::new(Executor::new(store, STATE_CACHE_STREAMS));
        let listener = mileage_service::bind(settings.addr).await?;
        let ctx = Context {
            ids: Arc::new(IdAllocator::new(Arc::clone(&executor))),
            executor,
            keys,
        };
        let members = Arc::new(Members::new(
            ctx.clone(),
            settings.phone_secret.expose_secret().as_bytes().into(),
        ));
        Ok(Self {
            listener,
            state: AppState {
                join: Arc::new(JoinGuard::new(settings.join.clone(), Arc::clone(&members))),
                ctx,
                members,
                verifier,
                points: settings.points,
            },
            idempotency,
            idempotency_retention: settings.idempotency_retention,
            cors_origins: settings.cors_allowed_origins.clone(),
            rate_limits: settings.rate_limits.clone(),
            person_keys,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// Serves until a shutdown signal, then finishes in-flight requests.
    /// Expired idempotency keys are deleted meanwhile.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let purge = tokio::spawn(
            self.idempotency
                .clone()
                .purge_forever(self.idempotency_retention, PURGE_EVERY),
        );
        let sweep = tokio::spawn(sweep_unused_keys(
            Arc::clone(&self.person_keys),
            Arc::clone(self.state.ctx.executor.store()),
        ));
        let served = mileage_service::serve(
            self.listener,
            router(
                self.state,
                self.idempotency,
                &self.cors_origins,
                &self.rate_limits,
            ),
            mileage_service::shutdown::signal(),
        )
        .await;
        purge.abort();
        sweep.abort();
        served
    }
}

/// Deletes, now and then, the person keys that a crash left sealing
/// nothing (made for a join or registration whose append never happened).
async fn sweep_unused_keys(keys: Arc<PgKeyStore>, events: Arc<dyn EventStore>) {
    let mut ticks = tokio::time::interval(SWEEP_KEYS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match keys.sweep_unused(events.as_ref(), UNUSED_KEY_GRACE).await {
            Ok(swept) => {
                metrics::counter!("person_keys_swept_total").increment(swept.deleted);
                if swept.deleted > 0 {
                    tracing::info!(deleted = swept.deleted, "unused person keys deleted");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot sweep unused person keys"),
        }
    }
}

/// Registers every series this service counts without changing any, so
/// each rule and dashboard query has a series from the first scrape.
fn series_at_zero() {
    mileage_service::telemetry::requests_at_zero();
    mileage_store::executor::series_at_zero();
    for counter in [
        "release_breaker_rejected_total",
        "idempotency_in_flight_total",
        "person_keys_swept_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
    metrics::gauge!("release_breaker_state").increment(0.0);
}
