//! The envelope every stored event travels in: identity, position, type,
//! version, data and causal metadata.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which distributed trace an event belongs to: the W3C trace context
/// (`traceparent`) of the request or handling that appended it, so an
/// operator can follow one action from the request through the log to the
/// notice in a tracing backend, and from there back to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace, shared by everything one request caused (never 0).
    pub trace_id: u128,
    /// The span that appended the event (never 0).
    pub span_id: u64,
    /// The caller asked for this trace to be recorded.
    pub sampled: bool,
}

impl TraceContext {
    /// The same trace, continued by the span `span_id`.
    #[must_use]
    pub fn child(self, span_id: u64) -> Self {
        Self { span_id, ..self }
    }

    /// The trace id as the 32 lower-case hex digits tracing backends show.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// `00-{trace id}-{span id}-{flags}`, the `traceparent` header.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// A `traceparent` value that is not one (W3C Trace Context, level 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed traceparent: expected 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero")]
pub struct MalformedTraceparent;

impl FromStr for TraceContext {
    type Err = MalformedTraceparent;

    /// Version 00 exactly as specified; a later version's first four fields
    /// (the specification asks parsers to read those and ignore the rest).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        fn hex(part: &str, len: usize) -> Result<&str, MalformedTraceparent> {
            (part.len() == len
                && part
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then_some(part)
            .ok_or(MalformedTraceparent)
        }
        let mut parts = s.split('-');
        let version = hex(parts.next().ok_or(MalformedTraceparent)?, 2)?;
        let trace = hex(parts.next().ok_or(MalformedTraceparent)?, 32)?;
        let span = hex(parts.next().ok_or(MalformedTraceparent)?, 16)?;
        let flags = parts.next().ok_or(MalformedTraceparent)?;
        let flags = hex(flags.get(..2).ok_or(MalformedTraceparent)?, 2)?;
        let rest = parts.next();
        if version == "ff" || (version == "00" && (rest.is_some() || s.len() != 55)) {
            return Err(MalformedTraceparent);
        }
        let trace_id = u128::from_str_radix(trace, 16).map_err(|_| MalformedTraceparent)?;
        let span_id = u64::from_str_radix(span, 16).map_err(|_| MalformedTraceparent)?;
        let flags = u8::from_str_radix(flags, 16).map_err(|_| MalformedTraceparent)?;
        if trace_id == 0 || span_id == 0 {
            return Err(MalformedTraceparent);
        }
        Ok(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }
}

impl Serialize for TraceContext {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceContext {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for TraceContext {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TraceContext".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "W3C traceparent: 00-<trace id>-<span id>-<flags>",
            "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
        })
    }
}

/// Who caused an event: the verified caller of the command (`manager:kim`,
/// `member:12`, `partner:shop`), `public` for the self-service join, which
/// needs no token, or `system:{process manager}` for a follow-up. Role and
/// subject only: a member's subject is their id, an operator's their login,
/// so an audit trail can say who did what without holding personal data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor(String);

/// The roles an [`Actor`] can have besides `public`.
const ACTOR_ROLES: [&str; 4] = ["manager", "member", "partner", "system"];

/// The longest subject an [`Actor`] holds, in characters.
pub const MAX_ACTOR_SUBJECT: usize = 128;

/// Text that is not an [`Actor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed actor: expected public, or manager:, member:, partner: or system: followed by 1 to {MAX_ACTOR_SUBJECT} characters, none a control character"
)]
pub struct MalformedActor;

impl Actor {
    /// The caller of a request, by its token's role and subject.
    ///
    /// # Errors
    /// [`MalformedActor`] for an unknown role, or a subject that is empty,
    /// longer than [`MAX_ACTOR_SUBJECT`] characters or holds a control
    /// character.
    pub fn caller(role: &str, subject: &str) -> Result<Self, MalformedActor> {
        format!("{role}:{subject}").parse()
    }

    /// A process manager acting on what it saw in the log.
    ///
    /// # Panics
    /// Never for the names the services use; a name that breaks the rules
    /// of [`Actor::caller`] is a programming error.
    pub fn system(name: &str) -> Self {
        Self::caller("system", name).expect("a process manager's name is a valid subject")
    }

    /// Anyone: the join, which needs no token.
    pub fn public() -> Self {
        Self("public".into())
    }

    /// `role:subject`, or `public`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `manager`, `member`, `partner`, `system` or `public`.
    pub fn role(&self) -> &str {
        self.0
            .split_once(':')
            .map_or(self.0.as_str(), |(role, _)| role)
    }

    /// Who in the role, when the role names anyone.
    pub fn subject(&self) -> Option<&str> {
        self.0.split_once(':').map(|(_, subject)| subject)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Actor {
    type Err = MalformedActor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "public" {
            return Ok(Self::public());
        }
        let (role, subject) = s.split_once(':').ok_or(MalformedActor)?;
        let count = subject.chars().count();
        if ACTOR_ROLES.contains(&role)
            && (1..=MAX_ACTOR_SUBJECT).contains(&count)
            && !subject.chars().any(char::is_control)
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(MalformedActor)
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Actor {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Actor".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Who caused the event: public, or role:subject (manager, member, partner, or system for a process manager); never personal data",
            "pattern": "^(public|(manager|member|partner|system):[^\\u0000-\\u001f\\u007f-\\u009f]{1,128})$"
        })
    }
}

