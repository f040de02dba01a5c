//! The command side of Mileage: HTTP commands become events appended to the
//! event store. Each use case (`members`, `dormant`) validates input, seals
//! personal data, and runs load -> decide -> append through [`handle`]; the
//! routes only parse, call and map errors ([`mileage_service::ApiError`]).

pub mod config;
pub mod dormant;
pub mod handle;
pub mod idempotency;
pub mod ids;
pub mod members;
pub mod membership;
pub mod personal;
pub mod routes;
pub mod startup;
pub mod state;
