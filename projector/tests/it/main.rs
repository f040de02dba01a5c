//! The projector against a real PostgreSQL: read models, the notice and
//! destruction process managers, checkpoints, locks, poison events, outages.

mod consumers;
mod crash;
mod replay;
mod sagas;
mod settings;
