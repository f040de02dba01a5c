//! `inspect`: events as JSON lines, filtered; personal data revealed only on
//! request and only while its key exists. `trace`: one operator action's
//! causal chain across streams, as a tree.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use chrono::{DateTime, Utc};
use mileage_domain::envelope::{Actor, Envelope};
use mileage_domain::pii::{Sealed, reveal};
use mileage_store::{Position, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::Context;

/// Events read per page.
const PAGE: usize = 1000;

/// Which events `inspect` prints.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only this stream (read as a stream, not from the global log).
    pub stream: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// Recorded before.
    pub until: Option<DateTime<Utc>>,
    /// Only this correlation id.
    pub correlation: Option<Uuid>,
    /// Only events this actor caused.
    pub actor: Option<Actor>,
    /// At most this many.
    pub limit: Option<usize>,
    /// Show personal data whose key still exists.
    pub reveal: bool,
    /// Show each event in its current schema version (through the
    /// upcasters) instead of as stored.
    pub upcast: bool,
}

impl Filter {
    fn keeps(&self, event: &RecordedEvent) -> bool {
        self.event_type
            .as_ref()
            .is_none_or(|t| *t == event.event_type)
            && self.since.is_none_or(|t| event.metadata.recorded_at >= t)
            && self.until.is_none_or(|t| event.metadata.recorded_at < t)
            && self
                .correlation
                .is_none_or(|c| c == event.metadata.correlation_id)
            && self
                .actor
                .as_ref()
                .is_none_or(|a| event.metadata.actor.as_ref() == Some(a))
    }
}

/// Calls `each` with every event `filter` keeps, in order, until it has
/// seen `limit` of them.
async fn scan(
    ctx: &Context,
    filter: &Filter,
    mut each: impl FnMut(RecordedEvent) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let limit = filter.limit.unwrap_or(usize::MAX);
    let mut kept = 0;
    let mut after: Option<Position> = None;
    let mut from_version = 0;
    loop {
        let page = match &filter.stream {
            Some(stream) => ctx.store.read_stream(stream, from_version, PAGE).await?,
            None => ctx.store.read_all(after, PAGE).await?,
        };
        let full = page.len() == PAGE;
        for event in page {
            after = Some(event.position);
            from_version = event.stream_version + 1;
            if filter.keeps(&event) {
                each(event)?;
                kept += 1;
                if kept >= limit {
                    return Ok(kept);
                }
            }
        }
        if !full {
            return Ok(kept);
        }
    }
}

/// Writes the events `filter` keeps to `out` as JSON lines (the envelope);
/// returns how many.
pub async fn inspect(
    ctx: &Context,
    filter: &Filter,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut envelopes = Vec::new();
    let count = scan(ctx, filter, |event| {
        let mut envelope = event.to_envelope()?;
        if filter.upcast {
            super::upcast::upcast(&mut envelope).map_err(|e| {
                anyhow::anyhow!("{} at {}: {e}", envelope.stream, envelope.position)
            })?;
        }
        envelopes.push(envelope);
        Ok(())
    })
    .await?;
    if filter.reveal {
        let mut key_ids = BTreeSet::new();
        for envelope in &envelopes {
            collect_sealed(&envelope.data, &mut key_ids);
        }
        let keys = ctx
            .keys
            .get_many(&key_ids.into_iter().collect::<Vec<_>>())
            .await?;
        for envelope in &mut envelopes {
            reveal_in(&mut envelope.data, &keys);
        }
    }
    for envelope in &envelopes {
        serde_json::to_writer(&mut *out, envelope)?;
        out.write_all(b"\n")?;
    }
    Ok(count)
}

fn as_sealed(value: &Value) -> Option<Sealed> {
    let object = value.as_object()?;
    (object.len() == 4 && object.contains_key("ciphertext") && object.contains_key("keyId"))
        .then(|| serde_json::from_value(value.clone()).ok())
        .flatten()
}

fn collect_sealed(value: &Value, key_ids: &mut BTreeSet<String>) {
    if let Some(sealed) = as_sealed(value) {
        key_ids.insert(sealed.key_id);
        return;
    }
    match value {
        Value::Object(map) => map.values().for_each(|v| collect_sealed(v, key_ids)),
        Value::Array(items) => items.iter().for_each(|v| collect_sealed(v, key_ids)),
        _ => {}
    }
}