/// Where an event came from, supplied by whoever appends it.
///
/// `correlation_id` is shared by everything one operator action caused;
/// `causation_id` is the id of the message (request or event) that directly
/// caused this one. Following both reconstructs the causal tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Causation {
    /// Shared by every event of one operator action.
    pub correlation_id: Uuid,
    /// The request or event that directly caused this event.
    pub causation_id: Uuid,
    /// The distributed trace it belongs to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// Who caused it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
}

impl Causation {
    /// The start of a chain: an external request, whose id is both.
    pub fn root(request_id: Uuid) -> Self {
        Self {
            correlation_id: request_id,
            causation_id: request_id,
            trace: None,
            actor: None,
        }
    }

    /// A follow-up of an event: same correlation, caused by that event.
    pub fn caused_by(correlation_id: Uuid, event_id: Uuid) -> Self {
        Self {
            correlation_id,
            causation_id: event_id,
            trace: None,
            actor: None,
        }
    }

    /// The same, in the distributed trace `trace`.
    #[must_use]
    pub fn in_trace(self, trace: Option<TraceContext>) -> Self {
        Self { trace, ..self }
    }

    /// The same, caused by `actor`.
    #[must_use]
    pub fn by(self, actor: Actor) -> Self {
        Self {
            actor: Some(actor),
            ..self
        }
    }
}

/// Metadata stored with every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    /// Shared by every event of one operator action.
    pub correlation_id: Uuid,
    /// The request or event that directly caused this event.
    pub causation_id: Uuid,
    /// When the store committed the event.
    pub recorded_at: DateTime<Utc>,
    /// The distributed trace it was appended in (absent on events appended
    /// before traces were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// Who caused it (absent on events appended before actors were
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
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
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of `data`.
    pub version: u16,
    /// The event data, as described by `schemas/events/<type>.v<version>.json`.
    pub data: serde_json::Value,
    /// Causal metadata and recorded time.
    pub metadata: EventMetadata,
}

#[cfg(test)]
mod actor_tests {
    use super::{Actor, Causation};

    #[test]
    fn an_actor_is_a_known_role_and_a_short_printable_subject() {
        let kim: Actor = "manager:kim".parse().unwrap();
        assert_eq!((kim.role(), kim.subject()), ("manager", Some("kim")));
        assert_eq!(Actor::caller("member", "12").unwrap().as_str(), "member:12");
        assert_eq!(Actor::system("notices").to_string(), "system:notices");
        assert_eq!(Actor::public().role(), "public");
        assert_eq!(Actor::public().subject(), None);
        assert!("manager:김 대리".parse::<Actor>().is_ok());
        assert!("partner:a:b".parse::<Actor>().is_ok());
        let longest = format!("manager:{}", "가".repeat(128));
        assert!(longest.parse::<Actor>().is_ok());
        for bad in [
            "",
            "public:x",
            "manager",
            "manager:",
            "admin:kim",
            "Manager:kim",
            "manager:k\nim",
            "manager:k\u{7f}",
            "manager:k\u{85}",
            &format!("manager:{}", "가".repeat(129)),
        ] {
            assert!(bad.parse::<Actor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_actor_round_trips_in_json_and_is_optional_in_a_causation() {
        let causation = Causation::root(uuid::Uuid::nil()).by(Actor::system("releases"));
        let json = serde_json::to_value(&causation).unwrap();
        assert_eq!(json["actor"], "system:releases");
        assert_eq!(
            serde_json::from_value::<Causation>(json).unwrap(),
            causation
        );
        let old = serde_json::json!({
            "correlationId": uuid::Uuid::nil(),
            "causationId": uuid::Uuid::nil(),
        });
        assert_eq!(
            serde_json::from_value::<Causation>(old).unwrap().actor,
            None
        );
        let forged = serde_json::json!({
            "correlationId": uuid::Uuid::nil(),
            "causationId": uuid::Uuid::nil(),
            "actor": "root:me",
        });
        assert!(serde_json::from_value::<Causation>(forged).is_err());
    }
}

#[cfg(test)]
mod trace_tests {
    use super::TraceContext;

    #[test]
    fn a_traceparent_round_trips_and_bad_ones_are_refused() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace: TraceContext = text.parse().unwrap();
        assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.span_id, 0x00f0_67aa_0ba9_02b7);
        assert!(trace.sampled);
        assert_eq!(trace.to_string(), text);
        assert_eq!(trace.child(7).trace_id, trace.trace_id);
        let later: TraceContext = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra"
            .parse()
            .unwrap();
        assert!(!later.sampled);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(bad.parse::<TraceContext>().is_err(), "{bad:?}");
        }
    }
}
