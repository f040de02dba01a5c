//! Member use cases: join, earn, use, withdraw. Join is also what a release
//! calls, behind its guard.

use std::sync::Arc;

use crate::command::Origin;
use chrono::{DateTime, Utc};
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormant_member::{DormantMember, DormantStatus};
use mileage_domain::envelope::{Actor, Causation};
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::member::{Member, MemberCommand, MemberError, MemberEvent};
use mileage_domain::phone_registry::{
    Holder, PhoneRegistry, PhoneRegistryCommand, PhoneRegistryError,
};
use mileage_domain::pii::{PersonKey, phone_index};
use mileage_domain::values::{Nickname, PhoneNumber};

use crate::error::CommandError;
use mileage_store::executor::{EventIds, ExecuteError, FirstDecision, Refused};

use crate::command::{Handled, load, run, run_pair};
use crate::context::Context;
use mileage_store::keys::seal;

/// What a join's first attempt did.
enum FirstStep {
    /// Joined a member under the id it drew.
    Joined(MemberId, Handled<Member>),
    /// Found an earlier attempt's claim: the member it names is the join's.
    Claimed(Handled<PhoneRegistry>),
}

/// What [`Members::stale_claim`] found on a taken number.
enum Stale {
    /// Its holder holds it: the number is taken.
    No,
    /// Its holder held it no longer in fact: given back, free now.
    Freed,
    /// The dormant member a release re-joins holds it: theirs to hand over.
    HandOver(Holder),
}

/// The member context: what its use cases command through, and the secret
/// that names phone numbers' uniqueness streams.
pub(crate) struct Members {
    ctx: Context,
    phone_secret: Arc<[u8]>,
}

impl Members {
    /// The member context over `ctx`, naming phone streams with
    /// `phone_secret` (see `mileage_domain::pii::phone_index`).
    pub(crate) fn new(ctx: Context, phone_secret: Arc<[u8]>) -> Self {
        Self { ctx, phone_secret }
    }

    /// The server-side secret: it names phone streams and makes release
    /// keys (`mileage_domain::pii::release_key`).
    pub(crate) fn secret(&self) -> &[u8] {
        &self.phone_secret
    }

    /// The stream of a phone number's uniqueness claim.
    fn phone_stream(&self, phone: &PhoneNumber) -> String {
        stream_name::<PhoneRegistry>(&phone_index(&self.phone_secret, phone))
    }

    /// The member a claim's holder names, while it can be read: `None` once
    /// the claim's key is gone (erased with the holder).
    async fn holder_id(&self, holder: &Holder) -> Result<Option<MemberId>, CommandError> {
        match holder {
            Holder::Named(id) => Ok(Some(id.clone())),
            Holder::Sealed(sealed) => Ok(self
                .ctx
                .keys
                .get(&sealed.key_id)
                .await?
                .and_then(|key| key.open(sealed).ok())
                .and_then(|id| MemberId::parse(&id).ok())),
        }
    }

    /// The holder of the number on `claim_stream` when it is `member_id`,
    /// as their claim names them (what releasing it takes).
    async fn held_by(
        &self,
        claim_stream: &str,
        member_id: &MemberId,
    ) -> Result<Option<Holder>, CommandError> {
        let (state, _) = load::<PhoneRegistry>(&self.ctx.executor, claim_stream).await?;
        let PhoneRegistry::Held { holder } = state else {
            return Ok(None);
        };
        let theirs = self.holder_id(&holder).await?.as_ref() == Some(member_id);
        Ok(theirs.then_some(holder))
    }

