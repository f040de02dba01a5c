//! Process managers: consumers that react to events with commands. Each has
//! its own checkpoint; re-delivery is harmless because every step checks the
//! target stream's state first and appends with the version it read and
//! with event ids derived from the triggering event.

pub mod destruction;
pub mod notices;

use mileage_domain::Aggregate;
use mileage_domain::envelope::Causation;
use mileage_store::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};
use uuid::Uuid;

use crate::consumer::HandleError;

/// Events read per page when loading a stream.
const PAGE: usize = 500;

/// Namespace of the event ids process managers derive.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d69_6c65_6167_652d_7072_6f63_6573_7321);

/// The stream folded into its state and last version.
pub async fn load<A: Aggregate>(
    store: &dyn EventStore,
    stream: &str,
) -> Result<(A, Option<u64>), HandleError> {
    let mut state = A::default();
    let mut version = None;
    loop {
        let from = version.map_or(0, |v: u64| v + 1);
        let page = store.read_stream(stream, from, PAGE).await?;
        for recorded in &page {
            state = state.evolve(&recorded.decode::<A::Event>()?);
            version = Some(recorded.stream_version);
        }
        if page.len() < PAGE {
            return Ok((state, version));
        }
    }
}

/// What [`decide_and_append`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Events were appended (or had been, by an earlier delivery).
    Appended,
    /// The state already was the outcome: nothing to append.
    AlreadyDone,
    /// The domain refused; the reason.
    Refused(String),
}

/// Load -> decide -> append for a step caused by `trigger`, re-deciding on a
/// version conflict a few times. Event ids derive from the trigger, so a
/// second delivery of it cannot append twice.
pub async fn decide_and_append<A>(
    store: &dyn EventStore,
    stream: &str,
    command: &A::Command,
    trigger: &RecordedEvent,
) -> Result<Step, HandleError>
where
    A: Aggregate,
    A::Command: Clone,
{
    for _ in 0..5 {
        let (state, version) = load::<A>(store, stream).await?;
        let events = match state.decide(command.clone()) {
            Ok(events) => events,
            Err(refusal) => return Ok(Step::Refused(refusal.to_string())),
        };
        if events.is_empty() {
            return Ok(Step::AlreadyDone);
        }
        let causation = Causation::caused_by(trigger.metadata.correlation_id, trigger.event_id);
        let new: Vec<NewEvent> = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let id = Uuid::new_v5(
                    &NAMESPACE,
                    format!("{}/{stream}/{i}", trigger.event_id).as_bytes(),
                );
                NewEvent::from_domain(id, event, causation)
            })
            .collect();
        match store
            .append(stream, ExpectedVersion::from_last(version), &new)
            .await
        {
            Ok(_) | Err(StoreError::DuplicateEventId { .. }) => return Ok(Step::Appended),
            Err(StoreError::WrongExpectedVersion { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Err(HandleError::Transient(format!(
        "{stream} kept changing; will try again"
    )))
}
