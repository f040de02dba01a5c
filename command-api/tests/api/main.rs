//! Integration tests: the real service on a random port over a fresh database.

mod health;
mod helpers;
