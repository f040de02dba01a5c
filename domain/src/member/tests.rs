use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::aggregate::Aggregate;
use crate::error::{DomainError, ErrorKind};
use crate::ids::MemberId;
use crate::pii::{NONCE_LEN, PersonKey, Sealed};
use crate::testing::given;
use crate::values::{Points, ValidationError};

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn id() -> MemberId {
    MemberId::parse("1").unwrap()
}

fn sealed(field: &str, value: &str) -> Sealed {
    PersonKey::new("member-1", [7; 32]).seal(field, value, [0; NONCE_LEN])
}

fn join() -> MemberCommand {
    MemberCommand::Join {
        member_id: id(),
        phone: sealed("phoneNo", "01085581234"),
        nickname: sealed("nickname", "SEQ1"),
        at: at(),
        rejoining: None,
    }
}

fn joined() -> MemberEvent {
    MemberJoined {
        member_id: id(),
        phone_no: sealed("phoneNo", "01085581234"),
        nickname: sealed("nickname", "SEQ1"),
        joined_at: at(),
        rejoining: None,
    }
    .into()
}

fn earned(amount: u64, balance: u64) -> MemberEvent {
    PointsEarned {
        member_id: id(),
        amount: Points(amount),
        balance: Points(balance),
        at: at(),
        expires_at: (at()) + crate::member::POINTS_VALID_FOR,
    }
    .into()
}

fn used(amount: u64, balance: u64) -> MemberEvent {
    PointsUsed {
        member_id: id(),
        amount: Points(amount),
        balance: Points(balance),
        at: at(),
    }
    .into()
}

fn withdrawn() -> MemberEvent {
    MemberWithdrawn {
        member_id: id(),
        at: at(),
    }
    .into()
}

#[test]
fn a_new_member_joins() {
    let state = given::<Member>([]).when(join()).then([joined()]);
    assert_eq!(state.balance(), Points::ZERO);
}

#[test]
fn joining_twice_is_refused() {
    given::<Member>([joined()])
        .when(join())
        .then_err(MemberError::AlreadyJoined);
}

#[test]
fn a_withdrawn_member_cannot_join_again_under_the_same_id() {
    given::<Member>([joined(), withdrawn()])
        .when(join())
        .then_err(MemberError::AlreadyJoined);
}

#[test]
fn earning_adds_to_the_balance() {
    let state = given::<Member>([joined(), earned(100, 100)])
        .when(MemberCommand::EarnPoints {
            amount: 50,
            at: at(),
            limits: PointLimits::DEFAULT,
        })
        .then([earned(50, 150)]);
    assert_eq!(state.balance(), Points(150));
}

#[test]
fn earning_zero_or_negative_points_is_invalid() {
    for amount in [0, -1, i64::MIN] {
        given::<Member>([joined()])
            .when(MemberCommand::EarnPoints {
                amount,
                at: at(),
                limits: PointLimits::DEFAULT,
            })
            .then_err(ValidationError::AmountNotPositive { amount }.into());
    }
}

#[test]
fn earning_past_the_balance_cap_is_refused_and_up_to_it_accepted() {
    let limits = PointLimits::new(100, 1_000).unwrap();
    given::<Member>([joined(), earned(100, 950)])
        .when(MemberCommand::EarnPoints {
            amount: 51,
            at: at(),
            limits,
        })
        .then_err(MemberError::BalanceLimit { max: Points(1_000) });
    given::<Member>([joined(), earned(100, 950)])
        .when(MemberCommand::EarnPoints {
            amount: 50,
            at: at(),
            limits,
        })
        .then([earned(50, 1_000)]);
}

#[test]
fn a_balance_from_before_the_cap_cannot_overflow() {
    given::<Member>([joined(), earned(u64::MAX, u64::MAX)])
        .when(MemberCommand::EarnPoints {
            amount: 1,
            at: at(),
            limits: PointLimits::DEFAULT,
        })
        .then_err(MemberError::BalanceLimit {
            max: PointLimits::DEFAULT.max_balance(),
        });
}

#[test]
fn one_command_moves_at_most_the_per_command_limit() {
    let limits = PointLimits::new(100, 1_000).unwrap();
    given::<Member>([joined()])
        .when(MemberCommand::EarnPoints {
            amount: 101,
            at: at(),
            limits,
        })
        .then_err(MemberError::AmountTooLarge { max: Points(100) });
    given::<Member>([joined(), earned(100, 500)])
        .when(MemberCommand::UsePoints {
            amount: 101,
            at: at(),
            limits,
        })
        .then_err(MemberError::AmountTooLarge { max: Points(100) });
    given::<Member>([joined()])
        .when(MemberCommand::EarnPoints {
            amount: i64::MAX,
            at: at(),
            limits: PointLimits::DEFAULT,
        })
        .then_err(MemberError::AmountTooLarge {
            max: PointLimits::DEFAULT.max_amount(),
        });
}

