//! Release completion: a release re-joins the person as a new member
//! (`MemberJoined` naming the target it releases) and then clears the
//! target. Should the release stop in between (a crash, a timeout, a lost
//! answer and no retry), this process manager finishes it from the log:
//! it clears the target for that member, or, when the target was destroyed
//! meanwhile, withdraws the member again, so the destroyed person's data
//! does not live on in the new member (the erasure process manager then
//! deletes their key). Event ids derive from the `MemberJoined`, and the
//! release's own clear is the same command, so whichever comes second
//! appends nothing.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormant_member::{DormantMember, DormantMemberCommand, DormantStatus};
use mileage_domain::member::{Member, MemberCommand, MemberEvent};
use mileage_store::executor::Executor;
use mileage_store::{EventStore, RecordedEvent};
use tokio_postgres::Transaction;

use super::{Step, decide_and_append, load};
use crate::consumer::{Consumer, HandleError};
use crate::projections::decode_if;

/// The release-completion process manager.
pub(crate) struct Releases {
    executor: Executor,
}

impl Releases {
    /// Commands through `store`.
    pub(crate) fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            executor: super::executor(store),
        }
    }
}

#[async_trait]
impl Consumer for Releases {
    fn name(&self) -> &'static str {
        "releases"
    }

    async fn handle(
        &self,
        _tx: &Transaction<'_>,
        batch: &[RecordedEvent],
    ) -> Result<(), HandleError> {
        for recorded in batch {
            let Some(MemberEvent::MemberJoined(joined)) = decode_if::<Member>(recorded)? else {
                continue;
            };
            let Some(target) = joined.rejoining else {
                continue;
            };
            let stream = stream_name::<DormantMember>(&target);
            let clear = DormantMemberCommand::Clear {
                rejoined_member_id: joined.member_id.clone(),
                at: Utc::now(),
            };
            match decide_and_append::<DormantMember>(
                self.name(),
                &self.executor,
                &stream,
                &clear,
                recorded,
            )
            .await?
            {
                Step::Appended | Step::AlreadyDone => {}
                Step::Refused(reason) => {
                    let (state, _) = load::<DormantMember>(&self.executor, &stream).await?;
                    if state.status() != Some(DormantStatus::Destruction) {
                        tracing::warn!(%target, %reason, "release not completed");
                        continue;
                    }
                    let member = stream_name::<Member>(&joined.member_id);
                    let withdraw = MemberCommand::Withdraw { at: Utc::now() };
                    decide_and_append::<Member>(
                        self.name(),
                        &self.executor,
                        &member,
                        &withdraw,
                        recorded,
                    )
                    .await?;
                    metrics::counter!("releases_undone_total").increment(1);
                    tracing::info!(%target, member_id = %joined.member_id,
                        "target destroyed during its release; the re-joined member is withdrawn");
                }
            }
        }
        Ok(())
    }
}
