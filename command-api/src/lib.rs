//! The command side of Mileage: HTTP commands become events appended to the
//! event store (load the stream, decide, append with the expected version).
//!
//! For now it serves its operational endpoints over the PostgreSQL store;
//! the command routes build on [`startup::Application`].

pub mod config;
pub mod routes;
pub mod startup;
