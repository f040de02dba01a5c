//! `timeline`: each event of a dormant target (its stream and its
//! notice's) and of a member as an entry of its subject's timeline, with
//! its time, type, actor and correlation id.

use mileage_domain::Aggregate;
use mileage_domain::aggregate::stream_id;
use mileage_domain::dormant_member::DormantMember;
use mileage_domain::event::EventPayload;
use mileage_domain::manager_message::ManagerMessage;
use mileage_domain::member::Member;
use mileage_read_model::timeline::{self as table, Entry};
use mileage_store::RecordedEvent;

use super::{Model, decode_if};
use crate::consumer::HandleError;

/// The timeline model.
pub struct Timeline;

/// What the timeline applies: an event of a subject, its data in the
/// current schema version.
pub struct Event {
    subject: String,
    data: Vec<u8>,
}

impl Timeline {
    /// The entry's subject and data when `event` is on an `A` stream: the
    /// stream itself, or the stream of the subject `A`'s stream belongs to.
    fn on<A: Aggregate>(
        event: &RecordedEvent,
        subject: impl FnOnce(&str) -> String,
    ) -> Result<Option<Event>, HandleError> {
        Ok(decode_if::<A>(event)?.map(|decoded| Event {
            subject: subject(stream_id(&event.stream)),
            data: decoded.to_json(),
        }))
    }
}

impl Model for Timeline {
    type Table = table::TimelineTable;
    type Event = Event;

    fn route(event: &RecordedEvent) -> Result<Option<(String, Event)>, HandleError> {
        let routed = match Self::on::<DormantMember>(event, |_| event.stream.clone())? {
            Some(routed) => Some(routed),
            // A target's notice is on `managerMessage-{target id}`.
            None => match Self::on::<ManagerMessage>(event, |id| format!("dormantMember-{id}"))? {
                Some(routed) => Some(routed),
                None => Self::on::<Member>(event, |_| event.stream.clone())?,
            },
        };
        Ok(routed.map(|routed| (event.event_id.to_string(), routed)))
    }

    fn apply(
        row: Option<Entry>,
        event: Event,
        recorded: &RecordedEvent,
    ) -> Result<Option<Entry>, String> {
        if row.is_some() {
            return Ok(row);
        }
        let position = |n: u64| {
            i64::try_from(n).map_err(|_| format!("position {} beyond 2^63", recorded.position))
        };
        let data = String::from_utf8(event.data)
            .map_err(|e| format!("an event's data is not UTF-8 after decoding: {e}"))?;
        Ok(Some(Entry {
            event_id: recorded.event_id.to_string(),
            subject: event.subject,
            stream: recorded.stream.clone(),
            position: (
                position(recorded.position.commit)?,
                position(recorded.position.prepare)?,
            ),
            at: recorded.metadata.recorded_at,
            event_type: recorded.event_type.clone(),
            actor: recorded.metadata.actor.as_ref().map(ToString::to_string),
            correlation_id: recorded.metadata.correlation_id,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use mileage_domain::ids::{DormantMemberId, MemberId};
    use mileage_domain::manager_message::{ManagerMessageEvent, MessageFailed};
    use mileage_domain::member::{MemberEvent, PointsEarned};
    use mileage_domain::phone_registry::{Holder, PhoneClaimed, PhoneRegistryEvent};

    use super::{Model, Timeline};
    use crate::projections::recorded;

    fn entry_of(recorded: &mileage_store::RecordedEvent) -> Option<(String, String)> {
        let (id, event) = Timeline::route(recorded).unwrap()?;
        assert_eq!(id, recorded.event_id.to_string());
        let entry = Timeline::apply(None, event, recorded).unwrap().unwrap();
        Some((entry.subject, entry.data))
    }

    #[test]
    fn a_notice_is_on_its_targets_timeline_and_a_phone_claim_on_nobodys() {
        let member = MemberId::parse("7").unwrap();
        let target = DormantMemberId::parse("5").unwrap();
        let failed = ManagerMessageEvent::MessageFailed(MessageFailed {
            target_id: target.clone(),
            member_id: member.clone(),
            phone_no: mileage_domain::pii::PersonKey::new("k", [1; 32]).seal(
                "phoneNo",
                "01012345678",
                [2; 24],
            ),
            content: "c".into(),
            attempts: 3,
            reason: "refused".into(),
            at: Utc::now(),
        });
        let (subject, data) = entry_of(&recorded("managerMessage-5", 1, &failed)).unwrap();
        assert_eq!(subject, "dormantMember-5");
        assert!(data.contains("\"reason\":\"refused\""), "{data}");
        assert!(!data.contains("01012345678"), "personal data stays sealed");

        let earned = MemberEvent::PointsEarned(PointsEarned {
            member_id: member.clone(),
            amount: mileage_domain::values::Points(5),
            balance: mileage_domain::values::Points(5),
            at: Utc::now(),
            expires_at: Utc::now(),
        });
        let (subject, _) = entry_of(&recorded("member-7", 2, &earned)).unwrap();
        assert_eq!(subject, "member-7");

        let claim = PhoneRegistryEvent::PhoneClaimed(PhoneClaimed {
            holder: Holder::Named(member),
            at: Utc::now(),
        });
        assert_eq!(entry_of(&recorded("memberPhone-abc", 3, &claim)), None);
    }

    #[test]
    fn an_entry_applied_again_stays_as_it_was() {
        let earned = MemberEvent::PointsEarned(PointsEarned {
            member_id: MemberId::parse("7").unwrap(),
            amount: mileage_domain::values::Points(5),
            balance: mileage_domain::values::Points(5),
            at: Utc::now(),
            expires_at: Utc::now(),
        });
        let event = recorded("member-7", 2, &earned);
        let (_, first) = Timeline::route(&event).unwrap().unwrap();
        let entry = Timeline::apply(None, first, &event).unwrap();
        let (_, again) = Timeline::route(&event).unwrap().unwrap();
        assert_eq!(
            Timeline::apply(entry.clone(), again, &event).unwrap(),
            entry
        );
    }
}
