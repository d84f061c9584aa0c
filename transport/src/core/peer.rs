//! Everything a [`Core`](super::Core) keeps about one peer, and its timer table.
//!
//! Timers are not stored: each is derived from state ([`Peer::deadlines`]), so they can
//! never go stale; the core's next deadline is the minimum over peers and timers.

use crate::auth::ReplayWindow;
use crate::time::Time;

use super::ack::AckTracker;
use super::config::Config;
use super::recv::RecvState;
use super::rtt::RttEstimator;
use super::send::SendState;

/// The per-peer timers, indexing [`Peer::deadlines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A delayed ACK is due.
    Ack = 0,
    /// Time-threshold loss detection.
    Loss,
    /// Retransmission timeout (with backoff).
    Rto,
    /// Keepalive ping while waiting with nothing in flight.
    Keepalive,
    /// Silence for `idle_timeout` while waiting: report `Unreachable`.
    Idle,
}

/// Number of [`Timer`]s.
pub(crate) const TIMERS: usize = 5;

/// State about one peer.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The peer's incarnation as last seen (0 = never heard from).
    pub(crate) incarnation: u64,
    pub(crate) send: SendState,
    pub(crate) recv: RecvState,
    pub(crate) ack: AckTracker,
    pub(crate) rtt: RttEstimator,
    /// When a valid datagram from the peer last arrived.
    pub(crate) last_heard: Option<Time>,
    /// Since when we wait for the peer (unacked data, partial messages, monitoring).
    pub(crate) expect_since: Option<Time>,
    /// `Unreachable` was reported and nothing was heard since.
    pub(crate) unreachable: bool,
    /// The application asked to watch this peer's liveness even when idle.
    pub(crate) monitor: bool,
    /// The peer addressed an older incarnation of ours: tell it our current one.
    pub(crate) announce: bool,
    /// Authenticated packet numbers of the peer's incarnation `replay_incarnation`
    /// (sealed mode only).
    pub(crate) replay: ReplayWindow,
    pub(crate) replay_incarnation: u64,
}

impl Peer {
    pub(crate) fn new(cfg: &Config) -> Self {
        Peer {
            incarnation: 0,
            send: SendState::default(),
            recv: RecvState::default(),
            ack: AckTracker::default(),
            rtt: RttEstimator::new(cfg.initial_rtt),
            last_heard: None,
            expect_since: None,
            unreachable: false,
            monitor: false,
            announce: false,
            replay: ReplayWindow::default(),
            replay_incarnation: 0,
        }
    }

    /// Whether we are waiting for something from this peer.
    pub(crate) fn expecting(&self) -> bool {
        self.send.unacked() > 0 || self.recv.has_partials() || self.monitor
    }

    /// Starts or stops the waiting clock after a state change.
    pub(crate) fn refresh_expect(&mut self, now: Time) {
        if !self.expecting() {
            self.expect_since = None;
        } else if self.expect_since.is_none() {
            self.expect_since = Some(now);
        }
    }

    /// Retransmission timeout including backoff, capped at `max_rto`.
    pub(crate) fn rto(&self, cfg: &Config) -> std::time::Duration {
        let mut rto = self.rtt.rto(cfg.max_ack_delay, cfg.min_rto);
        for _ in 0..self.send.pto_count {
            if rto >= cfg.max_rto {
                break;
            }
            rto = rto.saturating_mul(cfg.rto_backoff_percent) / 100;
        }
        rto.min(cfg.max_rto)
    }

    /// The deadline of each [`Timer`], if armed.
    pub(crate) fn deadlines(&self, cfg: &Config) -> [Option<Time>; TIMERS] {
        let mut t = [None; TIMERS];
        t[Timer::Ack as usize] = self.ack.deadline;
        t[Timer::Loss as usize] = self.send.loss_time;
        if self.send.packets_in_flight() > 0 {
            t[Timer::Rto as usize] = self.send.last_eliciting_sent.map(|s| s + self.rto(cfg));
        }
        if let Some(since) = self.expect_since {
            if self.send.packets_in_flight() == 0 {
                let base = self
                    .send
                    .last_eliciting_sent
                    .map_or(since, |s| s.max(since));
                t[Timer::Keepalive as usize] = Some(base + cfg.keepalive);
            }
            if !self.unreachable {
                let base = self.last_heard.map_or(since, |h| h.max(since));
                t[Timer::Idle as usize] = Some(base + cfg.idle_timeout);
            }
        }
        t
    }

    /// The earliest armed deadline.
    pub(crate) fn next_deadline(&self, cfg: &Config) -> Option<Time> {
        self.deadlines(cfg).into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rto_backs_off_by_the_configured_factor_up_to_max_rto() {
        let cfg = Config {
            max_rto: Duration::from_secs(1),
            ..Config::default()
        };
        let mut peer = Peer::new(&cfg);
        let base = peer.rto(&cfg);
        peer.send.pto_count = 2;
        // x1.5 twice, within rounding of the integer arithmetic.
        let want = base.as_nanos() * 225 / 100;
        let got = peer.rto(&cfg).as_nanos();
        assert!(got.abs_diff(want) <= 2, "{got} vs {want}");
        peer.send.pto_count = 16;
        assert_eq!(peer.rto(&cfg), cfg.max_rto);
        let doubling = Config {
            rto_backoff_percent: 200,
            ..cfg.clone()
        };
        peer.send.pto_count = 3;
        assert_eq!(peer.rto(&doubling), (base * 8).min(cfg.max_rto));
    }
}
