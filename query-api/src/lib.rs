//! The query side of Mileage: HTTP reads over the PostgreSQL read models the
//! projector builds (never the event log), with read-your-writes waits
//! ([`freshness`], [`progress`]), validators (`ETag`) on lists, the command API's JWT roles
//! and error shape, and the operators' admin page.

pub mod config;
pub mod docs;
pub mod freshness;
pub mod progress;
pub mod routes;
pub mod startup;
pub mod state;
