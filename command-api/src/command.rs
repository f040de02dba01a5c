//! The command API's side of the one executor
//! ([`mileage_store::executor`]): every use case runs its commands through
//! it, and its refusals and failures become [`CommandError`]s here and
//! only here. A command's [`Origin`] says what caused it and how its events get
//! their ids: derived from the request's `Idempotency-Key` when it has one,
//! so a retry of a command that was applied (its answer lost, a 5xx, a
//! crash before the answer was kept) appends nothing and answers the first
//! outcome.

use crate::error::CommandError;
use mileage_domain::Aggregate;
use mileage_domain::envelope::Causation;
use mileage_store::RequestKey;
use mileage_store::executor::{EventIds, ExecuteError, Executed, Executor, FirstDecision, Refused};
use uuid::Uuid;

/// What a handled command did.
pub(crate) type Handled<A> = Executed<A>;

/// Where a command comes from: its correlation and causation, and the ids
/// its events get. Put on every command request by the idempotency layer.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) causation: Causation,
    pub(crate) ids: EventIds,
    /// The scoped key's own id (from the key alone, not the request), when
    /// the command has a key: it names the key's `commandKey-` stream,
    /// where a command that creates something records what it created.
    pub(crate) key: Option<Uuid>,
}

/// Namespace of the seeds derived from idempotency keys.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6d69_6c65_6167_652d_6b65_7973_2d76_3031);

impl Origin {
    /// A command without a key: fresh event ids.
    pub(crate) fn fresh(causation: Causation) -> Self {
        Self {
            causation,
            ids: EventIds::Fresh,
            key: None,
        }
    }

    /// A command sent with an idempotency key, as `request` (what makes two
    /// requests the same one): event ids derive from both.
    pub(crate) fn keyed(causation: Causation, key: &str, request: &str) -> Self {
        let request_key = RequestKey {
            key: Uuid::new_v5(&KEY_NAMESPACE, key.as_bytes()),
            request: Uuid::new_v5(&KEY_NAMESPACE, format!("{key}\n{request}").as_bytes()),
        };
        Self {
            causation,
            ids: EventIds::Keyed(request_key),
            key: Some(request_key.key),
        }
    }

    /// A follow-up command of a keyed one (`key`), as `request`: its event
    /// ids derive from both as [`Origin::keyed`]'s do, but it writes no
    /// request key (the keyed command holds it), so it is never stopped as
    /// another request under that key.
    pub(crate) fn follow_up(causation: Causation, key: &str, request: &str) -> Self {
        let keyed = Self::keyed(causation, key, request);
        Self {
            ids: match keyed.ids {
                EventIds::Keyed(key) => EventIds::DerivedFrom(key.request),
                other => other,
            },
            key: None,
            ..keyed
        }
    }

    /// The request key of a keyed command.
    pub(crate) fn request_key(&self) -> Option<RequestKey> {
        match self.ids {
            EventIds::Keyed(key) => Some(key),
            EventIds::Fresh | EventIds::DerivedFrom(_) => None,
        }
    }
}

/// Folds a stream into its aggregate state and last version.
pub(crate) async fn load<A>(
    executor: &Executor,
    stream: &str,
) -> Result<(A, Option<u64>), CommandError>
where
    A: Aggregate + Send + Sync + 'static,
{
    Ok(executor.load::<A>(stream).await?)
}

/// Handles `command` against `stream`, re-deciding on version conflicts; a
/// stream that keeps changing answers 409.
pub(crate) async fn run<A>(
    executor: &Executor,
    stream: &str,
    command: A::Command,
    origin: &Origin,
) -> Result<Handled<A>, CommandError>
where
    A: Aggregate + Send + Sync + 'static,
    A::Command: Clone,
{
    executor
        .execute::<A>(stream, command, origin.ids, origin.causation.clone())
        .await
        .map_err(|e| command_error(e, |refusal| CommandError::rejected(&refusal)))
}

/// Handles two commands on two streams as one (one atomic append), the
/// first decision made on what `first_decision` says.
pub(crate) async fn run_pair<A, B>(
    executor: &Executor,
    first: (&str, A::Command),
    second: (&str, B::Command),
    first_decision: FirstDecision,
    origin: &Origin,
) -> Result<(Handled<A>, Handled<B>), CommandError>
where
    A: Aggregate + Send + Sync + 'static,
    A::Command: Clone,
    B: Aggregate + Send + Sync + 'static,
    B::Command: Clone,
{
    executor
        .execute_pair::<A, B>(
            first,
            second,
            first_decision,
            origin.ids,
            origin.causation.clone(),
        )
        .await
        .map_err(|e| {
            command_error(e, |refusal| match refusal {
                Refused::First(e) => CommandError::rejected(&e),
                Refused::Second(e) => CommandError::rejected(&e),
            })
        })
}

fn command_error<E>(
    error: ExecuteError<E>,
    refused: impl FnOnce(E) -> CommandError,
) -> CommandError {
    match error {
        ExecuteError::Rejected(refusal) => refused(refusal),
        ExecuteError::Contended { .. } => CommandError::Conflict,
        ExecuteError::Store(e) => e.into(),
    }
}
