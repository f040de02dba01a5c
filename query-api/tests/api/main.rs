//! The query API over real read models: the command API, the projector and
//! the query API on random ports against a throwaway PostgreSQL.

mod browser;
mod e2e;
mod helpers;
mod openapi;
mod process;
mod reads;
