//! Integration tests: the real service on a random port over a fresh database.

mod auth;
mod bad_input;
mod breaker;
mod dormant_members;
mod eventstoredb;
mod exactly_once;
mod health;
mod helpers;
mod idempotency;
mod limits;
mod members;
mod openapi;
mod process;
