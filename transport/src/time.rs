//! Protocol time: microseconds on a monotonic clock chosen by the driver.
//!
//! Sans-IO cores never read a clock; every input carries `now: Time`. The tokio driver
//! derives `Time` from the wall clock at start-up plus monotonic elapsed time, so stamps
//! taken on different processes of one host (or NTP-synchronised hosts) are comparable,
//! which the sender-stamped delivery-latency measurement needs. The simulator uses virtual
//! microseconds starting at 0.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time, in microseconds since an epoch fixed by the driver.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time(pub u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);
    /// Far future; useful as "no deadline" in comparisons.
    pub const MAX: Time = Time(u64::MAX);

    /// Microseconds since the epoch.
    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// The current wall-clock time in microseconds since the UNIX epoch (drivers only).
    pub fn wall_clock_now() -> Time {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time(d.as_micros() as u64)
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.as_micros() as u64))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, rhs: Time) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Parses a duration as every shutter command line takes it: `250ms`, `2s`, `1.5s`,
/// `100us`, `1m`. A bare number is an error that shows the fix (`--duration 15` once ran
/// for 15 ms and reported PASS with no snapshot taken).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (examples: 500ms, 2s, 1.5s)"))?;
    let scale = match unit.trim() {
        "" => {
            return Err(format!(
                "{text:?} needs a unit: {num}s or {num}ms (also us and m)"
            ));
        }
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "s" => 1.0,
        "m" | "min" => 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use us, ms, s or m)"
            ));
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time(5) + Duration::from_micros(10);
        assert_eq!(t, Time(15));
        assert_eq!(Time(3) - Time(10), Duration::ZERO);
        assert_eq!(Time::MAX + Duration::from_secs(1), Time::MAX);
        assert_eq!(format!("{:?}", Time(1_500_000)), "1.500000s");
    }
}

#[cfg(test)]
mod duration_text_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        let e = parse_duration("15").unwrap_err();
        assert!(e.contains("needs a unit: 15s or 15ms"), "{e}");
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").is_err());
    }
}
