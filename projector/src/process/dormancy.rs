//! The dormancy policy's process manager. In the transaction of each batch
//! it keeps `dormancy.pending`, the policy's targets still `PRE_DORMANT`,
//! which the scheduler marks dormant once their grace is over; and it lifts
//! such a target as soon as the log shows its member active again,
//! excluded from the policy, or withdrawn.
//!
//! A member put back under the policy is queued for the scheduler's next
//! pass (`dormancy.revisit`): its scan of quiet members may have passed
//! them while they were out.
//!
//! A registration is checked against the member as the log has them: an
//! earn appended between the scheduler's look at the member and its
//! registration comes before the registration in the log, so no later
//! event would lift it; the check does, at once.
//!
//! Each lift's ids derive from the event that caused it, and the target's
//! version decides between a lift and a mark made at the same moment: one
//! of them is appended, once.

use std::collections::HashMap;

use async_trait::async_trait;
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormancy::{Policy, Review};
use mileage_domain::dormant_member::{DormantMember, DormantMemberCommand, DormantMemberEvent};
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::member::{Member, MemberEvent};
use mileage_read_model::dormancy::{self as table, Pending};
use mileage_store::executor::Executor;
use mileage_store::{EventStore, RecordedEvent};
use tokio_postgres::{Client, Transaction};

use super::{Step, decide_and_append, load};
use crate::clock::Clock;
use crate::consumer::{Consumer, HandleError};
use crate::projections::decode_if;

/// The dormancy process manager.
pub(crate) struct Dormancy {
    executor: Executor,
    policy: Policy,
    clock: Clock,
}

impl Dormancy {
    /// Commands through `store`, under `policy`, on `clock`'s time.
    pub(crate) fn new(store: std::sync::Arc<dyn EventStore>, policy: Policy, clock: Clock) -> Self {
        Self {
            executor: super::executor(store),
            policy,
            clock,
        }
    }

    /// Lifts `target` for `reason`, caused by `trigger`.
    async fn lift(
        &self,
        target: &str,
        reason: String,
        trigger: &RecordedEvent,
    ) -> Result<(), HandleError> {
        let id = DormantMemberId::parse(target)
            .map_err(|e| HandleError::poison(trigger, format!("pending target {target}: {e}")))?;
        let stream = stream_name::<DormantMember>(&id);
        let command = DormantMemberCommand::Lift {
            reason: reason.clone(),
            at: self.clock.now(),
        };
        match decide_and_append::<DormantMember>(
            self.name(),
            &self.executor,
            &stream,
            &command,
            trigger,
        )
        .await?
        {
            Step::Appended => {
                metrics::counter!("dormancy_lifted_total").increment(1);
                tracing::info!(target_id = %id, %reason, "dormant target lifted");
            }
            Step::AlreadyDone => {}
            // Marked dormant meanwhile: a release brings them back now.
            Step::Refused(refusal) => {
                tracing::info!(target_id = %id, %refusal, "dormant target not lifted");
            }
        }
        Ok(())
    }

    /// Why an event of a member lifts their pending targets, if it does.
    fn lifts(event: &MemberEvent) -> Option<String> {
        match event {
            MemberEvent::PointsEarned(e) => {
                Some(format!("active again: earned points at {}", e.at))
            }
            MemberEvent::PointsUsed(e) => Some(format!("active again: used points at {}", e.at)),
            MemberEvent::ExcludedFromDormancy(e) => {
                Some(format!("excluded from the policy: {}", e.reason))
            }
            MemberEvent::MemberWithdrawn(_) => Some("the member withdrew".into()),
            MemberEvent::MemberJoined(_)
            | MemberEvent::PointsForfeited(_)
            | MemberEvent::IncludedInDormancy(_) => None,
        }
    }

    /// A policy registration's check against its member as the log has
    /// them now.
    async fn check_registration(
        &self,
        target: &DormantMemberId,
        member: &MemberId,
        trigger: &RecordedEvent,
    ) -> Result<(), HandleError> {
        let (target_state, _) =
            load::<DormantMember>(&self.executor, &stream_name::<DormantMember>(target)).await?;
        let (member_state, _) =
            load::<Member>(&self.executor, &stream_name::<Member>(member)).await?;
        if let Review::Lift(reason) =
            self.policy
                .review(&target_state, &member_state, self.clock.now())
        {
            self.lift(target.as_str(), reason, trigger).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for Dormancy {
    fn name(&self) -> &'static str {
        "dormancy"
    }

    async fn prepare(&self, client: &Client) -> Result<(), HandleError> {
        Ok(table::migrate(client).await?)
    }

    async fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[RecordedEvent],
    ) -> Result<(), HandleError> {
        let mut named = Vec::new();
        for recorded in batch {
            if let Some(event) = decode_if::<Member>(recorded)?
                && Self::lifts(&event).is_some()
            {
                named.push(event.member_id().to_string());
            }
        }
        named.sort_unstable();
        named.dedup();
        let mut pending: HashMap<String, Vec<String>> = HashMap::new();
        for (target, member) in table::pending_of(tx, &named).await? {
            pending.entry(member).or_default().push(target);
        }
        for recorded in batch {
            if let Some(event) = decode_if::<DormantMember>(recorded)? {
                let target = event.target_id().to_string();
                if let DormantMemberEvent::DormantMemberRegistered(e) = event {
                    let Some(quiet_since) = e.quiet_since else {
                        continue;
                    };
                    let member = e.member_id.to_string();
                    let row = Pending {
                        id: target.clone(),
                        member_id: member.clone(),
                        registered_at: e.at,
                        quiet_since,
                    };
                    table::add(tx, &row).await?;
                    pending.entry(member).or_default().push(target);
                    self.check_registration(&e.id, &e.member_id, recorded)
                        .await?;
                } else {
                    table::close(tx, &target).await?;
                    for targets in pending.values_mut() {
                        targets.retain(|t| *t != target);
                    }
                }
            } else if let Some(event) = decode_if::<Member>(recorded)? {
                if let MemberEvent::IncludedInDormancy(e) = &event {
                    table::revisit(tx, e.member_id.as_str()).await?;
                }
                if let Some(reason) = Self::lifts(&event)
                    && let Some(targets) = pending.remove(&event.member_id().to_string())
                {
                    for target in targets {
                        self.lift(&target, reason.clone(), recorded).await?;
                    }
                }
            }
        }
        Ok(())
    }
}
