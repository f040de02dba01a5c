//! `messages`: the dormant notice of each target: content, outcome,
//! attempts, last error, and where it went (sealed).

use mileage_domain::manager_message::{ManagerMessage, ManagerMessageEvent};
use mileage_read_model::messages::{self as table, MessageRow};
use mileage_read_model::people::stored;
use mileage_store::RecordedEvent;

use super::{Model, decode_if};
use crate::consumer::HandleError;

/// The messages model.
pub struct Messages;

/// What the messages model applies: the notice's outcome.
pub type Event = ManagerMessageEvent;

impl Model for Messages {
    type Table = table::MessagesTable;
    type Event = Event;

    fn route(event: &RecordedEvent) -> Result<Option<(String, Event)>, HandleError> {
        if let Some(message) = decode_if::<ManagerMessage>(event)? {
            let id = match &message {
                ManagerMessageEvent::MessageSent(e) => e.target_id.to_string(),
                ManagerMessageEvent::MessageFailed(e) => e.target_id.to_string(),
            };
            return Ok(Some((id, message)));
        }
        Ok(None)
    }

    fn apply(
        row: Option<MessageRow>,
        event: Event,
        recorded: &RecordedEvent,
    ) -> Result<Option<MessageRow>, String> {
        let at = recorded.metadata.recorded_at;
        let last_position = recorded.position.to_string();
        if row.is_some() {
            return Err("the notice's outcome is recorded twice".into());
        }
        let (sent, failed) = match event {
            ManagerMessageEvent::MessageSent(e) => (Some(e), None),
            ManagerMessageEvent::MessageFailed(e) => (None, Some(e)),
        };
        let row = match (sent, failed) {
            (Some(e), _) => MessageRow {
                target_id: e.target_id.to_string(),
                member_id: e.member_id.to_string(),
                phone_sealed: Some(stored(&e.phone_no)),
                content: e.content,
                status: "SENT".into(),
                attempts: attempts(e.attempts),
                last_error: None,
                updated_at: at,
                last_position,
            },
            (None, Some(e)) => MessageRow {
                target_id: e.target_id.to_string(),
                member_id: e.member_id.to_string(),
                phone_sealed: Some(stored(&e.phone_no)),
                content: e.content,
                status: "FAILED".into(),
                attempts: attempts(e.attempts),
                last_error: Some(e.reason),
                updated_at: at,
                last_position,
            },
            (None, None) => unreachable!("one of the two is set above"),
        };
        Ok(Some(row))
    }
}

fn attempts(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
