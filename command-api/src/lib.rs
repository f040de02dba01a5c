//! The command side of Mileage: HTTP commands become events appended to the
//! event store. The use cases ([`members`], [`dormant`]) validate input,
//! seal personal data, and run load -> decide -> append through the one
//! executor ([`command`]); the release's join sits behind a timeout and a
//! circuit breaker ([`release_guard`]). They answer a typed
//! [`error::CommandError`]; the routes only parse, authorise, call and map
//! it, once, to [`mileage_service::ApiError`].
//!
//! Public: what the binary, the tests and the benchmarks start the service
//! with ([`config`], [`startup`]) and its OpenAPI description ([`openapi`]).

mod command;
pub mod config;
mod context;
mod dormant;
mod error;
mod idempotency;
mod ids;
mod members;
mod release_guard;
mod routes;
pub mod startup;
mod state;

pub use routes::openapi;

/// Largest request body accepted, in bytes.
const BODY_LIMIT: usize = 16 * 1024;
