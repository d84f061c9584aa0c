//! Round-trip time estimation (RFC 6298 smoothing, RFC 9002 ack-delay handling).
//!
//! Samples are unambiguous because packet numbers are never reused: an ACK of packet
//! `n` always refers to the one transmission that carried `n` (no Karn's rule needed).

use std::time::Duration;

/// Floor of the loss-time threshold. Below RFC 9002's 1 ms because the threshold is
/// mostly applied when an ACK arrives (a packet sent `loss_delay` before an acknowledged
/// later one is lost), where no timer is involved: on a LAN (RTT 50-250 us) a 1 ms floor
/// held every loss back by a millisecond (`shutter-bench netlat`: p99 at 5% drop 1.50 ms;
/// with this floor see ARCHITECTURE.md). Reordering beyond it is learnt per link
/// (`SendState::loss_delay` grows after a spurious loss), so the floor costs at most a
/// few early retransmissions.
pub(crate) const LOSS_GRANULARITY: Duration = Duration::from_micros(100);

/// Smoothed RTT state of one peer.
#[derive(Debug, Clone)]
pub(crate) struct RttEstimator {
    /// Smoothed RTT; `initial` until the first sample.
    pub(crate) srtt: Duration,
    /// RTT variation.
    pub(crate) rttvar: Duration,
    /// Smallest raw sample seen.
    pub(crate) min_rtt: Option<Duration>,
    /// Most recent adjusted sample.
    pub(crate) latest: Duration,
    has_sample: bool,
}

impl RttEstimator {
    /// Before any sample, SRTT = `initial` and RTTVAR = `initial / 2` (RFC 6298 2.1).
    pub(crate) fn new(initial: Duration) -> Self {
        RttEstimator {
            srtt: initial,
            rttvar: initial / 2,
            min_rtt: None,
            latest: initial,
            has_sample: false,
        }
    }

    /// Folds in one sample measured from send to ACK receipt; the peer's reported
    /// `ack_delay` (capped at `max_ack_delay`) is subtracted unless that would go below
    /// the minimum RTT.
    pub(crate) fn update(
        &mut self,
        sample: Duration,
        ack_delay: Duration,
        max_ack_delay: Duration,
    ) {
        let min = *self.min_rtt.get_or_insert(sample);
        self.min_rtt = Some(min.min(sample));
        let ack_delay = ack_delay.min(max_ack_delay);
        let adjusted = if sample >= min + ack_delay {
            sample - ack_delay
        } else {
            sample
        };
        self.latest = adjusted;
        if !self.has_sample {
            self.has_sample = true;
            self.srtt = adjusted;
            self.rttvar = adjusted / 2;
        } else {
            let diff = self.srtt.abs_diff(adjusted);
            self.rttvar = (self.rttvar * 3 + diff) / 4;
            self.srtt = (self.srtt * 7 + adjusted) / 8;
        }
    }

    /// Whether any RTT sample was taken (otherwise `srtt` is the configured guess).
    pub(crate) fn has_sample(&self) -> bool {
        self.has_sample
    }

    /// RTO (the probe timeout) before backoff: SRTT + max(G, 4 RTTVAR) + max_ack_delay,
    /// at least `min_rto`; G is `Config::timer_granularity`.
    pub(crate) fn rto(&self, cfg: &super::config::Config) -> Duration {
        self.rto_with(cfg, cfg.max_ack_delay)
    }

    /// [`RttEstimator::rto`] for a peer that delays its acknowledgement by at most
    /// `ack_delay`.
    pub(crate) fn rto_with(&self, cfg: &super::config::Config, ack_delay: Duration) -> Duration {
        (self.srtt + (self.rttvar * 4).max(cfg.timer_granularity) + ack_delay).max(cfg.min_rto)
    }

    /// Time threshold for declaring a packet lost: 9/8 max(SRTT, latest), at least
    /// [`LOSS_GRANULARITY`].
    pub(crate) fn loss_delay(&self) -> Duration {
        (self.srtt.max(self.latest) * 9 / 8).max(LOSS_GRANULARITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6298_smoothing() {
        let ms = Duration::from_millis;
        let mut r = RttEstimator::new(ms(100));
        r.update(ms(8), Duration::ZERO, ms(2));
        assert_eq!((r.srtt, r.rttvar), (ms(8), ms(4)));
        r.update(ms(16), Duration::ZERO, ms(2));
        assert_eq!(r.srtt, ms(9));
        assert_eq!(r.rttvar, ms(5));
        let cfg = |min_rto| crate::core::Config {
            max_ack_delay: ms(2),
            min_rto,
            ..Default::default()
        };
        assert_eq!(r.rto(&cfg(ms(10))), ms(9 + 20 + 2));
        assert_eq!(r.rto(&cfg(ms(100))), ms(100));
    }
}
