use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::aggregate::Aggregate;
use crate::error::{DomainError, ErrorKind};
use crate::ids::{DormantMemberId, MemberId};
use crate::pii::{NONCE_LEN, PersonKey, Sealed};
use crate::testing::given;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn id() -> DormantMemberId {
    DormantMemberId::parse("1").unwrap()
}

fn member() -> MemberId {
    MemberId::parse("2").unwrap()
}

fn rejoined() -> MemberId {
    MemberId::parse("7").unwrap()
}

fn sealed(field: &str, value: &str) -> Sealed {
    PersonKey::new("dormantMember-1", [3; 32]).seal(field, value, [0; NONCE_LEN])
}

fn register() -> DormantMemberCommand {
    DormantMemberCommand::Register {
        id: id(),
        member_id: member(),
        phone: sealed("phoneNo", "01085581234"),
        nickname: sealed("nickname", "DOR1"),
        at: at(),
        quiet_since: None,
    }
}

fn registered() -> DormantMemberEvent {
    DormantMemberRegistered {
        id: id(),
        member_id: member(),
        phone_no: sealed("phoneNo", "01085581234"),
        nickname: sealed("nickname", "DOR1"),
        at: at(),
        quiet_since: None,
    }
    .into()
}

fn changed() -> DormantMemberEvent {
    DormantMemberChanged {
        id: id(),
        member_id: member(),
        phone_no: sealed("phoneNo", "01085581234"),
        nickname: sealed("nickname", "DOR1"),
        at: at(),
    }
    .into()
}

fn destroyed() -> DormantMemberEvent {
    DormantMemberDestroyed {
        id: id(),
        member_id: member(),
        reason: "gateway rejected the number".into(),
        at: at(),
    }
    .into()
}

fn cleared() -> DormantMemberEvent {
    DormantMemberCleared {
        id: id(),
        member_id: member(),
        rejoined_member_id: rejoined(),
        at: at(),
    }
    .into()
}

fn mark_dormant() -> DormantMemberCommand {
    DormantMemberCommand::MarkDormant { at: at() }
}

fn destroy() -> DormantMemberCommand {
    DormantMemberCommand::Destroy {
        reason: "gateway rejected the number".into(),
        at: at(),
    }
}

fn clear() -> DormantMemberCommand {
    DormantMemberCommand::Clear {
        rejoined_member_id: rejoined(),
        at: at(),
    }
}

fn lift() -> DormantMemberCommand {
    DormantMemberCommand::Lift {
        reason: "active again".into(),
        at: at(),
    }
}

fn lifted() -> DormantMemberEvent {
    DormantMemberLifted {
        id: id(),
        member_id: member(),
        reason: "active again".into(),
        at: at(),
    }
    .into()
}

#[test]
fn activity_while_pre_dormant_lifts_the_target_with_its_reason() {
    let state = given::<DormantMember>([registered()])
        .when(lift())
        .then([lifted()]);
    assert_eq!(state.status(), Some(DormantStatus::Cleared));
}

#[test]
fn lifting_a_lifted_target_changes_nothing() {
    given::<DormantMember>([registered(), lifted()])
        .when(lift())
        .then([]);
}

#[test]
fn a_dormant_target_is_not_lifted_but_released() {
    given::<DormantMember>([registered(), changed()])
        .when(lift())
        .then_err(DormantMemberError::InvalidTransition {
            from: DormantStatus::Dormant,
            to: DormantStatus::Cleared,
        });
}

#[test]
fn a_lifted_target_is_neither_released_nor_marked() {
    given::<DormantMember>([registered(), lifted()])
        .when(clear())
        .then_err(DormantMemberError::Lifted);
    given::<DormantMember>([registered(), lifted()])
        .when(mark_dormant())
        .then_err(DormantMemberError::Lifted);
}

#[test]
fn a_policy_registration_keeps_the_quiet_period_it_is_for() {
    let since = at() - chrono::TimeDelta::days(335);
    let DormantMemberCommand::Register {
        id,
        member_id,
        phone,
        nickname,
        at,
        ..
    } = register()
    else {
        unreachable!()
    };
    let state = given::<DormantMember>([])
        .when(DormantMemberCommand::Register {
            id: id.clone(),
            member_id: member_id.clone(),
            phone: phone.clone(),
            nickname: nickname.clone(),
            at,
            quiet_since: Some(since),
        })
        .then([DormantMemberRegistered {
            id,
            member_id,
            phone_no: phone,
            nickname,
            at,
            quiet_since: Some(since),
        }
        .into()]);
    let DormantMember::Registered(target) = state else {
        panic!("registered")
    };
    assert_eq!(
        (target.quiet_since, target.registered_at),
        (Some(since), at)
    );
}

#[test]
fn an_operators_registration_reads_as_before() {
    let stored = serde_json::to_value(DormantMemberRegistered {
        id: id(),
        member_id: member(),
        phone_no: sealed("phoneNo", "01085581234"),
        nickname: sealed("nickname", "DOR1"),
        at: at(),
        quiet_since: None,
    })
    .unwrap();
    assert!(stored.get("quietSince").is_none(), "{stored}");
}

#[test]
fn an_operator_registers_a_pre_dormant_target() {
    let state = given::<DormantMember>([])
        .when(register())
        .then([registered()]);
    assert_eq!(state.status(), Some(DormantStatus::PreDormant));
}

#[test]
fn registering_twice_is_refused() {
    given::<DormantMember>([registered()])
        .when(register())
        .then_err(DormantMemberError::AlreadyRegistered);
}

