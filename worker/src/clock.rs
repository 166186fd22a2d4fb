//! The worker's wall clock: the times it writes on its own tries (claim, start and end
//! dates). Leases do not use it — the store computes them in the database's clock — so
//! a worker machine whose clock runs ahead or behind is neither reaped early nor kept
//! alive late. A test skews it to show exactly that.

use chrono::{DateTime, TimeDelta, Utc};

/// The system clock, optionally moved by a fixed skew.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    skew: TimeDelta,
}

impl Clock {
    /// The machine's clock as it is.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The machine's clock running `skew` ahead (negative: behind), like a machine
    /// without NTP.
    pub fn skewed(skew: TimeDelta) -> Clock {
        Clock { skew }
    }

    /// The current time on this clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now()
            .checked_add_signed(self.skew)
            .unwrap_or_else(Utc::now)
    }
}
