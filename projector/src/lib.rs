//! The read side of Mileage. A [`runner::Runner`] drives each
//! [`consumer::Consumer`] over the global log: the projections
//! ([`projections`]) that build the PostgreSQL read models, and the process
//! managers ([`process`]) that send dormant notices and destroy targets whose
//! notice failed. Each consumer has its own checkpoint and advisory lock.

pub mod config;
pub mod consumer;
mod head;
mod http;
pub mod local_sms;
mod notifier;
mod process;
pub mod projections;
pub mod replay;
pub mod runner;
pub mod startup;