    /// Joins a new member: claims the phone number and records the member
    /// in one append, so a number is never held by a member that does not
    /// exist. The claim names the member, so it is also the join's record:
    /// every attempt of one join (the same derived event ids) answers the
    /// member its first append claimed the number for, and an attempt that
    /// finds the claim without the member (a store that appends the parts
    /// in order lost the second) completes the join.
    pub(crate) async fn join(
        &self,
        phone: &str,
        nickname: &str,
        rejoining: Option<DormantMemberId>,
        origin: Origin,
    ) -> Result<(MemberId, Handled<Member>), CommandError> {
        let phone = PhoneNumber::parse(phone)?;
        let nickname = Nickname::parse(nickname)?;
        let claim_stream = self.phone_stream(&phone);
        let executor = &self.ctx.executor;
        let joining = |member_id: &MemberId, key: &PersonKey, at| MemberCommand::Join {
            member_id: member_id.clone(),
            phone: seal(key, "phoneNo", phone.as_str()),
            nickname: seal(key, "nickname", nickname.as_str()),
            at,
            rejoining: rejoining.clone(),
        };
        // An earlier attempt of this join, found by its claim (on
        // PostgreSQL the claim's append finds it: no read on the happy path).
        let first = executor
            .earlier_attempt::<PhoneRegistry>(&claim_stream, origin.ids)
            .await?;
        let claimed = match first {
            Some(claimed) => claimed,
            None => match self
                .join_new(&claim_stream, &joining, rejoining.as_ref(), &origin)
                .await?
            {
                FirstStep::Joined(member_id, joined) => return Ok((member_id, joined)),
                FirstStep::Claimed(claimed) => claimed,
            },
        };
        let PhoneRegistry::Held { holder } = claimed.state else {
            return Err(CommandError::Internal(anyhow::anyhow!(
                "a join's claim, found in the log, names no member"
            )));
        };
        // Unreadable: the member this join made has withdrawn since, and
        // the claim's key went with them.
        let Some(member_id) = self.holder_id(&holder).await? else {
            return Err(CommandError::rejected(&MemberError::Withdrawn));
        };
        // The first attempt's member: its outcome, or the join completed.
        let member_stream = stream_name::<Member>(&member_id);
        let key = self.ctx.keys.get_or_create(&member_stream).await?;
        let joined = run::<Member>(
            executor,
            &member_stream,
            joining(&member_id, &key, Utc::now()),
            &origin,
        )
        .await?;
        Ok((member_id, joined))
    }

    /// A join's attempt that found no earlier one: draws a member id and
    /// appends the claim and `MemberJoined` together (after freeing a
    /// stale claim on the number, once). When the claim's append finds an
    /// earlier attempt's claim instead, that claim; the id drawn here then
    /// seals nothing and its key goes.
    async fn join_new(
        &self,
        claim_stream: &str,
        joining: &impl Fn(&MemberId, &PersonKey, DateTime<Utc>) -> MemberCommand,
        rejoining: Option<&DormantMemberId>,
        origin: &Origin,
    ) -> Result<FirstStep, CommandError> {
        let member_id = MemberId::parse(&self.ctx.ids.next("member").await?.to_string())?;
        let member_stream = stream_name::<Member>(&member_id);
        // The claim names the member sealed under a key of its own: named by
        // the claim stream (whose events the key sweep looks for) and the
        // claim's event id, the same for every attempt of one join. Both
        // keys are asked for at once (they share a batch of the key store).
        let claim_key_id = format!("{claim_stream}#{}", origin.ids.id(claim_stream, 0));
        let (key, claim_key) = tokio::try_join!(
            self.ctx.keys.get_or_create(&member_stream),
            self.ctx.keys.get_or_create(&claim_key_id),
        )?;
        fail::fail_point!("join::after_key", |_| Err(CommandError::Internal(
            anyhow::anyhow!("failpoint join::after_key")
        )));
        let at = Utc::now();
        let holder = Holder::Sealed(claim_key.seal_comparable("memberId", member_id.as_str()));
        let claim = PhoneRegistryCommand::Claim {
            holder: holder.clone(),
            at,
        };
        let join = joining(&member_id, &key, at);
        let pair = |claim: PhoneRegistryCommand| {
            self.ctx.executor.execute_pair::<PhoneRegistry, Member>(
                (claim_stream, claim),
                (&member_stream, join.clone()),
                // The member's id is new and most numbers are free: no read.
                FirstDecision::OnKnown,
                origin.ids,
                origin.causation.clone(),
            )
        };
        let mut joined = pair(claim.clone()).await;
        if matches!(
            joined,
            Err(ExecuteError::Rejected(Refused::First(
                PhoneRegistryError::Taken
            )))
        ) {
            match self.stale_claim(claim_stream, rejoining).await? {
                Stale::Freed => joined = pair(claim).await,
                Stale::HandOver(from) => {
                    let hand_over = PhoneRegistryCommand::HandOver {
                        from,
                        to: holder,
                        at,
                    };
                    joined = pair(hand_over).await;
                }
                Stale::No => {}
            }
        }
        match joined {
            Ok((claimed, joined)) if !claimed.replayed => Ok(FirstStep::Joined(member_id, joined)),
            Ok((claimed, _)) => {
                self.ctx.keys.discard(&member_stream).await?;
                Ok(FirstStep::Claimed(claimed))
            }
            Err(ExecuteError::Rejected(refused)) => {
                // Refused: nothing was appended for this new id, so its key
                // seals nothing. The claim's key stays: it is every
                // attempt's of this join, and another one, running beside
                // this one, may be sealing its claim with it; the key sweep
                // deletes it once the log shows no claim of it. After any
                // other failure the append may have committed unseen; the
                // keys stay.
                self.ctx.keys.discard(&member_stream).await?;
                Err(match refused {
                    Refused::First(e) => CommandError::rejected(&e),
                    Refused::Second(e) => CommandError::rejected(&e),
                })
            }
            Err(ExecuteError::Contended { .. }) => Err(CommandError::Conflict),
            Err(ExecuteError::Store(e)) => Err(e.into()),
        }
    }

