//! The query API over real read models: the command API, the projector and
//! the query API on random ports against a throwaway PostgreSQL, and the
//! admin page in a real browser.

mod browser;
mod console;
mod e2e;
mod helpers;
mod reads;
