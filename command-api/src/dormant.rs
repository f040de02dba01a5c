//! Dormant-target use cases: register, mark dormant, release.

use crate::handle::Origin;
use chrono::Utc;
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormant_member::{DormantMember, DormantMemberCommand, DormantStatus};
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::values::{Nickname, PhoneNumber};
use mileage_domain::{Aggregate, ErrorKind};

use crate::handle::{Handled, handle, load};
use crate::personal::seal;
use crate::release_guard::Release;
use crate::state::AppState;
use mileage_service::ApiError;
use mileage_service::auth::Caller;

/// Registers `member_id` as a dormant target under a new sequential id.
pub(crate) async fn register(
    state: &AppState,
    member_id: MemberId,
    phone: &str,
    nickname: &str,
    origin: Origin,
) -> Result<(DormantMemberId, Handled<DormantMember>), ApiError> {
    let phone = PhoneNumber::parse(phone)?;
    let nickname = Nickname::parse(nickname)?;
    let id = DormantMemberId::parse(&state.ctx.ids.next("dormantMember").await?.to_string())?;
    let stream = stream_name::<DormantMember>(&id);
    let key = state.ctx.keys.get_or_create(&stream).await?;
    let command = DormantMemberCommand::Register {
        id: id.clone(),
        member_id,
        phone: seal(&key, "phoneNo", phone.as_str()),
        nickname: seal(&key, "nickname", nickname.as_str()),
        at: Utc::now(),
    };
    let handled = handle::<DormantMember>(&state.ctx.executor, &stream, command, origin).await?;
    Ok((id, handled))
}

/// Marks a target dormant (its notice follows asynchronously).
pub(crate) async fn mark_dormant(
    state: &AppState,
    id: &DormantMemberId,
    origin: Origin,
) -> Result<Handled<DormantMember>, ApiError> {
    let command = DormantMemberCommand::MarkDormant { at: Utc::now() };
    handle::<DormantMember>(
        &state.ctx.executor,
        &stream_name::<DormantMember>(id),
        command,
        origin,
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
) -> Result<Handled<DormantMember>, ApiError> {
    let stream = stream_name::<DormantMember>(id);
    let (target, version) = load::<DormantMember>(&state.ctx.executor, &stream).await?;
    match &target {
        DormantMember::Registered(registered) => {
            caller.require_member_or_manager(&registered.member_id)?;
        }
        DormantMember::Unregistered => caller.require_manager()?,
    }
    let probe = DormantMemberCommand::Clear {
        rejoined_member_id: MemberId::parse("0")?,
        at: Utc::now(),
    };
    if target
        .decide(probe)
        .map_err(|e| ApiError::domain(&e))?
        .is_empty()
    {
        return Ok(Handled {
            state: target,
            version,
            position: None,
            replayed: false,
        });
    }
    let DormantMember::Registered(registered) = &target else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "a releasable target must be registered"
        )));
    };
    let erased = || ApiError::Domain {
        kind: ErrorKind::Conflict,
        code: "dormant_member.personal_data_erased",
        detail: "the target's personal data was erased; it cannot re-join".into(),
        field: None,
    };
    let key = state.ctx.keys.get(&stream).await?.ok_or_else(erased)?;
    let phone = key.open(&registered.phone_no).map_err(|_| erased())?;
    let nickname = key.open(&registered.nickname).map_err(|_| erased())?;
    // The join is the release's, derived from the target and its version:
    // asked again (a retry after any failure), it answers the same member.
    let release = Release::of(id, version, origin);
    let rejoined_member_id = state.join.join(&phone, &nickname, &release).await?;
    fail::fail_point!("release::after_join", |_| Err(ApiError::Internal(
        anyhow::anyhow!("failpoint release::after_join: the process stopped")
    )));
    let command = DormantMemberCommand::Clear {
        rejoined_member_id: rejoined_member_id.clone(),
        at: Utc::now(),
    };
    match handle::<DormantMember>(&state.ctx.executor, &stream, command, origin).await {
        Ok(cleared) => Ok(cleared),
        Err(refused) => {
            let (now, _) = load::<DormantMember>(&state.ctx.executor, &stream).await?;
            if now.status() != Some(DormantStatus::Destruction) {
                return Err(refused);
            }
            // Destroyed while it was being released: the member it re-joined
            // must not keep the destroyed person's data.
            let undo = Origin::keyed(origin.causation, &release.key, "undo");
            state.members.withdraw(&rejoined_member_id, undo).await?;
            Err(ApiError::Domain {
                kind: ErrorKind::Conflict,
                code: "dormant_member.destroyed_during_release",
                detail: "the target was destroyed while it was being released; the member it \
                         re-joined was withdrawn and their data erased"
                    .into(),
                field: None,
            })
        }
    }
}
