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
//! (a trigger event, an `Idempotency-Key`) make a second run of it append
//! nothing new: before deciding, the executor looks for the first event it
//! would append, and when it is there answers the first run's outcome
//! (the state as of that append) instead of deciding again.
//!
//! A command on two streams ([`Executor::execute_pair`]) is decided on both
//! and appended in one multi-stream append, all or nothing where the store
//! is atomic (see `EventStore::multi_stream_atomic`).

mod cache;

use std::num::NonZeroUsize;
use std::sync::Arc;

use mileage_domain::Aggregate;
use mileage_domain::envelope::Causation;
use uuid::Uuid;

pub use self::cache::StateCache;
use crate::{
    AppendOutcome, EventStore, ExpectedVersion, NewEvent, Position, RequestKey, StoreError,
    StreamAppend,
};

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
    /// Ids derived from a keyed command's request, as
    /// [`EventIds::DerivedFrom`] its [`RequestKey::request`]; the command's
    /// append also carries the key, so on a store that records request
    /// keys another request under the key, or a refusal kept for it, stops
    /// the append ([`StoreError::RequestKeyUsed`]).
    Keyed(RequestKey),
}

impl EventIds {
    /// The id of the `index`th event appended to `stream`.
    pub fn id(self, stream: &str, index: usize) -> Uuid {
        match self {
            Self::Fresh => Uuid::now_v7(),
            Self::DerivedFrom(seed) | Self::Keyed(RequestKey { request: seed, .. }) => {
                Uuid::new_v5(&NAMESPACE, format!("{seed}/{stream}/{index}").as_bytes())
            }
        }
    }

    /// The request key an append of these ids carries.
    fn request(self) -> Option<RequestKey> {
        match self {
            Self::Keyed(key) => Some(key),
            Self::Fresh | Self::DerivedFrom(_) => None,
        }
    }
}

/// What the first decision of a command on two streams is made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstDecision {
    /// The streams as read from the store: one read each.
    OnRead,
    /// What is known without reading: the cached state, or an empty stream
    /// when nothing is cached. For streams that are new in the common case
    /// (a join's member and phone-claim streams), so the happy path reads
    /// nothing. A refusal, a no-op or a version conflict on that attempt
    /// is decided again on the streams as read, so the outcome is the
    /// same as with [`FirstDecision::OnRead`]; only a wrong guess costs
    /// more.
    OnKnown,
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
    /// The command had been applied before (same derived event ids): this
    /// is the first run's outcome, and nothing was appended now.
    pub replayed: bool,
}

/// What [`Executor::execute_pair`] answers: both outcomes, or why not.
pub type PairResult<A, B> = Result<
    (Executed<A>, Executed<B>),
    ExecuteError<Refused<<A as Aggregate>::Error, <B as Aggregate>::Error>>,
>;

/// Which of a pair's commands was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused<A, B> {
    /// The first stream's aggregate refused.
    #[error(transparent)]
    First(A),
    /// The second stream's aggregate refused.
    #[error(transparent)]
    Second(B),
}

