//! Projections: read models of rows keyed by one id. A batch is folded in
//! memory (rows loaded once, every event applied, rows written once with
//! `UNNEST`), so catching up costs a few statements per batch rather than
//! one per event. Each projection lives in its own PostgreSQL schema, so a
//! rebuild can fill a fresh schema and swap it in.

pub mod managerpage;
pub mod members;
pub mod messages;
pub mod phones;
pub mod timeline;

use std::sync::Arc;

use async_trait::async_trait;
use mileage_domain::Aggregate;
use mileage_read_model::{Moves, Storage, Table};
use mileage_store::RecordedEvent;
use tokio_postgres::{Client, Transaction};

use crate::consumer::{Consumer, HandleError};

/// A row of model `M`'s table.
pub type RowOf<M> = <<M as Model>::Table as Table>::Row;

/// One read model's rules (routing and folding events into rows, here); its
/// storage is its [`Table`], in `mileage-read-model`.
pub trait Model: Send + Sync + 'static {
    /// Where its rows live (name, tables, DDL, load, save).
    type Table: Table;
    /// The events it applies, decoded.
    type Event: Send + Sync;

    /// The event decoded and the id of the row it touches; `None` when the
    /// model ignores it.
    fn route(event: &RecordedEvent) -> Result<Option<(String, Self::Event)>, HandleError>;

    /// The row after the event (`None`: still no row); an error stops the
    /// projection at it. Personal data goes into rows sealed, as the event
    /// holds it ([`mileage_read_model::people`]): a projection never sees
    /// a person in clear, so it never needs their key.
    fn apply(
        row: Option<RowOf<Self>>,
        event: Self::Event,
        recorded: &RecordedEvent,
    ) -> Result<Option<RowOf<Self>>, String>;
}

/// Decodes `event` as one of `A`'s when it is on an `A` stream.
pub fn decode_if<A: Aggregate>(event: &RecordedEvent) -> Result<Option<A::Event>, HandleError> {
    let on_stream = event
        .stream
        .strip_prefix(A::CATEGORY)
        .is_some_and(|rest| rest.starts_with('-'));
    if !on_stream {
        return Ok(None);
    }
    event
        .decode::<A::Event>()
        .map(Some)
        .map_err(HandleError::from)
}

/// A stored event made from a domain event, for the models' unit tests.
#[cfg(test)]
pub(crate) fn recorded(
    stream: &str,
    position: u64,
    event: &impl mileage_domain::event::EventPayload,
) -> RecordedEvent {
    use chrono::TimeZone;
    RecordedEvent {
        event_id: uuid::Uuid::from_u128(u128::from(position)),
        stream: stream.to_owned(),
        stream_version: 0,
        position: mileage_store::Position {
            commit: position,
            prepare: position,
        },
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        data: event.to_json().into(),
        metadata: mileage_domain::envelope::EventMetadata {
            correlation_id: uuid::Uuid::nil(),
            causation_id: uuid::Uuid::nil(),
            recorded_at: chrono::Utc
                .timestamp_opt(1_700_000_000 + i64::try_from(position).unwrap_or(0), 0)
                .unwrap(),
            trace: None,
            actor: None,
        },
    }
}

/// The projections there are, by name.
pub use mileage_read_model::NAMES;

/// Builds a projection as a consumer named by the first argument, into the
/// schema named by the second.
pub type BuildConsumer = fn(&str, &str) -> Arc<dyn Consumer>;

/// What tooling needs of a projection known by name.
pub struct Blueprint {
    pub name: &'static str,
    /// Its tables and their key columns.
    pub tables: &'static [(&'static str, &'static str)],
    /// The projection as a consumer named `consumer`, into `schema`.
    pub build: BuildConsumer,
    /// Its DDL for `schema`.
    pub ddl: fn(&str) -> String,
}

fn blueprint<M: Model>() -> Blueprint {
    let storage = Storage::of::<M::Table>();
    Blueprint {
        name: storage.name,
        tables: storage.tables,
        build: |consumer, schema| Arc::new(Projection::<M>::into_schema(consumer, schema)),
        ddl: storage.ddl,
    }
}

/// The projection called `name`, or an error listing the ones there are.
pub fn by_name(name: &str) -> Result<Blueprint, String> {
    match name {
        "managerpage" => Ok(blueprint::<managerpage::Managerpage>()),
        "members" => Ok(blueprint::<members::Members>()),
        "messages" => Ok(blueprint::<messages::Messages>()),
        "phones" => Ok(blueprint::<phones::Phones>()),
        "timeline" => Ok(blueprint::<timeline::Timeline>()),
        other => Err(format!(
            "unknown projection {other:?}; the projections are {}",
            NAMES.join(", ")
        )),
    }
}

/// A [`Model`] run as a [`Consumer`] into one schema.
pub struct Projection<M> {
    name: String,
    schema: String,
    model: std::marker::PhantomData<M>,
}

impl<M: Model> Projection<M> {
    /// The live projection: named and stored as `M::NAME`.
    pub fn live() -> Self {
        Self::into_schema(M::Table::NAME, M::Table::NAME)
    }

    /// The projection under another consumer name into another schema (a
    /// rebuild); `schema` must be a plain identifier.
    pub fn into_schema(name: &str, schema: &str) -> Self {
        assert!(
            mileage_read_model::is_plain_identifier(schema),
            "schema {schema:?} must be a lower-case identifier"
        );
        Self {
            name: name.to_owned(),
            schema: schema.to_owned(),
            model: std::marker::PhantomData,
        }
    }
}

#[async_trait]
impl<M: Model> Consumer for Projection<M> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn prepare(&self, client: &Client) -> Result<(), HandleError> {
        mileage_read_model::create_tables(client, &M::Table::ddl(&self.schema)).await?;
        Ok(())
    }

    async fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[RecordedEvent],
    ) -> Result<(), HandleError> {
        let mut routed = Vec::new();
        for recorded in batch {
            if let Some((id, event)) = M::route(recorded)? {
                routed.push((recorded, id, event));
            }
        }
        if routed.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<String> = routed.iter().map(|(_, id, _)| id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows = M::Table::load(tx, &self.schema, &ids).await?;
        let before = mileage_read_model::tallies::<M::Table, _>(&rows);
        let mut moves = Moves::default();
        for (recorded, id, event) in routed {
            let old = rows.remove(&id);
            let was = old.as_ref().and_then(M::Table::tally);
            let row = M::apply(old, event, recorded)
                .map_err(|reason| HandleError::poison(recorded, reason))?;
            let is = row.as_ref().and_then(M::Table::tally);
            moves.record(recorded.metadata.recorded_at, was, is);
            if let Some(row) = row {
                rows.insert(id, row);
            }
        }
        mileage_read_model::write::<M::Table>(
            tx,
            &self.schema,
            &before,
            rows.into_values().collect(),
            &moves,
        )
        .await?;
        Ok(())
    }
}