#[test]
fn a_pre_dormant_target_becomes_dormant_carrying_its_contact_data() {
    let state = given::<DormantMember>([registered()])
        .when(mark_dormant())
        .then([changed()]);
    assert_eq!(state.status(), Some(DormantStatus::Dormant));
}

#[test]
fn marking_a_dormant_target_dormant_again_changes_nothing() {
    given::<DormantMember>([registered(), changed()])
        .when(mark_dormant())
        .then([]);
}

#[test]
fn a_failed_notice_destroys_a_dormant_target() {
    let state = given::<DormantMember>([registered(), changed()])
        .when(destroy())
        .then([destroyed()]);
    assert_eq!(state.status(), Some(DormantStatus::Destruction));
}

#[test]
fn a_repeated_destruction_changes_nothing() {
    given::<DormantMember>([registered(), changed(), destroyed()])
        .when(destroy())
        .then([]);
}

#[test]
fn a_released_dormant_target_is_cleared_with_its_new_member_id() {
    let state = given::<DormantMember>([registered(), changed()])
        .when(clear())
        .then([cleared()]);
    let DormantMember::Registered(target) = state else {
        panic!("target should be registered");
    };
    assert_eq!(target.status, DormantStatus::Cleared);
    assert_eq!(target.rejoined_member_id, Some(rejoined()));
}

#[test]
fn a_pre_dormant_target_cannot_be_released_or_destroyed() {
    given::<DormantMember>([registered()])
        .when(clear())
        .then_err(DormantMemberError::InvalidTransition {
            from: DormantStatus::PreDormant,
            to: DormantStatus::Cleared,
        });
    given::<DormantMember>([registered()])
        .when(destroy())
        .then_err(DormantMemberError::InvalidTransition {
            from: DormantStatus::PreDormant,
            to: DormantStatus::Destruction,
        });
}

#[test]
fn a_destroyed_target_cannot_be_released_or_made_dormant() {
    given::<DormantMember>([registered(), changed(), destroyed()])
        .when(clear())
        .then_err(DormantMemberError::InvalidTransition {
            from: DormantStatus::Destruction,
            to: DormantStatus::Cleared,
        });
    given::<DormantMember>([registered(), changed(), destroyed()])
        .when(mark_dormant())
        .then_err(DormantMemberError::InvalidTransition {
            from: DormantStatus::Destruction,
            to: DormantStatus::Dormant,
        });
}

#[test]
fn a_cleared_target_cannot_be_destroyed() {
    given::<DormantMember>([registered(), changed(), cleared()])
        .when(destroy())
        .then_err(DormantMemberError::InvalidTransition {
            from: DormantStatus::Cleared,
            to: DormantStatus::Destruction,
        });
}

#[test]
fn commands_for_an_unknown_target_are_not_found() {
    for command in [mark_dormant(), destroy(), clear()] {
        given::<DormantMember>([])
            .when(command)
            .then_err(DormantMemberError::NotFound);
    }
}

#[test]
fn error_codes_are_stable_and_classed() {
    let transition = DormantMemberError::InvalidTransition {
        from: DormantStatus::Cleared,
        to: DormantStatus::Dormant,
    };
    assert_eq!(transition.code(), "dormant_member.invalid_transition");
    assert_eq!(transition.kind(), ErrorKind::Conflict);
    assert_eq!(
        transition.to_string(),
        "cannot change a CLEARED target to DORMANT"
    );
    assert_eq!(DormantMemberError::NotFound.kind(), ErrorKind::NotFound);
    assert_eq!(
        DormantMemberError::AlreadyRegistered.code(),
        "dormant_member.already_registered"
    );
}

fn any_command() -> impl Strategy<Value = DormantMemberCommand> {
    prop_oneof![
        Just(register()),
        Just(mark_dormant()),
        Just(destroy()),
        Just(clear()),
        Just(lift())
    ]
}

proptest! {
    /// Random command sequences only ever move along the lifecycle's edges,
    /// terminal states stay terminal, and evolving decided events lands in
    /// the status the command asked for.
    #[test]
    fn random_command_sequences_follow_the_lifecycle(commands in prop::collection::vec(any_command(), 0..20)) {
        let mut state = DormantMember::default();
        for command in commands {
            let before = state.status();
            let target = match &command {
                DormantMemberCommand::Register { .. } => DormantStatus::PreDormant,
                DormantMemberCommand::MarkDormant { .. } => DormantStatus::Dormant,
                DormantMemberCommand::Destroy { .. } => DormantStatus::Destruction,
                DormantMemberCommand::Clear { .. } | DormantMemberCommand::Lift { .. } => {
                    DormantStatus::Cleared
                }
            };
            let lifting = matches!(command, DormantMemberCommand::Lift { .. });
            // A lift and a release do not stand in for each other.
            let other_way = lifting
                || matches!(&state, DormantMember::Registered(t) if t.lifted.is_some());
            let Ok(events) = state.decide(command) else {
                prop_assert!(before.is_none_or(|s| s != target || target == DormantStatus::PreDormant || other_way));
                continue;
            };
            state = events.iter().fold(state, Aggregate::evolve);
            let after = state.status();
            prop_assert_eq!(after, Some(target));
            match before {
                None => prop_assert_eq!(after, Some(DormantStatus::PreDormant)),
                Some(from) if from.is_terminal() => prop_assert_eq!(Some(from), after),
                Some(from) => prop_assert!(
                    from == target
                        || from.can_become(target)
                        || (lifting && from == DormantStatus::PreDormant)
                ),
            }
        }
    }
}