/// Replaces each sealed value by its clear text, or `"(erased)"`.
fn reveal_in(value: &mut Value, keys: &HashMap<String, mileage_domain::pii::PersonKey>) {
    if let Some(sealed) = as_sealed(value) {
        *value = match reveal(&sealed, keys.get(&sealed.key_id)) {
            Ok(revealed) => Value::String(revealed.to_string()),
            Err(e) => Value::String(format!("(unreadable: {e})")),
        };
        return;
    }
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| reveal_in(v, keys)),
        Value::Array(items) => items.iter_mut().for_each(|v| reveal_in(v, keys)),
        _ => {}
    }
}

/// One event of a causal chain and what it caused.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub event_id: Uuid,
    pub event_type: String,
    /// Its stream and version.
    pub stream: String,
    /// Its version in the stream.
    pub stream_version: u64,
    /// Its place in the log.
    pub position: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Who caused it; `None` for events appended before actors were
    /// recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The events it caused.
    pub caused: Vec<Step>,
}

/// One request of a correlation and the events it caused.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The request's id (the causation id of its events).
    pub request_id: Uuid,
    /// The distributed trace its events were appended in (W3C trace id),
    /// to look it up in the tracing backend; `None` for events appended
    /// before traces were recorded.
    pub trace_id: Option<String>,
    /// Its events, each with what it caused.
    pub events: Vec<Step>,
}

/// The causal chains of `correlation`: requests, and under each event the
/// events it caused, across streams.
pub async fn trace(ctx: &Context, correlation: Uuid) -> anyhow::Result<Vec<Request>> {
    let filter = Filter {
        correlation: Some(correlation),
        ..Filter::default()
    };
    let mut events: Vec<Envelope> = Vec::new();
    scan(ctx, &filter, |event| {
        events.push(event.to_envelope()?);
        Ok(())
    })
    .await?;
    let ids: BTreeSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    let mut children: HashMap<Uuid, Vec<&Envelope>> = HashMap::new();
    let mut roots: Vec<(Uuid, Vec<&Envelope>)> = Vec::new();
    for event in &events {
        let cause = event.metadata.causation_id;
        if ids.contains(&cause) {
            children.entry(cause).or_default().push(event);
        } else if let Some((_, siblings)) = roots.iter_mut().find(|(id, _)| *id == cause) {
            siblings.push(event);
        } else {
            roots.push((cause, vec![event]));
        }
    }
    Ok(roots
        .into_iter()
        .map(|(request_id, events)| Request {
            request_id,
            trace_id: events
                .iter()
                .find_map(|e| e.metadata.trace)
                .map(|t| t.trace_id_hex()),
            events: events.iter().map(|e| step(e, &children)).collect(),
        })
        .collect())
}

/// One event of a chain with everything it caused, depth first.
fn step(event: &Envelope, children: &HashMap<Uuid, Vec<&Envelope>>) -> Step {
    Step {
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        stream: event.stream.clone(),
        stream_version: event.stream_version,
        position: event.position.clone(),
        recorded_at: event.metadata.recorded_at,
        actor: event.metadata.actor.clone(),
        caused: children
            .get(&event.event_id)
            .map(|kids| kids.iter().map(|k| step(k, children)).collect())
            .unwrap_or_default(),
    }
}

/// The chains as an indented tree, for people.
pub fn render_trace(requests: &[Request]) -> String {
    use std::fmt::Write as _;
    fn lines(step: &Step, depth: usize, out: &mut String) {
        let _ = write!(
            out,
            "{}└─ {}  {}#{}  at {}  {}",
            "   ".repeat(depth),
            step.event_type,
            step.stream,
            step.stream_version,
            step.position,
            step.recorded_at.to_rfc3339()
        );
        let _ = match &step.actor {
            Some(actor) => writeln!(out, "  by {actor}"),
            None => writeln!(out),
        };
        for child in &step.caused {
            lines(child, depth + 1, out);
        }
    }
    let mut out = String::new();
    for request in requests {
        let _ = match &request.trace_id {
            Some(trace) => writeln!(out, "request {}  trace {trace}", request.request_id),
            None => writeln!(out, "request {}", request.request_id),
        };
        for step in &request.events {
            lines(step, 1, &mut out);
        }
    }
    out
}
