//! JSON Schemas of everything stored: each event type at its version and the
//! envelope. The files under `schemas/` are generated from these and a test
//! fails when they drift.

use crate::command_key::CommandKeyEvent;
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
    all.extend(CommandKeyEvent::schemas());
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

/// Why `new` cannot read data written under `old`, for one event type at one
/// version: a required field removed or renamed, a required field added, a
/// field whose type changed. Empty when `new` reads everything `old`
/// described. A change like that needs a new version and an upcaster.
pub fn incompatibilities(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let required = |schema: &serde_json::Value| -> std::collections::BTreeSet<String> {
        schema["required"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old_required, new_required) = (required(old), required(new));
    let mut problems = Vec::new();
    for field in old_required.difference(&new_required) {
        problems.push(format!("required field {field:?} was removed or renamed"));
    }
    for field in new_required.difference(&old_required) {
        problems.push(format!(
            "field {field:?} became required; data written before lacks it"
        ));
    }
    if let (Some(old_props), Some(new_props)) =
        (old["properties"].as_object(), new["properties"].as_object())
    {
        for (field, old_prop) in old_props {
            let Some(new_prop) = new_props.get(field) else {
                continue;
            };
            for key in ["type", "$ref", "format", "items"] {
                if old_prop.get(key) != new_prop.get(key) {
                    problems.push(format!(
                        "field {field:?} changed its {key}: {} -> {}",
                        old_prop.get(key).unwrap_or(&serde_json::Value::Null),
                        new_prop.get(key).unwrap_or(&serde_json::Value::Null)
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::incompatibilities;

    fn schema(required: &[&str], props: &serde_json::Value) -> serde_json::Value {
        json!({ "type": "object", "required": required, "properties": props })
    }

    #[test]
    fn compatible_changes_pass_and_breaking_ones_are_named() {
        let old = schema(
            &["a", "b"],
            &json!({ "a": {"type": "string"}, "b": {"type": "integer"} }),
        );
        let optional_added = schema(
            &["a", "b"],
            &json!({ "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": ["string", "null"]} }),
        );
        assert!(incompatibilities(&old, &optional_added).is_empty());

        let renamed = schema(
            &["a", "bee"],
            &json!({ "a": {"type": "string"}, "bee": {"type": "integer"} }),
        );
        let problems = incompatibilities(&old, &renamed);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("\"b\" was removed or renamed")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("\"bee\" became required")),
            "{problems:?}"
        );

        let retyped = schema(
            &["a", "b"],
            &json!({ "a": {"type": "string"}, "b": {"type": "string"} }),
        );
        let problems = incompatibilities(&old, &retyped);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("\"b\" changed its type"),
            "{problems:?}"
        );
    }
}
