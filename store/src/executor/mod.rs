//! Load -> decide -> append: the one place the three meet, for the command
//! API's handlers and the projector's process managers alike.
//!
//! The stream is folded into state (starting from a cached state when there
//! is one), the pure `decide` runs, and the events are appended with the
//! version that was read. When another writer got there first, the command
//! is decided again on the new state, a bounded number of times, so two
//! commands that together break a rule (two withdrawals that overdraw) can
//! never both succeed. How the appended events get their ids is the
//! caller's choice ([`EventIds`]): ids derived from what caused the command
//! make a second run of it append nothing new.

mod cache;

use std::num::NonZeroUsize;
use std::sync::Arc;

use mileage_domain::Aggregate;
use mileage_domain::envelope::Causation;
use uuid::Uuid;

pub use self::cache::StateCache;
use crate::{EventStore, ExpectedVersion, NewEvent, Position, StoreError};

/// Attempts before a contended command gives up.
pub const MAX_ATTEMPTS: usize = 5;

/// Events read per page while loading a stream.
const PAGE: usize = 1000;

/// Namespace of derived event ids (unchanged since the process managers
/// first derived them, so re-deliveries of old triggers still match).
const NAMESPACE: Uuid = Uuid::from_u128(0x6d69_6c65_6167_652d_7072_6f63_6573_7321);

/// How the events a command appends get their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventIds {
    /// New time-ordered ids on every attempt.
    Fresh,
    /// Ids derived from this seed (the triggering event's id), the stream
    /// and the event's place in the append: a second run of the same step
    /// appends the same ids, which the store recognises.
    DerivedFrom(Uuid),
}

impl EventIds {
    /// The id of the `index`th event appended to `stream`.
    pub fn id(self, stream: &str, index: usize) -> Uuid {
        match self {
            Self::Fresh => Uuid::now_v7(),
            Self::DerivedFrom(seed) => {
                Uuid::new_v5(&NAMESPACE, format!("{seed}/{stream}/{index}").as_bytes())
            }
        }
    }
}

/// What an executed command did.
#[derive(Debug, Clone)]
pub struct Executed<A> {
    /// The state after the command.
    pub state: A,
    /// The stream's last version after the command, `None` if still empty.
    pub version: Option<u64>,
    /// Global position of the last event written; `None` when the command
    /// decided nothing (already in the requested state).
    pub position: Option<Position>,
}

/// Why a command was not executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept changing the stream; retrying later may work.
    #[error("stream {stream} kept changing; gave up after {MAX_ATTEMPTS} attempts")]
    Contended {
        /// The stream.
        stream: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs commands against one event store, keeping folded states between
/// them.
pub struct Executor {
    store: Arc<dyn EventStore>,
    cache: StateCache,
}

impl Executor {
    /// An executor over `store` that keeps the states of up to
    /// `cached_streams` streams.
    pub fn new(store: Arc<dyn EventStore>, cached_streams: NonZeroUsize) -> Self {
        Self {
            store,
            cache: StateCache::new(cached_streams),
        }
    }

    /// The event store commands are appended to.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Folds `stream` into its aggregate state and last version, starting
    /// from the cached state when there is one and reading only what came
    /// after it.
    pub async fn load<A>(&self, stream: &str) -> Result<(A, Option<u64>), StoreError>
    where
        A: Aggregate + Send + Sync + 'static,
    {
        let (mut state, mut version) = self.cache.get::<A>(stream).unwrap_or_default();
        loop {
            let from = version.map_or(0, |v: u64| v + 1);
            let page = self.store.read_stream(stream, from, PAGE).await?;
            for recorded in &page {
                let event: A::Event = recorded.decode()?;
                state = state.evolve(&event);
                version = Some(recorded.stream_version);
            }
            if page.len() < PAGE {
                self.cache.put(stream, state.clone(), version);
                return Ok((state, version));
            }
        }
    }

    /// Runs `command` against `stream`, re-deciding on version conflicts up
    /// to [`MAX_ATTEMPTS`] times.
    #[tracing::instrument(skip_all, fields(stream, correlation_id = %causation.correlation_id))]
    pub async fn execute<A>(
        &self,
        stream: &str,
        command: A::Command,
        ids: EventIds,
        causation: Causation,
    ) -> Result<Executed<A>, ExecuteError<A::Error>>
    where
        A: Aggregate + Send + Sync + 'static,
        A::Command: Clone,
    {
        for _ in 0..MAX_ATTEMPTS {
            let (state, version) = self.load::<A>(stream).await?;
            let events = state
                .decide(command.clone())
                .map_err(ExecuteError::Rejected)?;
            if events.is_empty() {
                return Ok(Executed {
                    state,
                    version,
                    position: None,
                });
            }
            let new: Vec<NewEvent> = events
                .iter()
                .enumerate()
                .map(|(i, e)| NewEvent::from_domain(ids.id(stream, i), e, causation))
                .collect();
            let started = std::time::Instant::now();
            let appended = self
                .store
                .append(stream, ExpectedVersion::from_last(version), &new)
                .await;
            metrics::histogram!("event_store_append_seconds")
                .record(started.elapsed().as_secs_f64());
            match appended {
                Ok(outcome) => {
                    let state = events.iter().fold(state, A::evolve);
                    self.cache
                        .put(stream, state.clone(), Some(outcome.last_version));
                    return Ok(Executed {
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
        Err(ExecuteError::Contended {
            stream: stream.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::EventIds;

    #[test]
    fn derived_ids_repeat_for_the_same_step_and_differ_otherwise() {
        let seed = Uuid::from_u128(7);
        let ids = EventIds::DerivedFrom(seed);
        assert_eq!(ids.id("member-1", 0), ids.id("member-1", 0));
        assert_ne!(ids.id("member-1", 0), ids.id("member-1", 1));
        assert_ne!(ids.id("member-1", 0), ids.id("member-2", 0));
        assert_ne!(
            ids.id("member-1", 0),
            EventIds::DerivedFrom(Uuid::from_u128(8)).id("member-1", 0)
        );
        assert_ne!(EventIds::Fresh.id("s", 0), EventIds::Fresh.id("s", 0));
    }

    #[test]
    fn derived_ids_keep_the_process_managers_historic_derivation() {
        let trigger = Uuid::from_u128(42);
        let expected = Uuid::new_v5(
            &Uuid::from_u128(0x6d69_6c65_6167_652d_7072_6f63_6573_7321),
            format!("{trigger}/managerMessage-1/0").as_bytes(),
        );
        assert_eq!(
            EventIds::DerivedFrom(trigger).id("managerMessage-1", 0),
            expected
        );
    }
}
