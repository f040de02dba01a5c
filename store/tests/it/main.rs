//! Integration tests of the store crate, against real servers.

mod double;
mod eventstoredb;
mod eventstoredb_double;
mod helpers;
mod keys;
mod postgres;
