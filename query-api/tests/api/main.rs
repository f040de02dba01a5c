//! The query API alone against a throwaway PostgreSQL: its OpenAPI
//! description and the binary as deployed. Tests that run it with the
//! command API and the projector are in `e2e/`.

mod openapi;
mod process;
