//! Dormant-target use cases: register, mark dormant, release.

use crate::command::Origin;
use chrono::Utc;
use mileage_domain::aggregate::stream_name;
use mileage_domain::command_key::{CommandKey, CommandKeyCommand};
use mileage_domain::dormant_member::{DormantMember, DormantMemberCommand, DormantStatus};
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::member::Member;
use mileage_domain::pii::PersonKey;
use mileage_domain::values::{Nickname, PhoneNumber};
use mileage_store::executor::{Executor, FirstDecision};

use crate::command::{Handled, load, run, run_pair};
use crate::error::CommandError;
use crate::release_guard::Release;
use crate::state::AppState;
use mileage_service::auth::Caller;
use mileage_store::keys::seal;

/// Registers `member_id` as a dormant target under a new sequential id.
/// With an `Idempotency-Key`, the id is recorded on the key's own stream in
/// the same append (see [`mileage_domain::command_key`]): every attempt of
/// the key answers the target the first append created, and one that finds
/// the record without the target (a store that appends the parts in order
/// lost the second) completes it.
pub(crate) async fn register(
    state: &AppState,
    member_id: MemberId,
    phone: &str,
    nickname: &str,
    origin: Origin,
) -> Result<(DormantMemberId, Handled<DormantMember>), CommandError> {
    let phone = PhoneNumber::parse(phone)?;
    let nickname = Nickname::parse(nickname)?;
    let executor = &state.ctx.executor;
    not_withdrawn(executor, &member_id).await?;
    let registration = |id: DormantMemberId, key: &PersonKey| DormantMemberCommand::Register {
        id,
        member_id: member_id.clone(),
        phone: seal(key, "phoneNo", phone.as_str()),
        nickname: seal(key, "nickname", nickname.as_str()),
        at: Utc::now(),
        quiet_since: None,
    };
    let Some(key_id) = origin.key else {
        let id = new_target_id(state).await?;
        let stream = stream_name::<DormantMember>(&id);
        let key = state.ctx.keys.get_or_create(&stream).await?;
        let handled =
            run::<DormantMember>(executor, &stream, registration(id.clone(), &key), &origin)
                .await?;
        return Ok((id, handled));
    };
    let key_stream = stream_name::<CommandKey>(&key_id);
    // An earlier attempt of this key, found by its record (on PostgreSQL
    // the record's append finds it: no read on the happy path).
    let first = executor
        .earlier_attempt::<CommandKey>(&key_stream, origin.ids)
        .await?;
    let id = if let Some(recorded) = first {
        assigned(&recorded.state)?
    } else {
        let drawn = new_target_id(state).await?;
        let stream = stream_name::<DormantMember>(&drawn);
        let key = state.ctx.keys.get_or_create(&stream).await?;
        let record = CommandKeyCommand {
            id: drawn.to_string(),
            at: Utc::now(),
        };
        let created = run_pair::<CommandKey, DormantMember>(
            executor,
            (&key_stream, record),
            (&stream, registration(drawn.clone(), &key)),
            // Both streams are new: no read on the happy path.
            FirstDecision::OnKnown,
            &origin,
        )
        .await;
        match created {
            Ok((recorded, handled)) if !recorded.replayed => return Ok((drawn, handled)),
            // Another attempt of this key got there first: its target.
            Ok((recorded, _)) => {
                state.ctx.keys.discard(&stream).await?;
                assigned(&recorded.state)?
            }
            Err(refused @ CommandError::Rejected(_)) => {
                state.ctx.keys.discard(&stream).await?;
                return Err(refused);
            }
            Err(other) => return Err(other),
        }
    };
    let stream = stream_name::<DormantMember>(&id);
    let key = state.ctx.keys.get_or_create(&stream).await?;
    let handled =
        run::<DormantMember>(executor, &stream, registration(id.clone(), &key), &origin).await?;
    Ok((id, handled))
}

/// Refuses a member who withdrew: they are erased, and so would be a target
/// registered for them (the erasure process manager deletes its key as soon
/// as the log names it), so nobody is registered only to be erased.
async fn not_withdrawn(executor: &Executor, member_id: &MemberId) -> Result<(), CommandError> {
    let (member, _) = load::<Member>(executor, &stream_name::<Member>(member_id)).await?;
    if matches!(member, Member::Withdrawn { .. }) {
        return Err(CommandError::conflict(
            "dormant_member.member_withdrawn",
            format!("member {member_id} withdrew; their data is erased"),
            Some("memberId"),
        ));
    }
    Ok(())
}

/// A release's clear, with a position even when the `releases` process
/// manager, following this release's join, cleared the target first (the
/// release's own clear then changes nothing): the position of the clear in
/// the log, so the caller can still read its write.
async fn cleared_at(
    state: &AppState,
    stream: &str,
    mut cleared: Handled<DormantMember>,
) -> Result<Handled<DormantMember>, CommandError> {
    if cleared.position.is_none()
        && let Some(version) = cleared.version
    {
        let last = state
            .ctx
            .executor
            .store()
            .read_stream(stream, version, 1)
            .await?;
        cleared.position = last.first().map(|e| e.position);
    }
    Ok(cleared)
}

/// The next sequential target id.
async fn new_target_id(state: &AppState) -> Result<DormantMemberId, CommandError> {
    Ok(DormantMemberId::parse(
        &state.ctx.ids.next("dormantMember").await?.to_string(),
    )?)
}

