//! The time the dormancy policy reads: the wall clock, moved by an offset.
//! Production runs it at offset zero; tests move it to live through a year
//! without sleeping, and an operator's drill can run the policy ahead of
//! time on a copy (`DORMANCY_CLOCK_OFFSET_SECONDS`, shown in `/dormancy`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// A wall clock moved by a shared offset: clones move together.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_seconds: Arc<AtomicI64>,
}

impl Clock {
    /// The wall clock moved by `seconds` (negative: back).
    pub fn offset_by(seconds: i64) -> Self {
        Self {
            offset_seconds: Arc::new(AtomicI64::new(seconds)),
        }
    }

    /// The policy's now.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }

    /// How far from the wall clock.
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::seconds(self.offset_seconds.load(Ordering::Relaxed))
    }

    /// Moves this clock and its clones by `by` (tests).
    pub fn advance(&self, by: TimeDelta) {
        self.offset_seconds
            .fetch_add(by.num_seconds(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::Clock;

    #[test]
    fn clones_move_together() {
        let clock = Clock::offset_by(-60);
        let seen_by_the_scheduler = clock.clone();
        clock.advance(TimeDelta::days(30));
        assert_eq!(
            seen_by_the_scheduler.offset(),
            TimeDelta::days(30) - TimeDelta::seconds(60)
        );
        let ahead = seen_by_the_scheduler.now() - chrono::Utc::now();
        assert!(ahead > TimeDelta::days(29), "{ahead}");
    }
}
