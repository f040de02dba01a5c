//! Erasure: deletes person keys as the log says, so personal data is gone
//! within seconds of the event that erases it, even when the process that
//! appended the event died right after (the command API also deletes the
//! member's key at once; this is what makes it certain). A withdrawn
//! member's key, and the keys of every dormant target registered for them
//! (their copy of the phone number and nickname), before or after the
//! withdrawal; a destroyed target's key. Deleting a key twice is harmless,
//! so a batch delivered again does no harm.

use std::sync::Arc;

use async_trait::async_trait;
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormant_member::{DormantMember, DormantMemberEvent};
use mileage_domain::ids::DormantMemberId;
use mileage_domain::member::{Member, MemberEvent};
use mileage_read_model::erasure;
use mileage_store::RecordedEvent;
use mileage_store::keys::KeyStore;
use tokio_postgres::{Client, Transaction};

use crate::consumer::{Consumer, HandleError};
use crate::projections::decode_if;

/// The erasure process manager.
pub(crate) struct Erasure {
    keys: Arc<dyn KeyStore>,
}

impl Erasure {
    /// Deletes through `keys`.
    pub(crate) fn new(keys: Arc<dyn KeyStore>) -> Self {
        Self { keys }
    }

    async fn erase(&self, key_id: &str) -> Result<(), HandleError> {
        if self.keys.delete(key_id).await? {
            metrics::counter!("person_keys_erased_total").increment(1);
            tracing::info!(key_id, "person key deleted; personal data erased");
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for Erasure {
    fn name(&self) -> &'static str {
        "erasure"
    }

    async fn prepare(&self, client: &Client) -> Result<(), HandleError> {
        erasure::migrate(client).await?;
        Ok(())
    }

    async fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[RecordedEvent],
    ) -> Result<(), HandleError> {
        for recorded in batch {
            if let Some(MemberEvent::MemberWithdrawn(e)) = decode_if::<Member>(recorded)? {
                self.erase(&stream_name::<Member>(&e.member_id)).await?;
                for target in erasure::member_withdrew(tx, e.member_id.as_str()).await? {
                    self.erase(&target_key(&target)).await?;
                }
                continue;
            }
            match decode_if::<DormantMember>(recorded)? {
                Some(DormantMemberEvent::DormantMemberRegistered(e)) => {
                    let withdrawn =
                        erasure::target_registered(tx, e.member_id.as_str(), e.id.as_str()).await?;
                    if withdrawn {
                        self.erase(&stream_name::<DormantMember>(&e.id)).await?;
                    }
                }
                Some(DormantMemberEvent::DormantMemberDestroyed(e)) => {
                    self.erase(&stream_name::<DormantMember>(&e.id)).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The key of the target `id` (as stored by the tables: text).
fn target_key(id: &str) -> String {
    DormantMemberId::parse(id).map_or_else(
        |_| format!("dormantMember-{id}"),
        |id| stream_name::<DormantMember>(&id),
    )
}