#[test]
fn using_points_subtracts_from_the_balance() {
    given::<Member>([joined(), earned(100, 100)])
        .when(MemberCommand::UsePoints {
            amount: 100,
            at: at(),
            limits: PointLimits::DEFAULT,
        })
        .then([used(100, 0)]);
}

#[test]
fn using_more_points_than_the_balance_is_refused() {
    given::<Member>([joined(), earned(100, 100)])
        .when(MemberCommand::UsePoints {
            amount: 101,
            at: at(),
            limits: PointLimits::DEFAULT,
        })
        .then_err(MemberError::InsufficientPoints {
            balance: Points(100),
            requested: Points(101),
        });
}

#[test]
fn using_zero_points_is_invalid() {
    given::<Member>([joined()])
        .when(MemberCommand::UsePoints {
            amount: 0,
            at: at(),
            limits: PointLimits::DEFAULT,
        })
        .then_err(ValidationError::AmountNotPositive { amount: 0 }.into());
}

#[test]
fn withdrawal_forfeits_the_balance_first() {
    let state = given::<Member>([joined(), earned(70, 70)])
        .when(MemberCommand::Withdraw { at: at() })
        .then([
            PointsForfeited {
                member_id: id(),
                amount: Points(70),
                at: at(),
            }
            .into(),
            withdrawn(),
        ]);
    assert_eq!(state, Member::Withdrawn { member_id: id() });
}

#[test]
fn withdrawal_with_no_points_forfeits_nothing() {
    given::<Member>([joined()])
        .when(MemberCommand::Withdraw { at: at() })
        .then([withdrawn()]);
}

#[test]
fn a_withdrawn_member_can_do_nothing_more() {
    for command in [
        MemberCommand::EarnPoints {
            amount: 1,
            at: at(),
            limits: PointLimits::DEFAULT,
        },
        MemberCommand::UsePoints {
            amount: 1,
            at: at(),
            limits: PointLimits::DEFAULT,
        },
        MemberCommand::Withdraw { at: at() },
    ] {
        given::<Member>([joined(), withdrawn()])
            .when(command)
            .then_err(MemberError::Withdrawn);
    }
}

#[test]
fn commands_for_an_unknown_member_are_not_found() {
    for command in [
        MemberCommand::EarnPoints {
            amount: 1,
            at: at(),
            limits: PointLimits::DEFAULT,
        },
        MemberCommand::UsePoints {
            amount: 1,
            at: at(),
            limits: PointLimits::DEFAULT,
        },
        MemberCommand::Withdraw { at: at() },
    ] {
        given::<Member>([])
            .when(command)
            .then_err(MemberError::NotFound);
    }
}

#[test]
fn error_codes_are_stable_and_classed() {
    let cases = [
        (
            MemberError::NotFound,
            "member.not_found",
            ErrorKind::NotFound,
        ),
        (
            MemberError::AlreadyJoined,
            "member.already_joined",
            ErrorKind::Conflict,
        ),
        (
            MemberError::Withdrawn,
            "member.withdrawn",
            ErrorKind::Conflict,
        ),
        (
            MemberError::InsufficientPoints {
                balance: Points(1),
                requested: Points(2),
            },
            "member.insufficient_points",
            ErrorKind::Rule,
        ),
        (
            MemberError::AmountTooLarge { max: Points(1) },
            "member.amount_too_large",
            ErrorKind::Rule,
        ),
        (
            MemberError::BalanceLimit { max: Points(1) },
            "member.balance_limit",
            ErrorKind::Rule,
        ),
        (
            ValidationError::AmountNotPositive { amount: 0 }.into(),
            "validation.amount_not_positive",
            ErrorKind::Invalid,
        ),
    ];
    for (error, code, kind) in cases {
        assert_eq!((error.code(), error.kind()), (code, kind), "{error:?}");
    }
}

/// A command drawn at random, amounts including zero and negatives.
fn any_command() -> impl Strategy<Value = MemberCommand> {
    prop_oneof![
        Just(join()),
        (-5i64..1_000).prop_map(|amount| MemberCommand::EarnPoints {
            amount,
            at: at(),
            limits: PointLimits::DEFAULT
        }),
        (-5i64..1_000).prop_map(|amount| MemberCommand::UsePoints {
            amount,
            at: at(),
            limits: PointLimits::DEFAULT
        }),
        Just(MemberCommand::Withdraw { at: at() }),
        Just(MemberCommand::ExcludeFromDormancy {
            reason: crate::values::Reason::parse("VIP").unwrap(),
            at: at()
        }),
        Just(MemberCommand::IncludeInDormancy { at: at() }),
    ]
}

