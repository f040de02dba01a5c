//! The read side of Mileage. A [`runner::Runner`] drives each
//! [`consumer::Consumer`] over the global log: the projections
//! ([`projections`]) that build the PostgreSQL read models, and the process
//! managers ([`process`]) that send dormant notices and destroy targets whose
//! notice failed. Each consumer has its own checkpoint and advisory lock.

pub mod clock;
pub mod config;
pub mod consumer;
mod head;
mod http;
mod notifier;
mod process;
pub mod projections;
pub mod runner;
mod scheduler;
pub mod startup;

/// How far the lag gauges count past a checkpoint before saying "at least
/// this many" (also what `replay status` shows).
pub use head::BACKLOG_LIMIT;
