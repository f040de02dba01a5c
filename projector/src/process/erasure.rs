//! Erasure: deletes person keys as the log says, one rule for every case
//! (`mileage_read_model::erasure`): a person is erased when they withdraw
//! (`MemberWithdrawn`) or their data is destroyed
//! (`DormantMemberDestroyed`), and then every key that seals any of their
//! data goes: their member stream's, every target registered for them, a
//! target they were released from, a member they were released into, the
//! key that seals them as the holder of a phone claim, and any such key the
//! log names later. A released claim's key goes at once. Personal data is gone within seconds
//! of the event that erases it, even when the process that appended the
//! event died right after (the command API also deletes the keys it knows
//! at once; this is what makes it certain). Deleting a key twice is
//! harmless, so a batch delivered again does no harm.
//!
//! A number an erased person still holds is given back first (its claim's
//! key is among theirs): on a store that appends a withdrawal's two parts
//! in order, the release may have been lost with its process, and nobody
//! could give the number back once the keys are gone. Its ids derive from
//! the erasing event, so a redelivery appends nothing.

use std::sync::Arc;

use async_trait::async_trait;
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormant_member::{DormantMember, DormantMemberEvent};
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::member::{Member, MemberEvent};
use mileage_domain::phone_registry::PhoneRegistryCommand;
use mileage_domain::phone_registry::{
    Holder, PhoneClaimed, PhoneRegistry, PhoneRegistryEvent, PhoneReleased,
};
use mileage_read_model::erasure;
use mileage_store::executor::Executor;
use mileage_store::keys::KeyStore;
use mileage_store::{EventStore, RecordedEvent};
use tokio_postgres::{Client, Transaction};

use crate::consumer::{Consumer, HandleError};
use crate::projections::decode_if;

/// The erasure process manager.
pub(crate) struct Erasure {
    keys: Arc<dyn KeyStore>,
    executor: Executor,
}

impl Erasure {
    /// Deletes through `keys`; gives numbers back through `store`.
    pub(crate) fn new(store: Arc<dyn EventStore>, keys: Arc<dyn KeyStore>) -> Self {
        Self {
            keys,
            executor: super::executor(store),
        }
    }

    /// Gives back the number whose claim's key is `key_id`
    /// (`memberPhone-{hash}#{claim event id}`) when its claim still names
    /// the holder sealed under that key; anything else is left as it is.
    async fn give_back(&self, key_id: &str, trigger: &RecordedEvent) -> Result<(), HandleError> {
        let Some((claim_stream, _)) = key_id
            .split_once('#')
            .filter(|(stream, _)| stream.starts_with("memberPhone-"))
        else {
            return Ok(());
        };
        let (state, _) = super::load::<PhoneRegistry>(&self.executor, claim_stream).await?;
        let PhoneRegistry::Held { holder } = state else {
            return Ok(());
        };
        if !matches!(&holder, Holder::Sealed(sealed) if sealed.key_id == key_id) {
            return Ok(());
        }
        let release = PhoneRegistryCommand::Release {
            holder,
            at: trigger.metadata.recorded_at,
        };
        let step = super::decide_and_append::<PhoneRegistry>(
            self.name(),
            &self.executor,
            claim_stream,
            &release,
            trigger,
        )
        .await?;
        if step == super::Step::Appended {
            metrics::counter!("phone_claims_given_back_total").increment(1);
            tracing::info!(claim_stream, "an erased person's number given back");
        }
        Ok(())
    }

    async fn erase(&self, key_id: &str) -> Result<(), HandleError> {
        if self.keys.delete(key_id).await? {
            metrics::counter!("person_keys_erased_total").increment(1);
            tracing::info!(key_id, "person key deleted; personal data erased");
        }
        Ok(())
    }
}

impl Erasure {
    /// A phone claim is its holder's while it holds: its key joins their
    /// person (learnt by opening the holder with the claim's key; when the
    /// key is gone, the holder was erased and so is the claim). A release
    /// deletes the claim's key.
    async fn claim(
        &self,
        tx: &Transaction<'_>,
        recorded: &RecordedEvent,
    ) -> Result<Vec<String>, HandleError> {
        let keys = match decode_if::<PhoneRegistry>(recorded)? {
            Some(PhoneRegistryEvent::PhoneClaimed(PhoneClaimed {
                holder: Holder::Sealed(sealed),
                ..
            })) => {
                let holder = self
                    .keys
                    .get(&sealed.key_id)
                    .await?
                    .and_then(|key| key.open(&sealed).ok())
                    .and_then(|id| MemberId::parse(&id).ok());
                match holder {
                    Some(member) => {
                        let member = stream_name::<Member>(&member);
                        erasure::claim(tx, &member, &sealed.key_id).await?
                    }
                    None => vec![],
                }
            }
            Some(PhoneRegistryEvent::PhoneReleased(PhoneReleased {
                holder: Holder::Sealed(sealed),
                ..
            })) => erasure::released(tx, &sealed.key_id).await?,
            _ => vec![],
        };
        Ok(keys)
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
            let erased = self.erased_by(tx, recorded).await?;
            for key_id in &erased {
                self.give_back(key_id, recorded).await?;
            }
            for key_id in &erased {
                self.erase(key_id).await?;
            }
        }
        Ok(())
    }
}

impl Erasure {
    /// What `recorded` tells of people, and the keys it erases.
    async fn erased_by(
        &self,
        tx: &Transaction<'_>,
        recorded: &RecordedEvent,
    ) -> Result<Vec<String>, HandleError> {
        let member_key = |id: &MemberId| stream_name::<Member>(id);
        let target_key = |id: &DormantMemberId| stream_name::<DormantMember>(id);
        let keys = match decode_if::<Member>(recorded)? {
            Some(MemberEvent::MemberWithdrawn(e)) => {
                erasure::erase(tx, &member_key(&e.member_id)).await?
            }
            Some(MemberEvent::MemberJoined(e)) => match &e.rejoining {
                Some(target) => {
                    erasure::same_person(tx, &target_key(target), &member_key(&e.member_id)).await?
                }
                None => erasure::new_person(tx, &member_key(&e.member_id)).await?,
            },
            Some(_) => vec![],
            None if recorded.stream.starts_with("memberPhone-") => self.claim(tx, recorded).await?,
            None => match decode_if::<DormantMember>(recorded)? {
                Some(DormantMemberEvent::DormantMemberRegistered(e)) => {
                    let member = member_key(&e.member_id);
                    if erasure::known(tx, &member).await? {
                        erasure::same_person(tx, &member, &target_key(&e.id)).await?
                    } else {
                        erasure::new_person(tx, &target_key(&e.id)).await?
                    }
                }
                Some(DormantMemberEvent::DormantMemberCleared(e)) => {
                    erasure::same_person(tx, &target_key(&e.id), &member_key(&e.rejoined_member_id))
                        .await?
                }
                Some(DormantMemberEvent::DormantMemberDestroyed(e)) => {
                    erasure::erase(tx, &target_key(&e.id)).await?
                }
                _ => vec![],
            },
        };
        Ok(keys)
    }
}
