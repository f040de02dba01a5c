//! Load -> decide -> append: the only place the three meet.
//!
//! The stream is folded into state, the pure `decide` runs, and the events are
//! appended with the version that was read. When another writer got there
//! first, the command is decided again on the new state, a bounded number of
//! times, so two commands that together break a rule (two withdrawals that
//! overdraw) can never both succeed.

use mileage_domain::Aggregate;
use mileage_domain::envelope::Causation;
use mileage_store::{EventStore, ExpectedVersion, NewEvent, Position, StoreError};
use uuid::Uuid;

use crate::cache::StateCache;
use mileage_service::ApiError;

/// Attempts before a contended command gives up with 409.
const MAX_ATTEMPTS: usize = 5;

/// Events read per page while loading a stream.
const PAGE: usize = 1000;

/// What a handled command did.
#[derive(Debug, Clone)]
pub struct Handled<A> {
    /// The state after the command.
    pub state: A,
    /// The stream's last version after the command, `None` if still empty.
    pub version: Option<u64>,
    /// Global position of the last event written; `None` when the command was
    /// a no-op (already in the requested state).
    pub position: Option<Position>,
}

/// Folds a stream into its aggregate state and last version, starting from
/// the cached state when there is one and reading only what came after it.
pub async fn load<A>(
    store: &dyn EventStore,
    cache: &StateCache,
    stream: &str,
) -> Result<(A, Option<u64>), ApiError>
where
    A: Aggregate + Send + Sync + 'static,
{
    let (mut state, mut version) = cache.get::<A>(stream).unwrap_or_default();
    loop {
        let from = version.map_or(0, |v: u64| v + 1);
        let page = store.read_stream(stream, from, PAGE).await?;
        for recorded in &page {
            let event: A::Event = recorded.decode()?;
            state = state.evolve(&event);
            version = Some(recorded.stream_version);
        }
        if page.len() < PAGE {
            cache.put(stream, state.clone(), version);
            return Ok((state, version));
        }
    }
}

/// Handles `command` against `stream`, re-deciding on version conflicts.
#[tracing::instrument(skip(store, cache, command, causation), fields(correlation_id = %causation.correlation_id))]
pub async fn handle<A>(
    store: &dyn EventStore,
    cache: &StateCache,
    stream: &str,
    command: A::Command,
    causation: Causation,
) -> Result<Handled<A>, ApiError>
where
    A: Aggregate + Send + Sync + 'static,
    A::Command: Clone,
{
    for _ in 0..MAX_ATTEMPTS {
        let (state, version) = load::<A>(store, cache, stream).await?;
        let events = state
            .decide(command.clone())
            .map_err(|e| ApiError::domain(&e))?;
        if events.is_empty() {
            return Ok(Handled {
                state,
                version,
                position: None,
            });
        }
        let new: Vec<NewEvent> = events
            .iter()
            .map(|e| NewEvent::from_domain(Uuid::now_v7(), e, causation))
            .collect();
        let started = std::time::Instant::now();
        let appended = store
            .append(stream, ExpectedVersion::from_last(version), &new)
            .await;
        metrics::histogram!("event_store_append_seconds").record(started.elapsed().as_secs_f64());
        match appended {
            Ok(outcome) => {
                let state = events.iter().fold(state, A::evolve);
                cache.put(stream, state.clone(), Some(outcome.last_version));
                return Ok(Handled {
                    state,
                    version: Some(outcome.last_version),
                    position: Some(outcome.position),
                });
            }
            Err(StoreError::WrongExpectedVersion { .. }) => {
                metrics::counter!("command_conflicts_total").increment(1);
                tracing::debug!(stream, "version conflict; deciding again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    metrics::counter!("command_conflicts_exhausted_total").increment(1);
    Err(ApiError::Conflict)
}
