//! How many points one command may move and one balance may hold: business
//! limits the operator sets, passed in with each command like the time, and
//! one ceiling no setting can pass, so that no sequence of accepted commands
//! can overflow anywhere (events, JSON readers, read models).

use crate::values::Points;

/// The most points any amount or balance can ever be: 2^53 - 1, the largest
/// integer every JSON reader (a browser among them) holds exactly, and far
/// inside the read models' `bigint`. Balances only ever add amounts up to
/// a cap at most this, so their sums fit `u64` too.
pub const POINTS_CEILING: u64 = 9_007_199_254_740_991;

/// The business limits on points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointLimits {
    max_amount: Points,
    max_balance: Points,
}

/// Limits that cannot be: zero, above [`POINTS_CEILING`], or a command
/// allowed to move more than a balance may hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "point limits must satisfy 0 < amount ({max_amount}) <= balance ({max_balance}) <= {POINTS_CEILING}"
)]
pub struct InvalidLimits {
    /// The per-command maximum asked for.
    pub max_amount: u64,
    /// The balance cap asked for.
    pub max_balance: u64,
}

impl PointLimits {
    /// The defaults: a million points per command, a billion per balance.
    pub const DEFAULT: Self = Self {
        max_amount: Points(1_000_000),
        max_balance: Points(1_000_000_000),
    };

    /// Limits of at most `max_amount` points per command and `max_balance`
    /// per balance.
    pub fn new(max_amount: u64, max_balance: u64) -> Result<Self, InvalidLimits> {
        if max_amount == 0 || max_amount > max_balance || max_balance > POINTS_CEILING {
            return Err(InvalidLimits {
                max_amount,
                max_balance,
            });
        }
        Ok(Self {
            max_amount: Points(max_amount),
            max_balance: Points(max_balance),
        })
    }

    /// The most points one command may earn or use.
    pub fn max_amount(self) -> Points {
        self.max_amount
    }

    /// The most points one balance may hold.
    pub fn max_balance(self) -> Points {
        self.max_balance
    }
}

impl Default for PointLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::{POINTS_CEILING, PointLimits};

    #[test]
    fn limits_stay_under_the_ceiling_and_in_order() {
        assert!(PointLimits::new(1, 1).is_ok());
        assert!(PointLimits::new(POINTS_CEILING, POINTS_CEILING).is_ok());
        assert!(PointLimits::new(0, 10).is_err());
        assert!(PointLimits::new(11, 10).is_err());
        assert!(PointLimits::new(1, POINTS_CEILING + 1).is_err());
        assert!(PointLimits::new(u64::MAX, u64::MAX).is_err());
        assert_eq!(PointLimits::default(), PointLimits::DEFAULT);
    }
}
