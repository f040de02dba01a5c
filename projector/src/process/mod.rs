//! Process managers: consumers that react to events with commands. Each has
//! its own checkpoint; re-delivery is harmless because every step checks the
//! target stream's state first and appends with the version it read and
//! with event ids derived from the triggering event.

pub(crate) mod destruction;
pub(crate) mod dormancy;
pub(crate) mod erasure;
pub(crate) mod notices;
pub(crate) mod releases;

use mileage_domain::Aggregate;
use mileage_domain::envelope::{Actor, Causation};
use mileage_store::executor::{EventIds, ExecuteError, Executor};
use mileage_store::{RecordedEvent, StoreError};
use tracing::Instrument;

use crate::consumer::HandleError;

/// Streams whose folded state each process manager keeps between events.
const CACHED_STREAMS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(1024).expect("not zero");

/// The executor a process manager commands through.
fn executor(store: std::sync::Arc<dyn mileage_store::EventStore>) -> Executor {
    Executor::new(store, CACHED_STREAMS)
}

/// What [`decide_and_append`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Events were appended (or had been, by an earlier delivery).
    Appended,
    /// The state already was the outcome: nothing to append.
    AlreadyDone,
    /// The domain refused; the reason.
    Refused(String),
}

/// The stream folded into its state and last version.
pub(crate) async fn load<A>(
    executor: &Executor,
    stream: &str,
) -> Result<(A, Option<u64>), HandleError>
where
    A: Aggregate + Send + Sync + 'static,
{
    Ok(executor.load::<A>(stream).await?)
}

/// Load -> decide -> append for a step caused by `trigger`, through the
/// one executor. Event ids derive from the trigger, so a second delivery of
/// it cannot append twice. The events record `system:{manager}` as their
/// actor.
pub(crate) async fn decide_and_append<A>(
    manager: &str,
    executor: &Executor,
    stream: &str,
    command: &A::Command,
    trigger: &RecordedEvent,
) -> Result<Step, HandleError>
where
    A: Aggregate + Send + Sync + 'static,
    A::Command: Clone,
{
    // The follow-up continues the trigger's trace, in a span of its own.
    let span = tracing::info_span!("follow_up", %stream, cause = %trigger.event_type);
    let trace = mileage_service::traces::enter(&span, trigger.metadata.trace);
    let causation = Causation::caused_by(trigger.metadata.correlation_id, trigger.event_id)
        .in_trace(Some(trace))
        .by(Actor::system(manager));
    match executor
        .execute::<A>(
            stream,
            command.clone(),
            EventIds::DerivedFrom(trigger.event_id),
            causation,
        )
        .instrument(span)
        .await
    {
        Ok(executed) if executed.position.is_none() => Ok(Step::AlreadyDone),
        Ok(_) | Err(ExecuteError::Store(StoreError::DuplicateEventId { .. })) => Ok(Step::Appended),
        Err(ExecuteError::Rejected(refusal)) => Ok(Step::Refused(refusal.to_string())),
        Err(ExecuteError::Contended { .. }) => Err(HandleError::Transient(format!(
            "{stream} kept changing; will try again"
        ))),
        Err(ExecuteError::Store(other)) => Err(other.into()),
    }
}
