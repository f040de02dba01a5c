//! What the test binaries and benchmarks of every crate share, so each
//! writes its waits, scrapes and load summaries once: waiting on
//! observable state ([`wait`]), a service's metrics ([`metrics`]), and the
//! numbers of a load run ([`load`]).

pub mod load;
pub mod metrics;
pub mod wait;

pub use load::Sample;
pub use metrics::scrape;
pub use wait::{eventually, until, until_every};
