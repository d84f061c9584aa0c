//! The hosts' clock: wall-clock start plus monotonic elapsed time.
//!
//! Reading `SystemTime` once and then only a monotonic `Instant` gives [`Time`] stamps that
//! never go backwards within a process (NTP steps cannot reorder timers) and are still
//! comparable across processes of one host, which the sender-stamped delivery latency
//! needs.

use std::time::Duration;

use tokio::time::Instant;

use crate::time::Time;

/// Converts between protocol [`Time`] and tokio instants.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Time,
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        Clock {
            base: Time::wall_clock_now(),
            start: Instant::now(),
        }
    }

    /// The current protocol time.
    pub fn now(&self) -> Time {
        self.base + self.start.elapsed()
    }

    /// The time the clock started (the fault epoch of the endpoint).
    pub fn base(&self) -> Time {
        self.base
    }

    /// The tokio instant at which protocol time reaches `t`.
    pub fn instant(&self, t: Time) -> Instant {
        // Far-future deadlines are clamped: `Instant + Duration` overflows past ~centuries.
        let d = (t - self.base).min(Duration::from_secs(86_400 * 365));
        self.start + d
    }
}
