//! `members`: each member's status and points balance, with their phone
//! number and nickname (sealed).

use mileage_domain::member::{Member, MemberEvent};
use mileage_read_model::members::{self as table, MemberRow};
use mileage_read_model::people::stored;
use mileage_store::RecordedEvent;

use super::{Model, decode_if};
use crate::consumer::HandleError;

/// The members model.
pub struct Members;

impl Model for Members {
    type Table = table::MembersTable;
    type Event = MemberEvent;

    fn route(event: &RecordedEvent) -> Result<Option<(String, MemberEvent)>, HandleError> {
        Ok(decode_if::<Member>(event)?.map(|member| (member.member_id().to_string(), member)))
    }

    fn apply(
        row: Option<MemberRow>,
        event: MemberEvent,
        recorded: &RecordedEvent,
    ) -> Result<Option<MemberRow>, String> {
        let at = recorded.metadata.recorded_at;
        let active = event.activity_at();
        let mut member = match (row, event) {
            (None, MemberEvent::MemberJoined(e)) => MemberRow {
                id: e.member_id.to_string(),
                status: "READY".into(),
                balance: 0,
                phone_sealed: Some(stored(&e.phone_no)),
                nickname_sealed: Some(stored(&e.nickname)),
                joined_at: at,
                updated_at: at,
                last_position: String::new(),
                last_active_at: e.joined_at,
                dormancy_exclusion: None,
            },
            (Some(member), MemberEvent::MemberJoined(_)) => {
                return Err(format!("member {} joined twice", member.id));
            }
            (None, _) => return Err("the member never joined".into()),
            (Some(mut member), MemberEvent::PointsEarned(e)) => {
                member.balance = balance(e.balance.0)?;
                member
            }
            (Some(mut member), MemberEvent::PointsUsed(e)) => {
                member.balance = balance(e.balance.0)?;
                member
            }
            (Some(mut member), MemberEvent::ExcludedFromDormancy(e)) => {
                member.dormancy_exclusion = Some(e.reason);
                member
            }
            (Some(mut member), MemberEvent::IncludedInDormancy(_)) => {
                member.dormancy_exclusion = None;
                member
            }
            (Some(mut member), MemberEvent::PointsForfeited(_)) => {
                member.balance = 0;
                member
            }
            // Their key goes with them: nothing here to clear.
            (Some(mut member), MemberEvent::MemberWithdrawn(_)) => {
                member.status = "WITHDRAWN".into();
                member
            }
        };
        if let Some(active) = active {
            member.last_active_at = member.last_active_at.max(active);
        }
        member.updated_at = at;
        member.last_position = recorded.position.to_string();
        Ok(Some(member))
    }
}

