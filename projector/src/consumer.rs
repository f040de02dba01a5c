//! What the runner drives: a named consumer of the global log that handles a
//! batch of events inside the transaction that also moves its checkpoint.

use async_trait::async_trait;
use mileage_store::{Position, RecordedEvent, StoreError};
use tokio_postgres::{Client, Transaction};

/// A projection or a process manager.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Unique and stable: names the checkpoint, the advisory lock, metrics.
    fn name(&self) -> &str;

    /// Creates what it needs in the read database (idempotent); runs each
    /// time the consumer becomes active.
    async fn prepare(&self, _client: &Client) -> Result<(), HandleError> {
        Ok(())
    }

    /// Handles `batch` (in log order). Read-model writes go through `tx`,
    /// which commits together with the checkpoint; a process manager's side
    /// effects must be idempotent, since a crash before the commit delivers
    /// the batch again.
    async fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[RecordedEvent],
    ) -> Result<(), HandleError>;
}

/// Why a batch was not handled.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// This event cannot be applied: the consumer stops at it, and says so in
    /// its log line, its metrics and its status row. Never skipped.
    #[error("cannot apply {event_type} at {position}: {reason}")]
    Poison {
        /// Where the event is.
        position: Position,
        event_type: String,
        reason: String,
    },
    /// A dependency failed; the batch is tried again after a backoff.
    #[error("{0}")]
    Transient(String),
}

impl HandleError {
    /// The event cannot be applied for `reason`.
    pub fn poison(event: &RecordedEvent, reason: impl Into<String>) -> Self {
        Self::Poison {
            position: event.position,
            event_type: event.event_type.clone(),
            reason: reason.into(),
        }
    }
}

impl From<tokio_postgres::Error> for HandleError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Transient(format!("read database: {error}"))
    }
}

impl From<StoreError> for HandleError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt {
                position,
                event_type,
                reason,
            } => Self::Poison {
                position,
                event_type,
                reason,
            },
            other => Self::Transient(format!("event store: {other}")),
        }
    }
}
