//! `messages`: the dormant notice of each target: content, outcome,
//! attempts, last error, and where it went (masked, erased once the target's
//! data is destroyed).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mileage_domain::dormant_member::{DormantMember, DormantMemberEvent};
use mileage_domain::manager_message::{ManagerMessage, ManagerMessageEvent};
use mileage_domain::pii::Sealed;
use mileage_store::RecordedEvent;
use tokio_postgres::Transaction;

use super::{Model, decode_if};
use crate::consumer::HandleError;
use crate::people::{People, mask_phone};

/// A target's notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// The dormant target it was about.
    pub target_id: String,
    /// The member.
    pub member_id: String,
    /// What was sent.
    pub content: String,
    /// `SENT` or `FAILED`.
    pub status: String,
    /// Delivery attempts made.
    pub attempts: i32,
    /// Why it failed, when it did.
    pub last_error: Option<String>,
    /// Where it went, masked; `None` once erased.
    pub phone_masked: Option<String>,
    /// When the outcome was recorded (or last changed).
    pub updated_at: DateTime<Utc>,
    /// The last event applied.
    pub last_position: String,
}

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
    const NAME: &'static str = "messages";
    const TABLES: &'static [(&'static str, &'static str)] = &[("messages", "target_id")];
    type Row = MessageRow;
    type Event = Event;

    fn ddl(schema: &str) -> String {
        format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.messages (
                 target_id text PRIMARY KEY,
                 member_id text NOT NULL,
                 content text NOT NULL,
                 status text NOT NULL,
                 attempts integer NOT NULL,
                 last_error text,
                 phone_masked text,
                 updated_at timestamptz NOT NULL,
                 last_position text NOT NULL
             );"
        )
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

    async fn load(
        tx: &Transaction<'_>,
        schema: &str,
        ids: &[String],
    ) -> Result<HashMap<String, MessageRow>, tokio_postgres::Error> {
        let rows = tx
            .query(
                &format!(
                    "SELECT target_id, member_id, content, status, attempts, last_error,
                            phone_masked, updated_at, last_position
                       FROM {schema}.messages WHERE target_id = ANY($1)"
                ),
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let message = MessageRow {
                    target_id: row.get(0),
                    member_id: row.get(1),
                    content: row.get(2),
                    status: row.get(3),
                    attempts: row.get(4),
                    last_error: row.get(5),
                    phone_masked: row.get(6),
                    updated_at: row.get(7),
                    last_position: row.get(8),
                };
                (message.target_id.clone(), message)
            })
            .collect())
    }

    async fn save(
        tx: &Transaction<'_>,
        schema: &str,
        rows: Vec<MessageRow>,
    ) -> Result<(), tokio_postgres::Error> {
        let n = rows.len();
        let (mut target, mut member, mut content) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut status, mut attempts, mut error) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut phone, mut updated, mut last) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for row in rows {
            target.push(row.target_id);
            member.push(row.member_id);
            content.push(row.content);
            status.push(row.status);
            attempts.push(row.attempts);
            error.push(row.last_error);
            phone.push(row.phone_masked);
            updated.push(row.updated_at);
            last.push(row.last_position);
        }
        tx.execute(
            &format!(
                "INSERT INTO {schema}.messages
                     (target_id, member_id, content, status, attempts, last_error, phone_masked,
                      updated_at, last_position)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[],
                                      $6::text[], $7::text[], $8::timestamptz[], $9::text[])
                 ON CONFLICT (target_id) DO UPDATE SET
                     member_id = EXCLUDED.member_id, content = EXCLUDED.content,
                     status = EXCLUDED.status, attempts = EXCLUDED.attempts,
                     last_error = EXCLUDED.last_error, phone_masked = EXCLUDED.phone_masked,
                     updated_at = EXCLUDED.updated_at, last_position = EXCLUDED.last_position"
            ),
            &[
                &target, &member, &content, &status, &attempts, &error, &phone, &updated, &last,
            ],
        )
        .await
        .map(drop)
    }
}

fn attempts(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
