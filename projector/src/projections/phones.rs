//! `phones`: who holds each phone number, by the number's keyed index,
//! the holder as the claim names them (sealed).

use mileage_domain::aggregate::stream_id;
use mileage_domain::phone_registry::{Holder, PhoneRegistry, PhoneRegistryEvent};
use mileage_read_model::people::stored;
use mileage_read_model::phones::{self as table, PhoneRow};
use mileage_store::RecordedEvent;

use super::{Model, decode_if};
use crate::consumer::HandleError;

/// The phones model.
pub struct Phones;

impl Model for Phones {
    type Table = table::PhonesTable;
    type Event = PhoneRegistryEvent;

    fn route(event: &RecordedEvent) -> Result<Option<(String, Self::Event)>, HandleError> {
        let Some(claim) = decode_if::<PhoneRegistry>(event)? else {
            return Ok(None);
        };
        Ok(Some((stream_id(&event.stream).to_owned(), claim)))
    }

    fn apply(
        _row: Option<PhoneRow>,
        event: Self::Event,
        recorded: &RecordedEvent,
    ) -> Result<Option<PhoneRow>, String> {
        let phone_index = stream_id(&recorded.stream).to_owned();
        let holder = match event {
            PhoneRegistryEvent::PhoneClaimed(claimed) => Some(as_stored(&claimed.holder)),
            PhoneRegistryEvent::PhoneReleased(_) => None,
        };
        Ok(Some(PhoneRow {
            phone_index,
            holder,
            updated_at: recorded.metadata.recorded_at,
            last_position: recorded.position.to_string(),
        }))
    }
}

/// A holder as the table keeps it.
fn as_stored(holder: &Holder) -> String {
    match holder {
        Holder::Sealed(sealed) => stored(sealed),
        Holder::Named(member) => member.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use mileage_domain::ids::MemberId;
    use mileage_domain::phone_registry::{Holder, PhoneClaimed, PhoneRegistryEvent, PhoneReleased};
    use mileage_domain::pii::PersonKey;

    use super::{Model, Phones};
    use crate::projections::recorded;

    #[test]
    fn a_claim_names_its_holder_sealed_and_a_release_names_nobody() {
        let key = PersonKey::new("memberPhone-abc#1", [3; 32]);
        let holder = Holder::Sealed(key.seal_comparable("memberId", "7"));
        let claimed = recorded(
            "memberPhone-abc",
            1,
            &PhoneRegistryEvent::PhoneClaimed(PhoneClaimed {
                holder: holder.clone(),
                at: Utc::now(),
            }),
        );
        let (index, event) = Phones::route(&claimed).unwrap().unwrap();
        assert_eq!(index, "abc");
        let row = Phones::apply(None, event, &claimed).unwrap().unwrap();
        let kept = row.holder.clone().unwrap();
        assert!(
            kept.contains("memberPhone-abc#1") && !kept.contains("\"7\""),
            "{kept}"
        );

        let released = recorded(
            "memberPhone-abc",
            2,
            &PhoneRegistryEvent::PhoneReleased(PhoneReleased {
                holder,
                at: Utc::now(),
            }),
        );
        let (_, event) = Phones::route(&released).unwrap().unwrap();
        let row = Phones::apply(Some(row), event, &released).unwrap().unwrap();
        assert_eq!(row.holder, None);

        let old = recorded(
            "memberPhone-def",
            3,
            &PhoneRegistryEvent::PhoneClaimed(PhoneClaimed {
                holder: Holder::Named(MemberId::parse("9").unwrap()),
                at: Utc::now(),
            }),
        );
        let (_, event) = Phones::route(&old).unwrap().unwrap();
        let row = Phones::apply(None, event, &old).unwrap().unwrap();
        assert_eq!(row.holder.as_deref(), Some("9"));
    }
}
