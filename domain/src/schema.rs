//! JSON Schemas of everything stored: each event type at its version and the
//! envelope. The files under `schemas/` are generated from these and a test
//! fails when they drift.

use crate::dormant_member::DormantMemberEvent;
use crate::envelope::Envelope;
use crate::event::{EventPayload, EventSchema};
use crate::id_sequence::IdSequenceEvent;
use crate::manager_message::ManagerMessageEvent;
use crate::member::MemberEvent;
use crate::phone_registry::PhoneRegistryEvent;

/// Every event type of every aggregate, at its current version.
pub fn all_event_schemas() -> Vec<EventSchema> {
    let mut all = MemberEvent::schemas();
    all.extend(DormantMemberEvent::schemas());
    all.extend(ManagerMessageEvent::schemas());
    all.extend(PhoneRegistryEvent::schemas());
    all.extend(IdSequenceEvent::schemas());
    all
}

/// Every schema file as (path relative to `schemas/`, pretty JSON with a
/// trailing newline), in a stable order.
pub fn schema_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = all_event_schemas()
        .into_iter()
        .map(|s| {
            (
                format!("events/{}.v{}.json", s.event_type, s.version),
                pretty(&s.schema),
            )
        })
        .collect();
    files.push((
        "envelope.v1.json".to_owned(),
        pretty(&schemars::schema_for!(Envelope).to_value()),
    ));
    files.sort();
    files
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value always serialises");
    text.push('\n');
    text
}
