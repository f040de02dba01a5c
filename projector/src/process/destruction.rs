//! On `MessageFailed`: destroy the target (`DormantMemberDestroyed`) and
//! delete its person key, which erases its personal data from the log.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormant_member::{DormantMember, DormantMemberCommand};
use mileage_domain::manager_message::{ManagerMessage, ManagerMessageEvent};
use mileage_store::executor::Executor;
use mileage_store::keys::KeyStore;
use mileage_store::{EventStore, RecordedEvent};
use tokio_postgres::Transaction;

use super::{Step, decide_and_append};
use crate::consumer::{Consumer, HandleError};
use crate::projections::decode_if;

/// The destruction process manager.
pub(crate) struct Destruction {
    executor: Executor,
    keys: Arc<dyn KeyStore>,
}

impl Destruction {
    /// Commands through `store`, erases through `keys`.
    pub(crate) fn new(store: Arc<dyn EventStore>, keys: Arc<dyn KeyStore>) -> Self {
        Self {
            executor: super::executor(store),
            keys,
        }
    }
}

#[async_trait]
impl Consumer for Destruction {
    fn name(&self) -> &'static str {
        "destruction"
    }

    async fn handle(
        &self,
        _tx: &Transaction<'_>,
        batch: &[RecordedEvent],
    ) -> Result<(), HandleError> {
        for recorded in batch {
            let Some(ManagerMessageEvent::MessageFailed(failed)) =
                decode_if::<ManagerMessage>(recorded)?
            else {
                continue;
            };
            let stream = stream_name::<DormantMember>(&failed.target_id);
            let command = DormantMemberCommand::Destroy {
                reason: format!("dormant notice failed: {}", failed.reason),
                at: Utc::now(),
            };
            match decide_and_append::<DormantMember>(
                self.name(),
                &self.executor,
                &stream,
                &command,
                recorded,
            )
            .await?
            {
                Step::Appended | Step::AlreadyDone => {
                    fail::fail_point!("destruction::before_key_delete", |_| Err(
                        HandleError::Transient(
                            "failpoint destruction::before_key_delete: the process stopped".into()
                        )
                    ));
                    self.keys.delete(&stream).await?;
                    metrics::counter!("destructions_total").increment(1);
                    tracing::info!(target_id = %failed.target_id, "target destroyed; personal data erased");
                }
                Step::Refused(reason) => {
                    metrics::counter!("destructions_refused_total").increment(1);
                    tracing::warn!(target_id = %failed.target_id, %reason, "target not destroyed");
                }
            }
        }
        Ok(())
    }
}
