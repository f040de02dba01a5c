//! The envelope every stored event travels in: identity, position, type,
//! version, data and causal metadata.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an event came from, supplied by whoever appends it.
///
/// `correlation_id` is shared by everything one operator action caused;
/// `causation_id` is the id of the message (request or event) that directly
/// caused this one. Following both reconstructs the causal tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Causation {
    /// Shared by every event of one operator action.
    pub correlation_id: Uuid,
    /// The request or event that directly caused this event.
    pub causation_id: Uuid,
}

impl Causation {
    /// The start of a chain: an external request, whose id is both.
    pub fn root(request_id: Uuid) -> Self {
        Self {
            correlation_id: request_id,
            causation_id: request_id,
        }
    }

    /// A follow-up of an event: same correlation, caused by that event.
    pub fn caused_by(correlation_id: Uuid, event_id: Uuid) -> Self {
        Self {
            correlation_id,
            causation_id: event_id,
        }
    }
}

/// Metadata stored with every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    /// Shared by every event of one operator action.
    pub correlation_id: Uuid,
    /// The request or event that directly caused this event.
    pub causation_id: Uuid,
    /// When the store committed the event.
    pub recorded_at: DateTime<Utc>,
}

/// The versioned JSON form of a stored event, as exported and inspected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Unique id; appending the same id twice stores one event.
    pub event_id: Uuid,
    /// The stream, `{category}-{id}`.
    pub stream: String,
    /// 0-based version of the event within its stream.
    pub stream_version: u64,
    /// Global log position as text (opaque token, ordered by the store).
    pub position: String,
    /// Event type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of `data`.
    pub version: u16,
    /// The event data, as described by `schemas/events/<type>.v<version>.json`.
    pub data: serde_json::Value,
    /// Causal metadata and recorded time.
    pub metadata: EventMetadata,
}