/// Why a command was not executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept changing the stream; retrying later may work.
    #[error("stream {stream} kept changing; gave up after {MAX_ATTEMPTS} attempts")]
    Contended { stream: String },
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
        let (mut state, mut version) = self.known::<A>(stream);
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
    /// to [`MAX_ATTEMPTS`] times. With derived ids, an earlier attempt of
    /// the same command that is in the log answers instead (see
    /// [`Executor::replayed`]): looked for before deciding on a store that
    /// would store the same ids again at another version, and otherwise only
    /// when the store recognises the ids or the decision refuses or does
    /// nothing, so the happy path reads nothing more than without a key.
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
        let look_first = self.looks_first(ids);
        for _ in 0..MAX_ATTEMPTS {
            if let Some(first) = self.earlier_attempt::<A>(stream, ids).await? {
                return Ok(first);
            }
            let (state, version) = self.load::<A>(stream).await?;
            let events = match state.decide(command.clone()) {
                Ok(events) if !events.is_empty() => events,
                // Refused, or nothing to do: unless an earlier attempt of
                // this very command is what made it so.
                decided => {
                    if !look_first && let Some(first) = self.replayed::<A>(stream, ids).await? {
                        return Ok(first);
                    }
                    return decided
                        .map(|_| unchanged(state, version))
                        .map_err(ExecuteError::Rejected);
                }
            };
            let new = new_events(stream, &events, ids, &causation, true);
            let expected = ExpectedVersion::from_last(version);
            let appended = timed(self.store.append(stream, expected, &new)).await;
            fail::fail_point!("executor::after_append", |_| Err(lost_answer()));
            match appended {
                Ok(outcome) => {
                    // Stored by an earlier attempt, perhaps at another
                    // version and on another state: its outcome, from the
                    // log.
                    let parts = [(stream, new.as_slice(), &outcome)];
                    if outcome.already_appended || self.another_attempts(ids, &parts).await? {
                        return self.first_outcome::<A>(stream, ids).await;
                    }
                    return Ok(self.applied(stream, state, &events, outcome));
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    conflicted(false);
                    tracing::debug!(stream, "version conflict; deciding again");
                }
                // Another attempt's events, or its key: that attempt's
                // outcome when it is this command's, else the refusal.
                Err(
                    e @ (StoreError::DuplicateEventId { .. } | StoreError::RequestKeyUsed { .. }),
                ) => {
                    return match self.replayed::<A>(stream, ids).await? {
                        Some(first) => Ok(first),
                        None => Err(e.into()),
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(contended(stream))
    }

    /// Runs `first` against its stream and `second` against its stream as
    /// one command: both are decided on their current states and whatever
    /// they decide is appended in one multi-stream append, each part with
    /// the version read; on a conflict both are decided again.
    /// The first decision is made on what `first_decision` says. An earlier
    /// attempt is found as by [`Executor::execute`], by the first stream:
    /// its outcome there, and the second stream's as that attempt left it.
    #[tracing::instrument(skip_all, fields(first = first.0, second = second.0, correlation_id = %causation.correlation_id))]
    pub async fn execute_pair<A, B>(
        &self,
        first: (&str, A::Command),
        second: (&str, B::Command),
        first_decision: FirstDecision,
        ids: EventIds,
        causation: Causation,
    ) -> PairResult<A, B>
    where
        A: Aggregate + Send + Sync + 'static,
        A::Command: Clone,
        B: Aggregate + Send + Sync + 'static,
        B::Command: Clone,
    {
        let ((stream_a, command_a), (stream_b, command_b)) = (first, second);
        let streams = (stream_a, stream_b);
        let look_first = self.looks_first(ids);
        let mut on_known = first_decision == FirstDecision::OnKnown;
        for _ in 0..MAX_ATTEMPTS + usize::from(on_known) {
            if look_first && let Some(found) = self.pair_replayed::<A, B>(streams, ids).await? {
                return Ok(found);
            }
            let ((state_a, version_a), (state_b, version_b)) = if on_known {
                (self.known::<A>(stream_a), self.known::<B>(stream_b))
            } else {
                futures::try_join!(self.load::<A>(stream_a), self.load::<B>(stream_b))?
            };
            let decided = decide_both(&state_a, &command_a, &state_b, &command_b);
            let (events_a, events_b) = match decided {
                Ok((a, b)) if !(a.is_empty() && b.is_empty()) => (a, b),
                // Refused, or nothing to do, on what was only assumed: see
                // whether the streams as they are say the same.
                _ if on_known => {
                    on_known = false;
                    continue;
                }
                // Refused, or nothing to do: unless an earlier attempt of
                // this very command is what made it so.
                decided => {
                    if !look_first
                        && let Some(found) = self.pair_replayed::<A, B>(streams, ids).await?
                    {
                        return Ok(found);
                    }
                    return decided
                        .map(|_| (unchanged(state_a, version_a), unchanged(state_b, version_b)))
                        .map_err(ExecuteError::Rejected);
                }
            };
            let new_a = new_events(stream_a, &events_a, ids, &causation, true);
            let new_b = new_events(stream_b, &events_b, ids, &causation, events_a.is_empty());
            let parts =
                non_empty_parts([(stream_a, version_a, &new_a), (stream_b, version_b, &new_b)]);
            let appended = timed(self.store.append_many(&parts)).await;
            fail::fail_point!("executor::after_append", |_| Err(lost_answer()));
            let another = match &appended {
                Ok(outcomes) => {
                    let sent = parts.iter().zip(outcomes);
                    let sent: Vec<_> = sent.map(|(p, o)| (p.stream, p.events, o)).collect();
                    outcomes.iter().any(|o| o.already_appended)
                        || self.another_attempts(ids, &sent).await?
                }
                Err(_) => false,
            };
            match appended {
                Ok(_) if another => {
                    return self
                        .pair_replayed::<A, B>(streams, ids)
                        .await?
                        .ok_or_else(|| not_found_again(stream_a).into());
                }
                Ok(outcomes) => {
                    let a = (stream_a, state_a, version_a, events_a);
                    let b = (stream_b, state_b, version_b, events_b);
                    return Ok(self.pair_applied(a, b, outcomes)?);
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    conflicted(std::mem::take(&mut on_known));
                    tracing::debug!(stream_a, stream_b, "version conflict; deciding again");
                }
                // Part of the append is an earlier attempt's (the first
                // stream's part, the second's having gone to a stream that
                // attempt did not use): that attempt's outcome.
                Err(
                    e @ (StoreError::DuplicateEventId { .. } | StoreError::RequestKeyUsed { .. }),
                ) => {
                    return match self.pair_replayed::<A, B>(streams, ids).await? {
                        Some(found) => Ok(found),
                        None => Err(e.into()),
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(contended(stream_a))
    }

    /// The outcomes of a command on two streams whose decisions (each
    /// stream, the state it was decided on, its version and its events)
    /// were appended with `outcomes`: one per part, in order, a part being
    /// left out when its command decided nothing.
    fn pair_applied<A, B>(
        &self,
        (stream_a, state_a, version_a, events_a): (&str, A, Option<u64>, Vec<A::Event>),
        (stream_b, state_b, version_b, events_b): (&str, B, Option<u64>, Vec<B::Event>),
        outcomes: Vec<AppendOutcome>,
    ) -> Result<(Executed<A>, Executed<B>), StoreError>
    where
        A: Aggregate + Send + Sync + 'static,
        B: Aggregate + Send + Sync + 'static,
    {
        let mut outcomes = outcomes.into_iter();
        let a = if events_a.is_empty() {
            unchanged(state_a, version_a)
        } else {
            let outcome = outcomes.next().ok_or_else(missing_outcome)?;
            self.applied(stream_a, state_a, &events_a, outcome)
        };
        let b = if events_b.is_empty() {
            unchanged(state_b, version_b)
        } else {
            let outcome = outcomes.next().ok_or_else(missing_outcome)?;
            self.applied(stream_b, state_b, &events_b, outcome)
        };
        Ok(at_the_later_position(a, b))
    }

    /// Whether a command with `ids` must look for an earlier attempt
    /// before deciding: derived ids on a store that would store them again
    /// at another version of the stream (EventStoreDB recognises a retry
    /// only under the same expectation). PostgreSQL refuses a stored id
    /// anywhere, so there the append itself tells.
    fn looks_first(&self, ids: EventIds) -> bool {
        ids != EventIds::Fresh && !self.store.idempotency().ids_unique_across_streams
    }

    /// An earlier attempt of a command with `ids` on `stream`, looked for
    /// only on a store that would store the same ids again at another
    /// version (EventStoreDB), where the append cannot tell: before
    /// deciding, or before a caller draws new ids (a join's member id, a
    /// registration's target id). Elsewhere `None`, and the append that
    /// finds the earlier attempt answers it instead.
    pub async fn earlier_attempt<A>(
        &self,
        stream: &str,
        ids: EventIds,
    ) -> Result<Option<Executed<A>>, StoreError>
    where
        A: Aggregate + Send + Sync + 'static,
    {
        if self.looks_first(ids) {
            self.replayed::<A>(stream, ids).await
        } else {
            Ok(None)
        }
    }

    /// An earlier attempt of a command on two streams, found by the first
    /// stream: its outcome there, and the second stream's own outcome of
    /// that attempt when it is there, otherwise the second stream as it
    /// stands (a store whose parts are appended in order lost it, or the
    /// attempt appended nothing there).
    async fn pair_replayed<A, B>(
        &self,
        (stream_a, stream_b): (&str, &str),
        ids: EventIds,
    ) -> Result<Option<(Executed<A>, Executed<B>)>, StoreError>
    where
        A: Aggregate + Send + Sync + 'static,
        B: Aggregate + Send + Sync + 'static,
    {
        let Some(a) = self.replayed::<A>(stream_a, ids).await? else {
            return Ok(None);
        };
        let b = match self.replayed::<B>(stream_b, ids).await? {
            Some(b) => b,
            None => self.current::<B>(stream_b).await?,
        };
        Ok(Some(at_the_later_position(a, b)))
    }

    /// Whether a successful append of events with `ids` (each part: its
    /// stream, the events sent, the store's outcome) was another attempt's
    /// after all: only on a store that answers a recognised retry like a
    /// first write (EventStoreDB), and only for derived ids, the one case
    /// where two attempts share ids. Another attempt of the same command
    /// may have decided other data under them (a later time, a sealed
    /// value with its own nonce), which is then what the stream holds,
    /// and what its outcome and cached state must follow.
    async fn another_attempts(
        &self,
        ids: EventIds,
        parts: &[(&str, &[NewEvent], &AppendOutcome)],
    ) -> Result<bool, StoreError> {
        if ids == EventIds::Fresh || self.store.idempotency().retry_reported {
            return Ok(false);
        }
        for (stream, events, outcome) in parts {
            if !crate::stored_as_sent(self.store.as_ref(), stream, events, outcome).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The outcome of the earlier attempt a store said it recognised.
    async fn first_outcome<A>(
        &self,
        stream: &str,
        ids: EventIds,
    ) -> Result<Executed<A>, ExecuteError<A::Error>>
    where
        A: Aggregate + Send + Sync + 'static,
    {
        self.replayed::<A>(stream, ids)
            .await?
            .ok_or_else(|| not_found_again(stream).into())
    }

    /// The first run's outcome of a command whose event ids derive from
    /// `ids`, when its first event is in `stream`: the state as of the last
    /// event that run appended there. `None` for fresh ids or a command
    /// not applied before.
    pub async fn replayed<A>(
        &self,
        stream: &str,
        ids: EventIds,
    ) -> Result<Option<Executed<A>>, StoreError>
    where
        A: Aggregate + Send + Sync + 'static,
    {
        if ids == EventIds::Fresh {
            return Ok(None);
        }
        let Some(first) = self.store.find_in_stream(stream, ids.id(stream, 0)).await? else {
            return Ok(None);
        };
        // Fold everything before the first run's append, then its events
        // for as long as their ids are the ones that run derived.
        let mut state = A::default();
        let (mut version, mut position) = (first.stream_version, first.position);
        let mut from = 0;
        'read: loop {
            let page = self.store.read_stream(stream, from, PAGE).await?;
            for recorded in &page {
                if let Some(index) = recorded.stream_version.checked_sub(first.stream_version) {
                    let index = usize::try_from(index).unwrap_or(usize::MAX);
                    if recorded.event_id != ids.id(stream, index) {
                        break 'read;
                    }
                    (version, position) = (recorded.stream_version, recorded.position);
                }
                state = state.evolve(&recorded.decode::<A::Event>()?);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => from = last.stream_version + 1,
                _ => break,
            }
        }
        metrics::counter!("command_replays_total").increment(1);
        Ok(Some(Executed {
            state,
            version: Some(version),
            position: Some(position),
            replayed: true,
        }))
    }

    /// What is known of `stream` without reading it: its cached state, or
    /// an empty stream.
    fn known<A>(&self, stream: &str) -> (A, Option<u64>)
    where
        A: Aggregate + Send + Sync + 'static,
    {
        self.cache.get::<A>(stream).unwrap_or_default()
    }

    /// The current state of `stream`, as an outcome that appended nothing.
    async fn current<A>(&self, stream: &str) -> Result<Executed<A>, StoreError>
    where
        A: Aggregate + Send + Sync + 'static,
    {
        let (state, version) = self.load::<A>(stream).await?;
        Ok(unchanged(state, version))
    }

    /// The outcome of appending `events` decided on `state`.
    fn applied<A>(
        &self,
        stream: &str,
        state: A,
        events: &[A::Event],
        outcome: AppendOutcome,
    ) -> Executed<A>
    where
        A: Aggregate + Send + Sync + 'static,
    {
        let state = events.iter().fold(state, A::evolve);
        self.cache
            .put(stream, state.clone(), Some(outcome.last_version));
        Executed {
            state,
            version: Some(outcome.last_version),
            position: Some(outcome.position),
            replayed: false,
        }
    }
}

/// What a failpoint after an append answers: the append committed, the
/// answer did not arrive (a timeout, a cut connection, a crash).
#[allow(
    dead_code,
    reason = "failpoints exist in test builds only (the `fail` crate's feature)"
)]
fn lost_answer<E>() -> ExecuteError<E> {
    ExecuteError::Store(StoreError::OutcomeUnknown(
        "failpoint executor::after_append: the answer was lost".into(),
    ))
}

/// The outcomes of one command on two streams, both at the later of the
/// positions it wrote: where readers see all of it. One rule for every way
/// the outcome is known, so every attempt of a command answers the same
/// position: a store may answer each part at its own last event (in order,
/// PostgreSQL) or every part at the append's last event (KurrentDB's
/// `AppendSession`), and a replay reads each part's last event from the
/// log; the later of the two is the same in all of them.
fn at_the_later_position<A, B>(
    mut a: Executed<A>,
    mut b: Executed<B>,
) -> (Executed<A>, Executed<B>) {
    if let (Some(pa), Some(pb)) = (a.position, b.position) {
        let later = pa.max(pb);
        (a.position, b.position) = (Some(later), Some(later));
    }
    (a, b)
}

/// An outcome that appended nothing.
fn unchanged<A>(state: A, version: Option<u64>) -> Executed<A> {
    Executed {
        state,
        version,
        position: None,
        replayed: false,
    }
}

/// A store that answered a multi-stream append with fewer outcomes than
/// parts: a bug in the adapter, not a refusal.
fn missing_outcome() -> StoreError {
    StoreError::Backend("a multi-stream append answered fewer outcomes than parts".into())
}

/// A store that said an append was stored before, whose events its own
/// stream then does not hold: a bug in the adapter, never a success.
fn not_found_again(stream: &str) -> StoreError {
    StoreError::Backend(format!(
        "the store recognised an earlier append to {stream}, which reading the stream does not find"
    ))
}

/// The parts of a multi-stream append that have events, each under the
/// version its events were decided on.
fn non_empty_parts<'a>(
    decided: [(&'a str, Option<u64>, &'a Vec<NewEvent>); 2],
) -> Vec<StreamAppend<'a>> {
    decided
        .into_iter()
        .filter(|(_, _, events)| !events.is_empty())
        .map(|(stream, version, events)| StreamAppend {
            stream,
            expected: ExpectedVersion::from_last(version),
            events,
        })
        .collect()
}

/// The events to append, with their ids; the first carries the request
/// key of keyed ids when `first_part` (the append's first part with
/// events).
fn new_events<E: mileage_domain::event::EventPayload>(
    stream: &str,
    events: &[E],
    ids: EventIds,
    causation: &Causation,
    first_part: bool,
) -> Vec<NewEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| NewEvent {
            request: ids.request().filter(|_| first_part && i == 0),
            ..NewEvent::from_domain(ids.id(stream, i), e, causation.clone())
        })
        .collect()
}

/// Registers the executor's counters and its append timing without changing
/// them, so each has a series from a service's first scrape.
pub fn series_at_zero() {
    for counter in [
        "command_conflicts_total",
        "command_assumptions_missed_total",
        "command_conflicts_exhausted_total",
        "command_replays_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
    let _ = metrics::histogram!("event_store_append_seconds");
}

/// Counts an append refused for its expected version: a decision made on
/// states only assumed (`assumed`: the streams are read next time) or a
/// concurrent writer's win.
fn conflicted(assumed: bool) {
    if assumed {
        metrics::counter!("command_assumptions_missed_total").increment(1);
    } else {
        metrics::counter!("command_conflicts_total").increment(1);
    }
}

/// `append`, timed into `event_store_append_seconds`.
async fn timed<T>(append: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let outcome = append.await;
    metrics::histogram!("event_store_append_seconds").record(started.elapsed().as_secs_f64());
    outcome
}

/// Both decisions of a command on two streams, the first one's refusal
/// first.
#[expect(
    clippy::type_complexity,
    reason = "the two aggregates' events and refusals"
)]
fn decide_both<A: Aggregate, B: Aggregate>(
    state_a: &A,
    command_a: &A::Command,
    state_b: &B,
    command_b: &B::Command,
) -> Result<(Vec<A::Event>, Vec<B::Event>), Refused<A::Error, B::Error>>
where
    A::Command: Clone,
    B::Command: Clone,
{
    let a = state_a.decide(command_a.clone()).map_err(Refused::First)?;
    let b = state_b.decide(command_b.clone()).map_err(Refused::Second)?;
    Ok((a, b))
}

/// The error of a command that lost every race.
fn contended<E>(stream: &str) -> ExecuteError<E> {
    metrics::counter!("command_conflicts_exhausted_total").increment(1);
    ExecuteError::Contended {
        stream: stream.to_owned(),
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
