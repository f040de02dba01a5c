//! `managerpage`: one row per dormant target, as operators see it: phone
//! number and nickname (sealed), status, the notice's status, times.

use chrono::{DateTime, Utc};
use mileage_domain::dormant_member::{DormantMember, DormantMemberEvent};
use mileage_domain::manager_message::{ManagerMessage, ManagerMessageEvent};
use mileage_read_model::managerpage::{self as table, Target};
use mileage_read_model::people::stored;
use mileage_store::RecordedEvent;

use super::{Model, decode_if};
use crate::consumer::HandleError;

/// The managerpage model.
pub struct Managerpage;

fn event_time(recorded: &RecordedEvent) -> DateTime<Utc> {
    recorded.metadata.recorded_at
}

/// What the managerpage applies.
pub enum Event {
    /// From a `dormantMember` stream.
    Target(DormantMemberEvent),
    /// From a `managerMessage` stream.
    Message(ManagerMessageEvent),
}

impl Model for Managerpage {
    type Table = table::ManagerpageTable;
    type Event = Event;

    fn route(event: &RecordedEvent) -> Result<Option<(String, Event)>, HandleError> {
        if let Some(target) = decode_if::<DormantMember>(event)? {
            let id = target.target_id().to_string();
            return Ok(Some((id, Event::Target(target))));
        }
        if let Some(message) = decode_if::<ManagerMessage>(event)? {
            let id = match &message {
                ManagerMessageEvent::MessageSent(e) => &e.target_id,
                ManagerMessageEvent::MessageFailed(e) => &e.target_id,
            };
            return Ok(Some((id.to_string(), Event::Message(message))));
        }
        Ok(None)
    }

