//! Integration tests of the store crate, against real servers.

mod eventstoredb;
mod helpers;
mod keys;
mod postgres;
