//! `messages`: the dormant notice of each target: content, outcome,
//! attempts, last error, and where it went (masked, erased once the target's
//! data is destroyed).

use std::collections::HashMap;

use async_trait::async_trait;

use mileage_domain::dormant_member::{DormantMember, DormantMemberEvent};
use mileage_domain::manager_message::{ManagerMessage, ManagerMessageEvent};
use mileage_domain::pii::Sealed;
use mileage_read_model::messages::{self as table, MessageRow};
use mileage_store::RecordedEvent;
use tokio_postgres::Transaction;

use super::{Model, decode_if};
use crate::consumer::HandleError;
use crate::people::{People, mask_phone};

/// The messages model.
pub struct Messages;

/// What the messages model applies.
pub enum Event {
    /// The notice's outcome.
    Outcome(ManagerMessageEvent),
    /// The target's data was destroyed.
    Destroyed,
}

#[async_trait]
impl Model for Messages {
    const NAME: &'static str = table::NAME;
    const TABLES: &'static [(&'static str, &'static str)] = table::TABLES;
    type Row = MessageRow;
    type Event = Event;

    fn ddl(schema: &str) -> String {
        table::ddl(schema)
    }

    async fn load(
        tx: &Transaction<'_>,
        schema: &str,
        ids: &[String],
    ) -> Result<HashMap<String, MessageRow>, tokio_postgres::Error> {
        table::load(tx, schema, ids).await
    }

    async fn save(
        tx: &Transaction<'_>,
        schema: &str,
        rows: Vec<MessageRow>,
    ) -> Result<(), tokio_postgres::Error> {
        table::save(tx, schema, rows).await
    }

    fn route(event: &RecordedEvent) -> Result<Option<(String, Event)>, HandleError> {
        if let Some(message) = decode_if::<ManagerMessage>(event)? {
            let id = match &message {
                ManagerMessageEvent::MessageSent(e) => e.target_id.to_string(),
                ManagerMessageEvent::MessageFailed(e) => e.target_id.to_string(),
            };
            return Ok(Some((id, Event::Outcome(message))));
        }
        if let Some(DormantMemberEvent::DormantMemberDestroyed(e)) =
            decode_if::<DormantMember>(event)?
        {
            return Ok(Some((e.id.to_string(), Event::Destroyed)));
        }
        Ok(None)
    }

    fn sealed(event: &Event) -> Vec<&Sealed> {
        match event {
            Event::Outcome(ManagerMessageEvent::MessageSent(e)) => vec![&e.phone_no],
            Event::Outcome(ManagerMessageEvent::MessageFailed(e)) => vec![&e.phone_no],
            Event::Destroyed => vec![],
        }
    }

    fn apply(
        row: Option<MessageRow>,
        event: Event,
        recorded: &RecordedEvent,
        people: &People,
    ) -> Result<Option<MessageRow>, String> {
        let at = recorded.metadata.recorded_at;
        let last_position = recorded.position.to_string();
        let (sent, failed) = match event {
            Event::Destroyed => {
                return Ok(row.map(|mut message| {
                    message.phone_masked = None;
                    message.updated_at = at;
                    message.last_position = last_position;
                    message
                }));
            }
            Event::Outcome(_) if row.is_some() => {
                return Err("the notice's outcome is recorded twice".into());
            }
            Event::Outcome(ManagerMessageEvent::MessageSent(e)) => (Some(e), None),
            Event::Outcome(ManagerMessageEvent::MessageFailed(e)) => (None, Some(e)),
        };
        let row = match (sent, failed) {
            (Some(e), _) => MessageRow {
                target_id: e.target_id.to_string(),
                member_id: e.member_id.to_string(),
                phone_masked: people.reveal(&e.phone_no)?.as_deref().map(mask_phone),
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
                phone_masked: people.reveal(&e.phone_no)?.as_deref().map(mask_phone),
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