    /// Looks at the holder of a number a join found taken. Gives the number
    /// back when its holder no longer holds it in fact: one who withdrew
    /// without the release being appended (a release whose target was
    /// destroyed meanwhile is undone by withdrawing its member), or, on a
    /// store whose multi-stream append is not atomic, one whose join never
    /// got past the claim (after a minute, so a join still under way is
    /// left alone). For a release's re-join, when the holder is the
    /// dormant member the release is for, releases nothing: their old
    /// membership hands the number over in the join's own append.
    async fn stale_claim(
        &self,
        claim_stream: &str,
        rejoining: Option<&DormantMemberId>,
    ) -> Result<Stale, CommandError> {
        let executor = &self.ctx.executor;
        let (PhoneRegistry::Held { holder }, Some(version)) =
            load::<PhoneRegistry>(executor, claim_stream).await?
        else {
            return Ok(Stale::No);
        };
        // A holder nobody can read any more was erased (withdrawn, or their
        // data destroyed): the number is theirs no longer.
        let holder_state = match self.holder_id(&holder).await? {
            Some(id) => Some(
                load::<Member>(executor, &stream_name::<Member>(&id))
                    .await?
                    .0,
            ),
            None => None,
        };
        let released_from = match rejoining {
            Some(target) => self.dormant_member_of(target).await?,
            None => None,
        };
        let stale = match holder_state {
            None | Some(Member::Withdrawn { .. }) => true,
            Some(Member::Active(active)) if Some(&active.member_id) == released_from.as_ref() => {
                return Ok(Stale::HandOver(holder));
            }
            Some(Member::NotJoined) if !executor.store().multi_stream_atomic() => {
                let claimed = executor
                    .store()
                    .read_stream(claim_stream, version, 1)
                    .await?;
                claimed.first().is_some_and(|e| {
                    Utc::now() - e.metadata.recorded_at > chrono::Duration::seconds(60)
                })
            }
            _ => false,
        };
        if stale {
            let release = PhoneRegistryCommand::Release {
                holder,
                at: Utc::now(),
            };
            let origin = Origin::fresh(
                Causation::root(uuid::Uuid::now_v7()).by(Actor::system("phone-claims")),
            );
            run::<PhoneRegistry>(executor, claim_stream, release, &origin).await?;
            tracing::info!("a stale phone claim was given back");
            return Ok(Stale::Freed);
        }
        Ok(Stale::No)
    }

    /// The member a target is for, while it is `DORMANT` (the one state a
    /// release starts from).
    async fn dormant_member_of(
        &self,
        target: &DormantMemberId,
    ) -> Result<Option<MemberId>, CommandError> {
        let (state, _) =
            load::<DormantMember>(&self.ctx.executor, &stream_name::<DormantMember>(target))
                .await?;
        Ok(match state {
            DormantMember::Registered(t) if t.status == DormantStatus::Dormant => Some(t.member_id),
            _ => None,
        })
    }

    /// Runs a command that needs nothing but the member's own stream:
    /// earning or using points, an exclusion from the dormancy policy.
    pub(crate) async fn command(
        &self,
        member_id: &MemberId,
        command: MemberCommand,
        origin: Origin,
    ) -> Result<Handled<Member>, CommandError> {
        run::<Member>(
            &self.ctx.executor,
            &stream_name::<Member>(member_id),
            command,
            &origin,
        )
        .await
    }