/// The target a key's record names.
fn assigned(key: &CommandKey) -> Result<DormantMemberId, CommandError> {
    match key {
        CommandKey::Assigned { id } => Ok(DormantMemberId::parse(id)?),
        CommandKey::Unused => Err(CommandError::Internal(anyhow::anyhow!(
            "a key found in the log records no target"
        ))),
    }
}

/// Marks a target dormant (its notice follows asynchronously).
pub(crate) async fn mark_dormant(
    state: &AppState,
    id: &DormantMemberId,
    origin: Origin,
) -> Result<Handled<DormantMember>, CommandError> {
    let command = DormantMemberCommand::MarkDormant { at: Utc::now() };
    run::<DormantMember>(
        &state.ctx.executor,
        &stream_name::<DormantMember>(id),
        command,
        &origin,
    )
    .await
}

/// Releases a dormant target: joins the person as a new member first, then
/// marks the target cleared. Nothing is joined for a target that cannot be
/// released; a failed join appends nothing to the target. A manager may
/// release any target; a member only the target registered for them.
pub(crate) async fn release(
    state: &AppState,
    id: &DormantMemberId,
    origin: Origin,
    caller: &Caller,
) -> Result<Handled<DormantMember>, CommandError> {
    let stream = stream_name::<DormantMember>(id);
    let (target, version) = load::<DormantMember>(&state.ctx.executor, &stream).await?;
    may_release(caller, &target)?;
    let Some(registered) = target
        .releasable()
        .map_err(|e| CommandError::rejected(&e))?
    else {
        let standing = Handled {
            state: target,
            version,
            position: None,
            replayed: false,
        };
        return released_already(state, &stream, origin, standing).await;
    };
    let (phone, nickname) = person(state, &stream, registered).await?;
    // The join is the release's, derived from the target and its version:
    // asked again (a retry after any failure), it answers the same member.
    let release = Release::of(id, version, origin.clone(), state.members.secret());
    let rejoined_member_id = state.join.join(&phone, &nickname, &release).await?;
    fail::fail_point!("release::after_join", |_| Err(CommandError::Internal(
        anyhow::anyhow!("failpoint release::after_join: the process stopped")
    )));
    let command = DormantMemberCommand::Clear {
        rejoined_member_id: rejoined_member_id.clone(),
        at: Utc::now(),
    };
    match run::<DormantMember>(&state.ctx.executor, &stream, command, &origin).await {
        Ok(cleared) => cleared_at(state, &stream, cleared).await,
        Err(refused) => {
            let (now, _) = load::<DormantMember>(&state.ctx.executor, &stream).await?;
            if now.status() != Some(DormantStatus::Destruction) {
                return Err(refused);
            }
            Err(undo_rejoin(state, &rejoined_member_id, &release, origin).await)
        }
    }
}

/// Whether `caller` may release `target`: a manager, or the member it is
/// about.
fn may_release(caller: &Caller, target: &DormantMember) -> Result<(), CommandError> {
    match target {
        DormantMember::Registered(registered) => caller
            .require_member_or_manager(&registered.member_id)
            .map_err(CommandError::from_authorisation),
        DormantMember::Unregistered => caller
            .require_manager()
            .map_err(CommandError::from_authorisation),
    }
}

/// The answer to a release of a target released already: by this very
/// request's first attempt, when the log says so, with its outcome;
/// otherwise as it stands, with the position of the clear, whoever
/// appended it. (An attempt running beside the one whose join made the
/// `releases` process manager clear the target cannot tell itself from a
/// later release; both answer what the first attempt answers: the clear,
/// and where it is.)
async fn released_already(
    state: &AppState,
    stream: &str,
    origin: Origin,
    standing: Handled<DormantMember>,
) -> Result<Handled<DormantMember>, CommandError> {
    let executor = &state.ctx.executor;
    if let Some(first) = executor
        .replayed::<DormantMember>(stream, origin.ids)
        .await?
    {
        return Ok(first);
    }
    cleared_at(state, stream, standing).await
}

/// The person a target names, opened with its key (the re-join needs
/// them in clear); a 409 when their data was erased.
async fn person(
    state: &AppState,
    stream: &str,
    registered: &mileage_domain::dormant_member::DormantTarget,
) -> Result<(String, String), CommandError> {
    let erased = || {
        CommandError::conflict(
            "dormant_member.personal_data_erased",
            "the target's personal data was erased; it cannot re-join",
            None,
        )
    };
    let key = state.ctx.keys.get(stream).await?.ok_or_else(erased)?;
    let phone = key.open(&registered.phone_no).map_err(|_| erased())?;
    let nickname = key.open(&registered.nickname).map_err(|_| erased())?;
    Ok((phone, nickname))
}

/// Destroyed while it was being released: the member the release
/// re-joined must not keep the destroyed person's data, so it is withdrawn
/// (under a key derived from the release's); the release's answer.
async fn undo_rejoin(
    state: &AppState,
    rejoined_member_id: &MemberId,
    release: &Release,
    origin: Origin,
) -> CommandError {
    let undo = Origin::follow_up(origin.causation, &release.key, "undo");
    if let Err(error) = state.members.withdraw(rejoined_member_id, undo).await {
        return error;
    }
    CommandError::conflict(
        "dormant_member.destroyed_during_release",
        "the target was destroyed while it was being released; the member it \
         re-joined was withdrawn and their data erased",
        None,
    )
}
