//! Stored events in their current form: the same upcasters the command side
//! and the projections use, applied to an envelope by the stream's category.

use mileage_domain::Aggregate;
use mileage_domain::command_key::CommandKey;
use mileage_domain::dormant_member::DormantMember;
use mileage_domain::envelope::Envelope;
use mileage_domain::event::{DecodeError, EventPayload};
use mileage_domain::id_sequence::IdSequence;
use mileage_domain::manager_message::ManagerMessage;
use mileage_domain::member::Member;
use mileage_domain::phone_registry::PhoneRegistry;

/// The event's current schema version and data, decoded through the
/// upcasters of the aggregate its stream belongs to; an error names a type
/// or version nothing reads.
pub fn current(envelope: &Envelope) -> Result<(u16, serde_json::Value), DecodeError> {
    fn decode<A: Aggregate>(
        e: &Envelope,
        data: &[u8],
    ) -> Option<Result<(u16, serde_json::Value), DecodeError>> {
        let category = e.stream.split_once('-').map_or("", |(c, _)| c);
        (category == A::CATEGORY).then(|| {
            A::Event::decode(&e.event_type, e.version, data).map(|event| {
                let json = serde_json::from_slice(&event.to_json())
                    .expect("an event's JSON is a JSON value");
                (event.schema_version(), json)
            })
        })
    }
    let data = serde_json::to_vec(&envelope.data).unwrap_or_default();
    decode::<Member>(envelope, &data)
        .or_else(|| decode::<DormantMember>(envelope, &data))
        .or_else(|| decode::<ManagerMessage>(envelope, &data))
        .or_else(|| decode::<PhoneRegistry>(envelope, &data))
        .or_else(|| decode::<IdSequence>(envelope, &data))
        .or_else(|| decode::<CommandKey>(envelope, &data))
        .unwrap_or_else(|| {
            Err(DecodeError::UnknownEventType {
                event_type: format!("{} (on stream {})", envelope.event_type, envelope.stream),
            })
        })
}

/// Rewrites `envelope` in place into its current form.
pub fn upcast(envelope: &mut Envelope) -> Result<(), DecodeError> {
    let (version, data) = current(envelope)?;
    envelope.version = version;
    envelope.data = data;
    Ok(())
}
