//! Member use cases: join, earn, use, withdraw. Join is also what a release
//! calls, behind its guard.

use std::sync::Arc;

use chrono::Utc;
use mileage_domain::aggregate::stream_name;
use mileage_domain::envelope::Causation;
use mileage_domain::ids::MemberId;
use mileage_domain::member::{Member, MemberCommand};
use mileage_domain::phone_registry::{PhoneRegistry, PhoneRegistryCommand};
use mileage_domain::pii::phone_index;
use mileage_domain::values::{Nickname, PhoneNumber};

use mileage_service::ApiError;

use crate::context::Context;
use crate::handle::{Handled, handle, load};
use crate::personal::seal;

/// The member context: what its use cases command through, and the secret
/// that names phone numbers' uniqueness streams.
pub struct Members {
    ctx: Context,
    phone_secret: Arc<[u8]>,
}

impl Members {
    /// The member context over `ctx`, naming phone streams with
    /// `phone_secret` (see `mileage_domain::pii::phone_index`).
    pub fn new(ctx: Context, phone_secret: Arc<[u8]>) -> Self {
        Self { ctx, phone_secret }
    }

    /// The stream of a phone number's uniqueness claim.
    fn phone_stream(&self, phone: &PhoneNumber) -> String {
        stream_name::<PhoneRegistry>(&phone_index(&self.phone_secret, phone))
    }

    /// Joins a new member: claims the phone number, then records the member.
    /// If recording fails, the claim is released again.
    pub async fn join(
        &self,
        phone: &str,
        nickname: &str,
        causation: Causation,
    ) -> Result<(MemberId, Handled<Member>), ApiError> {
        let phone = PhoneNumber::parse(phone)?;
        let nickname = Nickname::parse(nickname)?;
        let member_id = MemberId::parse(&self.ctx.ids.next("member").await?.to_string())?;
        let key = self
            .ctx
            .keys
            .get_or_create(&stream_name::<Member>(&member_id))
            .await?;
        let claim_stream = self.phone_stream(&phone);
        let at = Utc::now();
        handle::<PhoneRegistry>(
            &self.ctx.executor,
            &claim_stream,
            PhoneRegistryCommand::Claim {
                member_id: member_id.clone(),
                at,
            },
            causation,
        )
        .await?;
        let joined = handle::<Member>(
            &self.ctx.executor,
            &stream_name::<Member>(&member_id),
            MemberCommand::Join {
                member_id: member_id.clone(),
                phone: seal(&key, "phoneNo", phone.as_str()),
                nickname: seal(&key, "nickname", nickname.as_str()),
                at,
            },
            causation,
        )
        .await;
        match joined {
            Ok(handled) => Ok((member_id, handled)),
            Err(e) => {
                let release = PhoneRegistryCommand::Release {
                    member_id: member_id.clone(),
                    at: Utc::now(),
                };
                if let Err(undo) =
                    handle::<PhoneRegistry>(&self.ctx.executor, &claim_stream, release, causation)
                        .await
                {
                    tracing::error!(error = %undo, %member_id, "could not release the phone claim of a failed join");
                }
                Err(e)
            }
        }
    }

    /// Earns or uses points.
    pub async fn points(
        &self,
        member_id: &MemberId,
        command: MemberCommand,
        causation: Causation,
    ) -> Result<Handled<Member>, ApiError> {
        handle::<Member>(
            &self.ctx.executor,
            &stream_name::<Member>(member_id),
            command,
            causation,
        )
        .await
    }

    /// Withdraws a member: forfeits the balance, records the withdrawal, gives the
    /// phone number back, and deletes the person key (erasing their data).
    pub async fn withdraw(
        &self,
        member_id: &MemberId,
        causation: Causation,
    ) -> Result<Handled<Member>, ApiError> {
        let stream = stream_name::<Member>(member_id);
        let (current, _) = load::<Member>(&self.ctx.executor, &stream).await?;
        let key_id = stream.clone();
        let phone = match (&current, self.ctx.keys.get(&key_id).await?) {
            (Member::Active(active), Some(key)) => key.open(&active.phone_no).ok(),
            _ => None,
        };
        let withdrawn = handle::<Member>(
            &self.ctx.executor,
            &stream,
            MemberCommand::Withdraw { at: Utc::now() },
            causation,
        )
        .await?;
        if let Some(phone) = phone.and_then(|p| PhoneNumber::parse(&p).ok()) {
            let release = PhoneRegistryCommand::Release {
                member_id: member_id.clone(),
                at: Utc::now(),
            };
            handle::<PhoneRegistry>(
                &self.ctx.executor,
                &self.phone_stream(&phone),
                release,
                causation,
            )
            .await?;
        }
        self.ctx.keys.delete(&key_id).await?;
        Ok(withdrawn)
    }
}
