//! The projector with the command API and an SMS gateway stand-in against a
//! real PostgreSQL: read models, the notice and destruction process
//! managers, checkpoints, locks, poison events, outages, crashes, replay.

mod consumers;
mod crash;
mod dormancy;
mod replay;
mod sagas;
