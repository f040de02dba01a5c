//! The query side of Mileage: HTTP reads over the PostgreSQL read models the
//! projector builds (through `mileage-read-model`; never the event log),
//! with read-your-writes waits ([`freshness`], [`progress`]), validators
//! (`ETag`) on lists, the shared JWT roles and error shape, and the
//! operators' admin page.
//!
//! Public: what the binary, the tests and the benchmarks start the service
//! with ([`config`], [`startup`]) and its OpenAPI description ([`openapi`]).

pub mod config;
mod docs;
mod freshness;
mod people;
mod progress;
mod routes;
pub mod startup;
mod state;

pub use routes::openapi;