#[test]
fn an_operator_excludes_a_member_from_the_policy_and_includes_them_again() {
    let reason = crate::values::Reason::parse("  VIP contract ").unwrap();
    let excluded = given::<Member>([joined()])
        .when(MemberCommand::ExcludeFromDormancy {
            reason: reason.clone(),
            at: at(),
        })
        .then([ExcludedFromDormancy {
            member_id: id(),
            reason: "VIP contract".into(),
            at: at(),
        }
        .into()]);
    let Member::Active(active) = &excluded else {
        panic!("active")
    };
    assert_eq!(active.dormancy_exclusion.as_deref(), Some("VIP contract"));
    given::<Member>([
        joined(),
        ExcludedFromDormancy {
            member_id: id(),
            reason: "VIP contract".into(),
            at: at(),
        }
        .into(),
    ])
    .when(MemberCommand::ExcludeFromDormancy { reason, at: at() })
    .then([]);
    given::<Member>([joined()])
        .when(MemberCommand::IncludeInDormancy { at: at() })
        .then([]);
}

#[test]
fn a_reason_is_short_text_without_control_characters() {
    use crate::values::Reason;
    assert!(Reason::parse("").is_err());
    assert!(Reason::parse("   ").is_err());
    assert!(Reason::parse("a\nb").is_err());
    assert!(Reason::parse(&"x".repeat(201)).is_err());
    assert_eq!(
        Reason::parse(&"한".repeat(200))
            .unwrap()
            .as_str()
            .chars()
            .count(),
        200
    );
}

#[test]
fn joining_earning_and_using_are_activity_and_nothing_else_is() {
    let mut state = Member::default().evolve(&joined());
    let Member::Active(first) = &state else {
        panic!("active")
    };
    let joined_at = first.last_active_at;
    let later = joined_at + chrono::TimeDelta::days(3);
    for (event, active) in [
        (
            MemberEvent::from(ExcludedFromDormancy {
                member_id: id(),
                reason: "r".into(),
                at: later,
            }),
            joined_at,
        ),
        (
            PointsEarned {
                member_id: id(),
                amount: Points(5),
                balance: Points(5),
                at: later,
                expires_at: later + POINTS_VALID_FOR,
            }
            .into(),
            later,
        ),
    ] {
        state = state.evolve(&event);
        let Member::Active(m) = &state else {
            panic!("active")
        };
        assert_eq!(m.last_active_at, active);
    }
}

proptest! {
    /// Random command sequences keep every invariant: the balance equals what
    /// the events say, never goes negative, a withdrawal forfeits exactly the
    /// balance, Withdrawn stays Withdrawn, and evolve agrees with decide.
    #[test]
    fn random_command_sequences_keep_the_invariants(commands in prop::collection::vec(any_command(), 0..40)) {
        let mut state = Member::default();
        let mut ledger: i128 = 0;
        for command in commands {
            let before = state.clone();
            let Ok(events) = state.decide(command.clone()) else {
                continue;
            };
            for event in &events {
                match event {
                    MemberEvent::PointsEarned(e) => {
                        ledger += i128::from(e.amount.0);
                        prop_assert_eq!(i128::from(e.balance.0), ledger);
                    }
                    MemberEvent::PointsUsed(e) => {
                        ledger -= i128::from(e.amount.0);
                        prop_assert_eq!(i128::from(e.balance.0), ledger);
                    }
                    MemberEvent::PointsForfeited(e) => {
                        prop_assert_eq!(e.amount, before.balance());
                        ledger -= i128::from(e.amount.0);
                    }
                    MemberEvent::MemberJoined(_)
                    | MemberEvent::MemberWithdrawn(_)
                    | MemberEvent::ExcludedFromDormancy(_)
                    | MemberEvent::IncludedInDormancy(_) => {}
                }
                prop_assert!(ledger >= 0, "balance went negative");
                state = state.evolve(event);
            }
            prop_assert_eq!(i128::from(state.balance().0), ledger);
            if matches!(before, Member::Withdrawn { .. }) {
                prop_assert_eq!(&state, &before, "withdrawn is terminal");
            }
            if matches!(command, MemberCommand::Withdraw { .. }) {
                prop_assert!(matches!(state, Member::Withdrawn { .. }), "withdraw ends in Withdrawn");
            }
        }
    }
}
