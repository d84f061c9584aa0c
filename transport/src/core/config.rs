//! Configuration of the protocol core and its validation.

use std::time::Duration;

use shutter_vclock::NodeId;
use thiserror::Error;

use crate::auth::Auth;
use crate::wire::{MAX_DATA_OVERHEAD, MAX_HEADER_LEN, MAX_TRAILER_LEN};

/// Bytes of a datagram reserved for an ACK frame (lower ranges are dropped to fit) and a
/// PING, so that a full-size fragment always fits next to them.
pub(crate) const ACK_BUDGET: usize = 64;
/// Smallest allowed `max_datagram`.
pub const MIN_DATAGRAM: usize = 256;
/// Largest allowed `max_datagram` (largest UDP payload over IPv4).
pub const MAX_DATAGRAM: usize = 65_507;

/// Tunables of a [`Core`](super::Core). Both ends of a link should use the same values
/// for `max_datagram`-independent limits (`dedup_window`, `max_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node's id.
    pub local: NodeId,
    /// This node's incarnation: nonzero and strictly larger after every restart (for
    /// example `Time::wall_clock_now().as_micros()`), so peers can tell a new life from
    /// late datagrams of the old one.
    pub incarnation: u64,
    /// Largest datagram sent, checksum included.
    pub max_datagram: usize,
    /// Largest message accepted by `send` and by the receiver (at most `u32::MAX`).
    pub max_message: usize,
    /// RTT assumed before the first sample. Default 1 ms (RFC 9002 says 333 ms, for the
    /// Internet). It times little: data waits for the first-contact PING exchange, which
    /// gives both ends a sample, so only those PINGs run on the guess. Guessing low costs a
    /// far link a few spurious ~40-byte PINGs (RTO x1.5 each); guessing 10 ms made every
    /// PING lost on a LAN cost 32 ms: `shutter-bench snapshots`, cold starts at 10% loss,
    /// 8 nodes p50 30.6-33.1 -> 11.2-11.3 ms, 64 nodes 152-159 -> 32-67 ms.
    pub initial_rtt: Duration,
    /// Floor of the retransmission timeout, under RFC 9002's formula (SRTT + max(G,
    /// 4 RTTVAR) + `max_ack_delay`, the last term left out after a PING). Default 100 us,
    /// with `timer_granularity`: a PING'd tail on a lossy link is probed one SRTT +
    /// 100 us after it (see `timer_granularity`). On loopback a 10 ms floor made every
    /// lost control message cost 10 ms, and the 8-node snapshot p50 at 20% loss was
    /// 64 ms instead of 37 ms (`runtime_latency` example).
    pub min_rto: Duration,
    /// Ceiling of the retransmission timeout after backoff.
    pub max_rto: Duration,
    /// Growth of the retransmission timeout per consecutive expiry, in percent (200 =
    /// doubling as in RFC 6298/9002). Default 150, KCP's choice for lossy links: loss
    /// here is mostly random, not congestion, and with doubling the 5th and 6th tries of
    /// one message (1-2% of snapshots at 20% loss touch such a message) dominated the
    /// snapshot latency tail.
    pub rto_backoff_percent: u32,
    /// `Core::send_urgent` copies a message only while the link lost a packet within
    /// this long (`None`: always). Default 10 s: on a clean link the copies only cost CPU
    /// (8-node snapshot p50 at 0% loss 0.5 -> 1.1 ms when always copied), on a lossy one
    /// they save a retransmission timeout per lost control message.
    pub urgent_echo_window: Option<Duration>,
    /// A message sent while nothing is unacknowledged to its peer (it leaves alone) is
    /// sent as by `Core::send_urgent`: on a link that loses, in copies, on a clean one
    /// as usual. A lost lone message is otherwise found only by a probe timeout, and a
    /// second loss backs that off; messages sent behind others have later packets whose
    /// ACKs find a loss sooner, and copies there would multiply a bulk sender's bytes.
    /// Sparse traffic on a lossy link pays about a third more bytes for a shorter
    /// tail (see ARCHITECTURE.md). Default off: the tail PING on lossy links with the
    /// 100 us timer granularity finds such a loss within a few hundred microseconds
    /// without the copies.
    pub lone_urgent: bool,
    /// Longest a receiver delays an acknowledgement to coalesce it. It is also part of
    /// every probe timeout, so it bounds how fast a lost last message of a burst is
    /// found (see [`Config::low_latency`]).
    pub max_ack_delay: Duration,
    /// How late the host's timers may fire: the probe timeout's floor term (RFC 9002's
    /// kGranularity, SRTT + max(this, 4 RTTVAR) + `max_ack_delay`). Default 100 us: the
    /// host loops here use a timerfd (`driver::Alarm`) that keeps tens of microseconds.
    /// A host whose timers are coarser (a tokio timer: 1 ms) only probes later. With
    /// the PING every tail carries on a lossy link, `shutter-bench netlat` p99 at 5%
    /// drop went from 1.15-1.23 to 0.19-0.22 ms, at 20% from 4.2 to 0.41-0.54 ms; the
    /// price is more probe timeouts on busy clean links, where a host stalls past the
    /// shorter timeout (see ARCHITECTURE.md, "Tail PINGs").
    pub timer_granularity: Duration,
    /// A peer silent this long while we wait for it is reported `Unreachable`.
    pub idle_timeout: Duration,
    /// Interval of keepalive pings to a peer we wait for and have nothing in flight to.
    pub keepalive: Duration,
    /// Unacknowledged messages per peer; `send` refuses beyond (flow control).
    pub max_in_flight: usize,
    /// Ack-eliciting packets in flight per peer (a fixed congestion window that also
    /// bounds the sent-packet table).
    pub max_packets_in_flight: usize,
    /// Message ids a receiver tracks beyond the lowest one not yet received; also the
    /// largest spread of ids a sender keeps unacknowledged. Must be `>= max_in_flight`.
    pub dedup_window: u64,
    /// Bytes of partially received messages buffered per peer (`>= max_message`).
    pub max_reassembly_bytes: usize,
    /// Deliver each peer's messages in id order (reorder buffer). Only for the
    /// Chandy-Lamport baseline; the normal mode is unordered.
    pub ordered: bool,
    /// Seed of all randomness (the core currently makes no random choices).
    pub seed: u64,
    /// Whether datagrams are sealed (authenticated and encrypted) with a cluster key
    /// ring, or plain. Default plain: see [`Auth::Insecure`].
    pub auth: Auth,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            local: NodeId(0),
            incarnation: 1,
            max_datagram: 1200,
            max_message: 16 << 20,
            initial_rtt: Duration::from_millis(1),
            min_rto: Duration::from_micros(100),
            max_rto: Duration::from_secs(2),
            rto_backoff_percent: 150,
            urgent_echo_window: Some(Duration::from_secs(10)),
            lone_urgent: false,
            max_ack_delay: Duration::from_millis(2),
            timer_granularity: Duration::from_micros(100),
            idle_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(1),
            max_in_flight: 256,
            max_packets_in_flight: 512,
            dedup_window: 4096,
            max_reassembly_bytes: 64 << 20,
            ordered: false,
            seed: 0,
            auth: Auth::Insecure,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A field is out of range; the message names it and the rule.
    #[error("invalid transport config: {0}")]
    Invalid(&'static str),
}

