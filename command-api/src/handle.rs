//! The command API's side of the one executor
//! ([`mileage_store::executor`]): every use case runs its commands through
//! it, with fresh event ids, and its refusals and failures become
//! [`ApiError`]s here and only here.

use mileage_domain::Aggregate;
use mileage_domain::envelope::Causation;
use mileage_service::ApiError;
use mileage_store::executor::{EventIds, ExecuteError, Executed, Executor};

/// What a handled command did.
pub(crate) type Handled<A> = Executed<A>;

/// Folds a stream into its aggregate state and last version.
pub(crate) async fn load<A>(executor: &Executor, stream: &str) -> Result<(A, Option<u64>), ApiError>
where
    A: Aggregate + Send + Sync + 'static,
{
    Ok(executor.load::<A>(stream).await?)
}

/// Handles `command` against `stream`, re-deciding on version conflicts; a
/// stream that keeps changing answers 409.
pub(crate) async fn handle<A>(
    executor: &Executor,
    stream: &str,
    command: A::Command,
    causation: Causation,
) -> Result<Handled<A>, ApiError>
where
    A: Aggregate + Send + Sync + 'static,
    A::Command: Clone,
{
    executor
        .execute::<A>(stream, command, EventIds::Fresh, causation)
        .await
        .map_err(|e| match e {
            ExecuteError::Rejected(refusal) => ApiError::domain(&refusal),
            ExecuteError::Contended { .. } => ApiError::Conflict,
            ExecuteError::Store(e) => e.into(),
        })
}
