//! Integration tests of the store crate, against real servers.

mod eventstoredb;
mod eventstoredb_double;
mod eventstoredb_double_conformance;
mod helpers;
mod keys;
mod postgres;
mod request_keys;
mod test_databases;