fn balance(points: u64) -> Result<i64, String> {
    i64::try_from(points).map_err(|_| format!("balance {points} does not fit the read model"))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use mileage_domain::ids::MemberId;
    use mileage_domain::member::{
        ExcludedFromDormancy, MemberEvent, MemberJoined, MemberWithdrawn, PointsEarned,
        PointsForfeited, PointsUsed,
    };
    use mileage_domain::pii::PersonKey;
    use mileage_domain::values::Points;

    use mileage_read_model::people::People;

    use super::Members;
    use crate::projections::{Model, recorded};

    #[test]
    fn balance_follows_the_events_and_the_key_decides_what_shows() {
        let key = PersonKey::new("member-5", [9; 32]);
        let people = People::new([("member-5".to_owned(), key.clone())].into());
        let shown = |row: &mileage_read_model::members::MemberRow, people: &People| {
            people
                .person(row.phone_sealed.as_deref(), row.nickname_sealed.as_deref())
                .unwrap()
        };
        let id = MemberId::parse("5").unwrap();
        let start = Utc::now();
        let day = |n: i64| start - chrono::TimeDelta::days(100 - n);
        let events: Vec<MemberEvent> = vec![
            MemberJoined {
                member_id: id.clone(),
                phone_no: key.seal("phoneNo", "01099998888", [1; 24]),
                nickname: key.seal("nickname", "lee", [2; 24]),
                joined_at: day(0),
                rejoining: None,
            }
            .into(),
            PointsEarned {
                member_id: id.clone(),
                amount: Points(100),
                balance: Points(100),
                at: day(1),
                expires_at: day(1) + mileage_domain::member::POINTS_VALID_FOR,
            }
            .into(),
            PointsUsed {
                member_id: id.clone(),
                amount: Points(30),
                balance: Points(70),
                at: day(2),
            }
            .into(),
            ExcludedFromDormancy {
                member_id: id.clone(),
                reason: "VIP".into(),
                at: day(3),
            }
            .into(),
        ];
        let mut row = None;
        for (n, event) in events.into_iter().enumerate() {
            let r = recorded("member-5", n as u64 + 1, &event);
            row = Members::apply(row, event, &r).unwrap();
        }
        let active = row.clone().unwrap();
        assert_eq!((active.status.as_str(), active.balance), ("READY", 70));
        assert_eq!(
            active.last_active_at,
            day(2),
            "the last use is the last activity, at the event's own time"
        );
        assert_eq!(active.dormancy_exclusion.as_deref(), Some("VIP"));
        assert_eq!(
            shown(&active, &people).phone_masked.as_deref(),
            Some("010****8888")
        );
        for (n, event) in [
            MemberEvent::from(PointsForfeited {
                member_id: id.clone(),
                amount: Points(70),
                at: Utc::now(),
            }),
            MemberWithdrawn {
                member_id: id.clone(),
                at: Utc::now(),
            }
            .into(),
        ]
        .into_iter()
        .enumerate()
        {
            let r = recorded("member-5", n as u64 + 10, &event);
            row = Members::apply(row, event, &r).unwrap();
        }
        let gone = row.unwrap();
        assert_eq!((gone.status.as_str(), gone.balance), ("WITHDRAWN", 0));
        assert_eq!(
            gone.last_active_at, active.last_active_at,
            "a forfeiture or a withdrawal is no activity"
        );
        let erased = shown(&gone, &People::default());
        assert!(erased.erased && erased.nickname.is_none() && erased.phone_masked.is_none());
    }

    /// Whatever limits the operator sets and whatever amounts clients send,
    /// every event the domain accepts projects into the read model: no
    /// accepted command can stop the projection for everyone.
    mod accepted_commands_never_stop_the_projection {
        use chrono::Utc;
        use mileage_domain::Aggregate;
        use mileage_domain::ids::MemberId;
        use mileage_domain::member::{
            Member, MemberCommand, MemberJoined, POINTS_CEILING, PointLimits,
        };
        use mileage_domain::pii::PersonKey;
        use proptest::prelude::*;

        use crate::projections::members::Members;
        use crate::projections::{Model, recorded};

        fn limits() -> impl Strategy<Value = PointLimits> {
            let bound = prop_oneof![1..=1_000u64, 1..=POINTS_CEILING, Just(POINTS_CEILING)];
            (bound.clone(), bound).prop_map(|(a, b)| {
                PointLimits::new(a.min(b), a.max(b)).expect("ordered and under the ceiling")
            })
        }

        fn amount() -> impl Strategy<Value = i64> {
            prop_oneof![-5..1_000i64, any::<i64>(), Just(i64::MAX)]
        }

        fn command(limits: PointLimits) -> impl Strategy<Value = MemberCommand> {
            prop_oneof![
                8 => amount().prop_map(move |amount| MemberCommand::EarnPoints { amount, at: Utc::now(), limits }),
                4 => amount().prop_map(move |amount| MemberCommand::UsePoints { amount, at: Utc::now(), limits }),
                1 => Just(MemberCommand::Withdraw { at: Utc::now() }),
            ]
        }

        proptest! {
            #[test]
            fn into_the_members_model(
                commands in limits().prop_flat_map(|l| prop::collection::vec(command(l), 0..60))
            ) {
                let key = PersonKey::new("member-1", [3; 32]);
                let joined = MemberJoined {
                    member_id: MemberId::parse("1").unwrap(),
                    phone_no: key.seal("phoneNo", "01099998888", [1; 24]),
                    nickname: key.seal("nickname", "kim", [2; 24]),
                    joined_at: Utc::now(),
                    rejoining: None,
                }
                .into();
                let mut state = Member::default().evolve(&joined);
                let mut row = Members::apply(None, joined.clone(), &recorded("member-1", 1, &joined)).unwrap();
                let mut version = 1;
                for command in commands {
                    let Ok(events) = state.decide(command) else { continue };
                    for event in events {
                        version += 1;
                        state = state.evolve(&event);
                        let at = recorded("member-1", version, &event);
                        let applied = Members::apply(row, event, &at);
                        prop_assert!(applied.is_ok(), "{:?}", applied.err());
                        row = applied.unwrap();
                        let balance = row.as_ref().map_or(0, |r| r.balance);
                        prop_assert!((0..=i64::try_from(POINTS_CEILING).unwrap()).contains(&balance));
                    }
                }
            }
        }
    }
}