    fn apply(
        row: Option<Target>,
        event: Event,
        recorded: &RecordedEvent,
    ) -> Result<Option<Target>, String> {
        let at = event_time(recorded);
        let position = recorded.position;
        let mut target = match (row, &event) {
            (None, Event::Target(DormantMemberEvent::DormantMemberRegistered(e))) => Target {
                id: e.id.to_string(),
                member_id: e.member_id.to_string(),
                phone_sealed: Some(stored(&e.phone_no)),
                nickname_sealed: Some(stored(&e.nickname)),
                status: "PRE_DORMANT".into(),
                message_status: None,
                rejoined_member_id: None,
                registered_at: at,
                updated_at: at,
                registered_position: (to_i64(position.commit), to_i64(position.prepare)),
                last_position: String::new(),
            },
            (Some(target), Event::Target(DormantMemberEvent::DormantMemberRegistered(_))) => {
                return Err(format!("target {} is registered twice", target.id));
            }
            (None, _) => return Err("the target was never registered".into()),
            (Some(mut target), Event::Target(change)) => {
                match change {
                    DormantMemberEvent::DormantMemberChanged(_) => {
                        target.status = "DORMANT".into();
                        target.message_status = Some("PENDING".into());
                    }
                    // The person's key goes with it: nothing here to clear.
                    DormantMemberEvent::DormantMemberDestroyed(_) => {
                        target.status = "DESTRUCTION".into();
                    }
                    DormantMemberEvent::DormantMemberCleared(e) => {
                        target.status = "CLEARED".into();
                        target.rejoined_member_id = Some(e.rejoined_member_id.to_string());
                    }
                    // Off the list with no re-join; the reason is in its
                    // timeline.
                    DormantMemberEvent::DormantMemberLifted(_) => {
                        target.status = "CLEARED".into();
                    }
                    DormantMemberEvent::DormantMemberRegistered(_) => unreachable!("matched above"),
                }
                target
            }
            (Some(mut target), Event::Message(message)) => {
                target.message_status = Some(
                    match message {
                        ManagerMessageEvent::MessageSent(_) => "SENT",
                        ManagerMessageEvent::MessageFailed(_) => "FAILED",
                    }
                    .into(),
                );
                target
            }
        };
        target.updated_at = at;
        target.last_position = position.to_string();
        Ok(Some(target))
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use mileage_domain::dormant_member::{
        DormantMemberChanged, DormantMemberDestroyed, DormantMemberEvent, DormantMemberRegistered,
    };
    use mileage_domain::ids::{DormantMemberId, MemberId};
    use mileage_domain::manager_message::{ManagerMessageEvent, MessageFailed};
    use mileage_domain::pii::PersonKey;
    use mileage_read_model::people::People;

    use super::{Event, Managerpage, Target};
    use crate::projections::{Model, recorded};

    fn key() -> PersonKey {
        PersonKey::new("dormantMember-7", [3; 32])
    }

    fn registered() -> DormantMemberEvent {
        DormantMemberRegistered {
            id: DormantMemberId::parse("7").unwrap(),
            member_id: MemberId::parse("2").unwrap(),
            phone_no: key().seal("phoneNo", "01012345678", [1; 24]),
            nickname: key().seal("nickname", "kim", [2; 24]),
            at: Utc::now(),
            quiet_since: None,
        }
        .into()
    }

    /// Folds `events` the way a batch does.
    fn fold(events: Vec<(Event, mileage_store::RecordedEvent)>) -> Result<Option<Target>, String> {
        let mut row = None;
        for (event, recorded) in events {
            row = Managerpage::apply(row, event, &recorded)?;
        }
        Ok(row)
    }

    #[test]
    fn a_registered_target_is_stored_sealed_then_dormant_failed_and_destroyed() {
        let e1 = registered();
        let r1 = recorded("dormantMember-7", 1, &e1);
        let row = fold(vec![(Event::Target(e1), r1)]).unwrap().unwrap();
        assert_eq!(row.status, "PRE_DORMANT");
        let sealed = (row.phone_sealed.clone(), row.nickname_sealed.clone());
        assert!(
            !sealed.0.as_deref().unwrap().contains("01012345678"),
            "never in clear"
        );
        let shown = People::new([("dormantMember-7".to_owned(), key())].into())
            .person(sealed.0.as_deref(), sealed.1.as_deref())
            .unwrap();
        assert_eq!(shown.phone_masked.as_deref(), Some("010****5678"));
        assert_eq!(shown.nickname.as_deref(), Some("kim"));
        assert_eq!(row.registered_position, (1, 1));

        let DormantMemberEvent::DormantMemberRegistered(r) = registered() else {
            unreachable!()
        };
        let changed: DormantMemberEvent = DormantMemberChanged {
            id: r.id.clone(),
            member_id: r.member_id.clone(),
            phone_no: r.phone_no.clone(),
            nickname: r.nickname.clone(),
            at: Utc::now(),
        }
        .into();
        let row = Managerpage::apply(
            Some(row),
            Event::Target(changed.clone()),
            &recorded("dormantMember-7", 2, &changed),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (row.status.as_str(), row.message_status.as_deref()),
            ("DORMANT", Some("PENDING"))
        );

        let failed: ManagerMessageEvent = MessageFailed {
            target_id: r.id.clone(),
            member_id: r.member_id.clone(),
            phone_no: r.phone_no.clone(),
            content: "notice".into(),
            attempts: 1,
            reason: "rejected".into(),
            at: Utc::now(),
        }
        .into();
        let row = Managerpage::apply(
            Some(row),
            Event::Message(failed.clone()),
            &recorded("managerMessage-7", 3, &failed),
        )
        .unwrap()
        .unwrap();
        assert_eq!(row.message_status.as_deref(), Some("FAILED"));

        let destroyed: DormantMemberEvent = DormantMemberDestroyed {
            id: r.id,
            member_id: r.member_id,
            reason: "notice failed".into(),
            at: Utc::now(),
        }
        .into();
        let row = Managerpage::apply(
            Some(row),
            Event::Target(destroyed.clone()),
            &recorded("dormantMember-7", 4, &destroyed),
        )
        .unwrap()
        .unwrap();
        assert_eq!(row.status, "DESTRUCTION");
        assert_eq!(row.last_position, "4-4");
        assert_eq!(
            row.registered_position,
            (1, 1),
            "the list order never moves"
        );
        let gone = People::default()
            .person(row.phone_sealed.as_deref(), row.nickname_sealed.as_deref())
            .unwrap();
        assert!(gone.erased && gone.phone_masked.is_none() && gone.nickname.is_none());
    }

    #[test]
    fn events_out_of_order_stop_the_projection() {
        let e1 = registered();
        let r1 = recorded("dormantMember-7", 1, &e1);
        let row = fold(vec![(Event::Target(e1.clone()), r1.clone())]).unwrap();
        let twice = Managerpage::apply(row, Event::Target(e1.clone()), &r1);
        assert!(twice.unwrap_err().contains("registered twice"));
        let DormantMemberEvent::DormantMemberRegistered(r) = e1 else {
            unreachable!()
        };
        let orphan: DormantMemberEvent = DormantMemberDestroyed {
            id: r.id,
            member_id: r.member_id,
            reason: "x".into(),
            at: Utc::now(),
        }
        .into();
        let error = Managerpage::apply(
            None,
            Event::Target(orphan.clone()),
            &recorded("dormantMember-7", 9, &orphan),
        );
        assert!(error.unwrap_err().contains("never registered"));
    }
}