    /// Withdraws a member: forfeits the balance, records the withdrawal and
    /// gives the phone number back in one append. The person key is deleted
    /// here at once and, should this process die first, by the projector's
    /// erasure process manager, which follows `MemberWithdrawn` in the log.
    pub(crate) async fn withdraw(
        &self,
        member_id: &MemberId,
        origin: Origin,
    ) -> Result<Handled<Member>, CommandError> {
        let stream = stream_name::<Member>(member_id);
        let executor = &self.ctx.executor;
        let (current, _) = load::<Member>(executor, &stream).await?;
        let phone = match (&current, self.ctx.keys.get(&stream).await?) {
            (Member::Active(active), Some(key)) => key.open(&active.phone_no).ok(),
            _ => None,
        };
        if matches!(current, Member::Withdrawn { .. }) && !executor.store().multi_stream_atomic() {
            self.complete_release(&stream, member_id, &origin).await?;
        }
        let withdraw = MemberCommand::Withdraw { at: Utc::now() };
        let claim_stream = phone
            .and_then(|p| PhoneNumber::parse(&p).ok())
            .map(|phone| self.phone_stream(&phone));
        let holder = match &claim_stream {
            Some(claim_stream) => self.held_by(claim_stream, member_id).await?,
            None => None,
        };
        let withdrawn = match (&claim_stream, &holder) {
            (Some(claim_stream), Some(holder)) => {
                let release = PhoneRegistryCommand::Release {
                    holder: holder.clone(),
                    at: Utc::now(),
                };
                run_pair::<Member, PhoneRegistry>(
                    executor,
                    (&stream, withdraw),
                    (claim_stream, release),
                    FirstDecision::OnRead,
                    &origin,
                )
                .await?
                .0
            }
            _ => run::<Member>(executor, &stream, withdraw, &origin).await?,
        };
        let withdrawn = self.at_the_withdrawal(&stream, withdrawn, &origin).await?;
        fail::fail_point!("withdraw::before_key_delete", |_| Err(
            CommandError::Internal(anyhow::anyhow!(
                "failpoint withdraw::before_key_delete: the process stopped"
            ))
        ));
        if let Some(Holder::Sealed(sealed)) = &holder {
            self.ctx.keys.delete(&sealed.key_id).await?;
        }
        self.ctx.keys.delete(&stream).await?;
        Ok(withdrawn)
    }

    /// A keyed withdrawal's outcome at the position of its own event in the
    /// member's stream, whichever way this attempt went: with the number's
    /// release (an attempt that read the number) or without (an attempt
    /// after another one had deleted the key that opens it), so every
    /// attempt of one key answers the same position.
    async fn at_the_withdrawal(
        &self,
        stream: &str,
        mut withdrawn: Handled<Member>,
        origin: &Origin,
    ) -> Result<Handled<Member>, CommandError> {
        if origin.ids == EventIds::Fresh || withdrawn.position.is_none() {
            return Ok(withdrawn);
        }
        let store = self.ctx.executor.store();
        if let Some(event) = store
            .find_in_stream(stream, origin.ids.id(stream, 0))
            .await?
        {
            withdrawn.position = Some(event.position);
        }
        Ok(withdrawn)
    }

    /// A withdrawal whose number was not given back (a store that appends
    /// the parts in order lost the second part): the number, read from the
    /// member's join while their key still opens it (it is deleted last),
    /// given back now, under the withdrawal's own derived ids. Nothing to
    /// do when the key is gone (the withdrawal finished) or the number is
    /// free or held by someone else since.
    async fn complete_release(
        &self,
        stream: &str,
        member_id: &MemberId,
        origin: &Origin,
    ) -> Result<(), CommandError> {
        let executor = &self.ctx.executor;
        let Some(key) = self.ctx.keys.get(stream).await? else {
            return Ok(());
        };
        let first = executor.store().read_stream(stream, 0, 1).await?;
        let Some(Ok(MemberEvent::MemberJoined(joined))) = first
            .first()
            .map(mileage_store::RecordedEvent::decode::<MemberEvent>)
        else {
            return Ok(());
        };
        let Some(phone) = key
            .open(&joined.phone_no)
            .ok()
            .and_then(|p| PhoneNumber::parse(&p).ok())
        else {
            return Ok(());
        };
        let stream = self.phone_stream(&phone);
        let Some(holder) = self.held_by(&stream, member_id).await? else {
            return Ok(());
        };
        let release = PhoneRegistryCommand::Release {
            holder,
            at: Utc::now(),
        };
        match executor
            .execute::<PhoneRegistry>(&stream, release, origin.ids, origin.causation.clone())
            .await
        {
            Ok(_) | Err(ExecuteError::Rejected(PhoneRegistryError::NotHolder)) => Ok(()),
            Err(ExecuteError::Rejected(other)) => Err(CommandError::rejected(&other)),
            Err(ExecuteError::Contended { .. }) => Err(CommandError::Conflict),
            Err(ExecuteError::Store(e)) => Err(e.into()),
        }
    }
}
