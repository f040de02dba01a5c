//! On `DormantMemberChanged`: send the dormant notice and record
//! `MessageSent` or `MessageFailed` on the target's `managerMessage` stream.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormant_member::{DormantMember, DormantMemberChanged, DormantMemberEvent};
use mileage_domain::manager_message::{ManagerMessage, ManagerMessageCommand, Notice};
use mileage_domain::pii::{Revealed, reveal};
use mileage_store::executor::Executor;
use mileage_store::keys::KeyStore;
use mileage_store::{EventStore, RecordedEvent};
use tokio_postgres::Transaction;
use tracing::Instrument;

use super::{Step, decide_and_append, load};
use crate::consumer::{Consumer, HandleError};
use crate::notifier::{Delivery, Notifier, Outgoing};
use crate::projections::decode_if;

/// The notice's text. It holds no personal data: it is stored in clear.
pub(crate) const CONTENT: &str = "[Mileage] Your membership has become dormant after a long time without use. \
To keep your points, ask us to release it.";

/// Notices sent at once within a batch.
const CONCURRENCY: usize = 8;

/// The notice process manager.
pub(crate) struct Notices {
    executor: Executor,
    keys: Arc<dyn KeyStore>,
    notifier: Arc<dyn Notifier>,
}

impl Notices {
    /// Sends through `notifier`, records in `store`.
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        keys: Arc<dyn KeyStore>,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        Self {
            executor: super::executor(store),
            keys,
            notifier,
        }
    }

    /// Sends `changed`'s notice, unless its outcome is already recorded,
    /// and records the outcome under ids derived from `trigger`.
    async fn notify(
        &self,
        changed: DormantMemberChanged,
        trigger: RecordedEvent,
    ) -> Result<(), HandleError> {
        let trigger = &trigger;
        let stream = stream_name::<ManagerMessage>(&changed.id);
        let (state, _) = load::<ManagerMessage>(&self.executor, &stream).await?;
        if let ManagerMessage::Recorded(outcome) = state {
            tracing::debug!(target_id = %changed.id, ?outcome, "notice already recorded; not sent again");
            return Ok(());
        }
        let delivery = self.deliver(&changed, trigger).await?;
        fail::fail_point!("notices::after_send", |_| Err(HandleError::Transient(
            "failpoint notices::after_send: the process stopped".into()
        )));
        let command = outcome(&changed, delivery, trigger)?;
        match decide_and_append::<ManagerMessage>(
            self.name(),
            &self.executor,
            &stream,
            &command,
            trigger,
        )
        .await?
        {
            Step::Appended | Step::AlreadyDone => Ok(()),
            Step::Refused(reason) => Err(HandleError::poison(trigger, reason)),
        }
    }

    /// Opens the number and sends the notice (a span of the trigger's trace,
    /// which the gateway gets as its parent; the number is never a span
    /// attribute); a person erased meanwhile is a rejected delivery.
    async fn deliver(
        &self,
        changed: &DormantMemberChanged,
        trigger: &RecordedEvent,
    ) -> Result<Delivery, HandleError> {
        let key = self.keys.get(&changed.phone_no.key_id).await?;
        match reveal(&changed.phone_no, key.as_ref()) {
            Ok(Revealed::Clear(phone)) => {
                let span = tracing::info_span!("notice", message_id = %trigger.event_id);
                let trace = mileage_service::traces::enter(&span, trigger.metadata.trace);
                let outgoing = Outgoing {
                    message_id: trigger.event_id,
                    to: phone,
                    text: CONTENT.to_owned(),
                    trace: Some(trace),
                };
                Ok(self.notifier.send(&outgoing).instrument(span).await)
            }
            Ok(Revealed::Erased) => Ok(Delivery::Rejected {
                attempts: 0,
                reason: "the person's data was erased before the notice was sent".into(),
            }),
            Err(e) => Err(HandleError::poison(trigger, e.to_string())),
        }
    }
}

/// What a delivery means for the notice (counted by outcome): a command
/// recording it sent or failed; or an error that stops the consumer at the
/// trigger (a gateway refusing our requests themselves) or retries it
/// later (a gateway unavailable).
fn outcome(
    changed: &DormantMemberChanged,
    delivery: Delivery,
    trigger: &RecordedEvent,
) -> Result<ManagerMessageCommand, HandleError> {
    let notice = |attempts: u32| Notice {
        target_id: changed.id.clone(),
        member_id: changed.member_id.clone(),
        phone_no: changed.phone_no.clone(),
        content: CONTENT.to_owned(),
        attempts: attempts.max(1),
        at: Utc::now(),
    };
    match delivery {
        Delivery::Delivered { attempts } => {
            metrics::counter!("notices_total", "outcome" => "sent").increment(1);
            Ok(ManagerMessageCommand::RecordSent(notice(attempts)))
        }
        Delivery::Rejected { attempts, reason } => {
            metrics::counter!("notices_total", "outcome" => "failed").increment(1);
            tracing::warn!(target_id = %changed.id, %reason, "dormant notice failed");
            Ok(ManagerMessageCommand::RecordFailed {
                notice: notice(attempts),
                reason,
            })
        }
        Delivery::Misconfigured { reason } => {
            metrics::counter!("notices_total", "outcome" => "misconfigured").increment(1);
            tracing::error!(target_id = %changed.id, %reason, "the SMS gateway refuses our requests; notices stop until NOTIFIER_URL or its credentials are fixed");
            Err(HandleError::poison(
                trigger,
                format!(
                    "the SMS gateway refused the request itself ({reason}): check NOTIFIER_URL \
                     and its credentials, then restart the projector; nothing was recorded \
                     about the recipient"
                ),
            ))
        }
        Delivery::Unavailable { attempts, reason } => {
            metrics::counter!("notices_total", "outcome" => "postponed").increment(1);
            Err(HandleError::Transient(format!(
                "notice for target {} not delivered after {attempts} attempts: {reason}",
                changed.id
            )))
        }
    }
}

#[async_trait]
impl Consumer for Notices {
    fn name(&self) -> &'static str {
        "notices"
    }

    async fn handle(
        &self,
        _tx: &Transaction<'_>,
        batch: &[RecordedEvent],
    ) -> Result<(), HandleError> {
        let mut changes = Vec::new();
        for recorded in batch {
            if let Some(DormantMemberEvent::DormantMemberChanged(changed)) =
                decode_if::<DormantMember>(recorded)?
            {
                changes.push((changed, recorded.clone()));
            }
        }
        futures::stream::iter(changes)
            .map(|(changed, recorded)| self.notify(changed, recorded))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }
}
