//! The pure domain of Mileage: aggregates, commands, events and the rules
//! between them. Nothing here performs I/O, reads a clock or draws a random
//! number; time, ids, keys and nonces arrive inside commands.
//!
//! An aggregate is a state type implementing [`Aggregate`]: `decide` turns a
//! command into events (or a typed error) without changing anything, and
//! `evolve` folds one event into the state. Loading an aggregate is a fold of
//! `evolve` over its stream; handling a command is load -> decide -> append.
//!
//! To add an aggregate: a module with `command.rs`, `event.rs` (declared with
//! [`domain_events!`]), `state.rs`, `error.rs` and `tests.rs`, then list its
//! events in [`schema::all_event_schemas`].

pub mod aggregate;
pub mod command_key;
pub mod dormancy;
pub mod dormant_member;
pub mod envelope;
pub mod error;
pub mod event;
pub mod id_sequence;
pub mod ids;
pub mod manager_message;
pub mod member;
pub mod phone_registry;
pub mod pii;
pub mod schema;
pub mod values;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use aggregate::Aggregate;
pub use error::{DomainError, ErrorKind};
pub use event::{DecodeError, EventPayload};