impl Config {
    /// The defaults tuned for tail latency on a LAN whose hosts have precise timers
    /// (Linux, `driver::Alarm`): acknowledgements within 250 us, so a tail is probed
    /// soon on a clean link too (the defaults PING tails only on lossy links, and there
    /// probe as early). The price is acknowledgements: a busy node sends about twice as
    /// many, and 8 saturating nodes on loopback (`shutter-bench throughput`) spent 23-25
    /// us of CPU per message against 17-20 (measured before the tail PINGs).
    pub fn low_latency() -> Config {
        Config {
            max_ack_delay: Duration::from_micros(250),
            timer_granularity: Duration::from_micros(100),
            min_rto: Duration::from_micros(100),
            ..Config::default()
        }
    }

    /// Checks every field against the rules documented on it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, msg: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid(msg))
            }
        };
        check(self.incarnation != 0, "incarnation must be nonzero")?;
        check(
            (MIN_DATAGRAM..=MAX_DATAGRAM).contains(&self.max_datagram),
            "max_datagram must be within 256..=65507",
        )?;
        check(
            self.max_message >= 1 && self.max_message <= u32::MAX as usize,
            "max_message must be within 1..=u32::MAX",
        )?;
        check(
            self.max_reassembly_bytes >= self.max_message,
            "max_reassembly_bytes must be >= max_message",
        )?;
        check(!self.initial_rtt.is_zero(), "initial_rtt must be positive")?;
        check(
            !self.timer_granularity.is_zero(),
            "timer_granularity must be positive",
        )?;
        check(
            !self.min_rto.is_zero() && self.min_rto <= self.max_rto,
            "need 0 < min_rto <= max_rto",
        )?;
        check(
            (100..=1000).contains(&self.rto_backoff_percent),
            "rto_backoff_percent must be within 100..=1000",
        )?;
        check(
            !self.keepalive.is_zero() && self.keepalive < self.idle_timeout,
            "need 0 < keepalive < idle_timeout",
        )?;
        check(self.max_in_flight >= 1, "max_in_flight must be >= 1")?;
        check(
            self.max_packets_in_flight >= 1,
            "max_packets_in_flight must be >= 1",
        )?;
        check(
            self.dedup_window >= self.max_in_flight as u64,
            "dedup_window must be >= max_in_flight",
        )?;
        Ok(())
    }

    /// Largest fragment payload: a full fragment fits beside the header, an ACK frame
    /// within its budget, a PING and the checksum.
    pub(crate) fn max_fragment(&self) -> usize {
        self.max_datagram - MAX_HEADER_LEN - MAX_TRAILER_LEN - ACK_BUDGET - 1 - MAX_DATA_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
        Config::low_latency().validate().unwrap();
        assert!(Config::default().max_fragment() > 1000);
        let bad = Config {
            incarnation: 0,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        let bad = Config {
            dedup_window: 1,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        for pct in [99, 1001] {
            let bad = Config {
                rto_backoff_percent: pct,
                ..Config::default()
            };
            assert!(bad.validate().is_err(), "{pct}");
        }
    }
}
