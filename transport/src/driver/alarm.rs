//! [`Alarm`]: the host loops' timer, precise to tens of microseconds.
//!
//! tokio's timer wheel ticks in milliseconds, so a deadline 100 us away fires up to a
//! millisecond late. With the default `Config` that hardly matters (the probe timeout
//! is at least 3 ms and the loss-time threshold is mostly applied when an ACK arrives),
//! but `Config::low_latency` sets timers of 100-400 us (delayed ACKs, probe timeouts),
//! which only a precise timer keeps. On Linux the alarm is a `timerfd`
//! (CLOCK_MONOTONIC, high-resolution) registered with tokio's reactor; elsewhere, or if
//! the timerfd cannot be made, it is tokio's sleep (timers then fire late, never early:
//! a late probe, or a late ACK that draws a spurious probe).

use tokio::time::Instant;

/// A one-shot timer a host loop waits on in its `select!`; see the module docs.
#[derive(Debug)]
pub struct Alarm {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<Tfd>>,
    /// The deadline the timerfd is set to, if any.
    #[cfg(target_os = "linux")]
    armed: Option<Instant>,
}

impl Alarm {
    /// A new alarm; needs a tokio runtime with IO enabled.
    pub fn new() -> Alarm {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
            let fd = TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )
            .ok()
            .and_then(|t| {
                // `AsyncFd::new` is deprecated because a type whose `as_raw_fd` could
                // change or close its descriptor while registered would be unsound;
                // `Tfd` owns one descriptor for its whole life and always returns it
                // (the safety condition of `AsyncFd::register`, which is `unsafe`, and
                // the workspace forbids unsafe code).
                #[allow(deprecated)]
                tokio::io::unix::AsyncFd::new(Tfd(t)).ok()
            });
            if fd.is_none() {
                tracing::debug!("no timerfd; the host loop's timer has millisecond precision");
            }
            Alarm { fd, armed: None }
        }
        #[cfg(not(target_os = "linux"))]
        Alarm {}
    }

    /// Completes at `at` (at once if it passed). Cancel-safe: dropped before it fires, the
    /// next call re-arms as needed.
    pub async fn sleep_until(&mut self, at: Instant) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            match wait_timerfd(fd, &mut self.armed, at).await {
                Ok(()) => return,
                Err(e) => {
                    // Not expected; keep running on tokio's timer.
                    tracing::debug!(error = %e, "timerfd failed; falling back to tokio's timer");
                    self.fd = None;
                }
            }
        }
        tokio::time::sleep_until(at).await;
    }
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm::new()
    }
}

/// The timerfd, as tokio's reactor registers it (nix's type exposes only `AsFd`).
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Tfd(nix::sys::timerfd::TimerFd);

#[cfg(target_os = "linux")]
impl std::os::fd::AsRawFd for Tfd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

#[cfg(target_os = "linux")]
async fn wait_timerfd(
    fd: &tokio::io::unix::AsyncFd<Tfd>,
    armed: &mut Option<Instant>,
    at: Instant,
) -> std::io::Result<()> {
    use nix::errno::Errno;
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};

    loop {
        // Re-armed only for an earlier deadline: a host loop asks again after every
        // datagram, with a deadline that mostly moved later, so this saves a
        // `timerfd_settime` per loop turn (`shutter-bench throughput` showed no CPU
        // difference either way). An alarm set too early fires, finds `at` not reached
        // and is set again: one more wake-up, rare.
        if armed.is_none_or(|a| a > at) {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            fd.get_ref()
                .0
                .set(
                    Expiration::OneShot(TimeSpec::from_duration(left)),
                    TimerSetTimeFlags::empty(),
                )
                .map_err(std::io::Error::from)?;
            *armed = Some(at);
        }
        let mut ready = fd.readable().await?;
        match ready.get_inner().0.wait() {
            Ok(()) => {
                ready.clear_ready();
                *armed = None;
                if Instant::now() >= at {
                    return Ok(());
                }
            }
            // Readiness left over from an expiry that a later re-arm discarded.
            Err(Errno::EAGAIN) => ready.clear_ready(),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn fires_at_the_deadline_and_can_be_re_armed_after_a_cancel() {
        let mut alarm = Alarm::new();
        let start = Instant::now();
        alarm.sleep_until(start + Duration::from_millis(3)).await;
        assert!(start.elapsed() >= Duration::from_millis(3));
        // Cancelled before it fires (as a select! does), then re-armed earlier.
        let far = Instant::now() + Duration::from_secs(60);
        tokio::select! {
            () = alarm.sleep_until(far) => panic!("a 60 s alarm fired"),
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
        let soon = Instant::now() + Duration::from_millis(2);
        alarm.sleep_until(soon).await;
        assert!(Instant::now() >= soon);
        // A deadline in the past completes at once.
        alarm.sleep_until(start).await;
    }
}
