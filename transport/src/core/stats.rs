//! Counters, RTT estimates and the delivery-latency histogram of a [`Core`](super::Core).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use shutter_vclock::NodeId;

/// RTT estimate towards one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttStats {
    /// Smoothed RTT.
    pub srtt: Duration,
    /// RTT variation.
    pub rttvar: Duration,
    /// Smallest sample.
    pub min_rtt: Duration,
    /// Current retransmission timeout before backoff.
    pub rto: Duration,
}

/// Everything a [`Core`](super::Core) counts. All counters only grow.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Datagrams handed to the driver.
    pub datagrams_sent: u64,
    /// Bytes in those datagrams.
    pub bytes_sent: u64,
    /// Datagrams passed to `handle_datagram`, valid or not.
    pub datagrams_received: u64,
    /// Bytes in those datagrams.
    pub bytes_received: u64,
    /// Messages accepted by `send`.
    pub messages_sent: u64,
    /// Messages delivered to the application.
    pub messages_delivered: u64,
    /// Messages wholly acknowledged by their receiver.
    pub messages_acked: u64,
    /// Messages given up because their receiver restarted.
    pub messages_abandoned: u64,
    /// DATA frames sent, first transmissions and retransmissions.
    pub fragments_sent: u64,
    /// DATA frames sent again after their packet was declared lost.
    pub retransmits: u64,
    /// Proactive second copies of urgent messages' fragments (see `Core::send_urgent`).
    pub urgent_copies: u64,
    /// DATA frames copied into probe packets by a probe timeout (see `rto_expirations`).
    pub probe_copies: u64,
    /// Packets declared lost: a later packet was acknowledged and this one is
    /// `PACKET_THRESHOLD` packets or a time threshold behind it (a timeout only probes).
    pub packets_lost: u64,
    /// Packets declared lost that were acknowledged later (reordering, not loss); each
    /// one makes loss detection more tolerant of reordering towards that peer.
    pub spurious_losses: u64,
    /// Probe timeouts that fired: a whole RTO passed with packets in flight and no ACK.
    /// Each sends probes (a PING and copies of the oldest unacknowledged data) and
    /// declares nothing lost, so a host that stalled does not resend a whole window.
    pub rto_expirations: u64,
    /// Fragments or messages received again and dropped.
    pub duplicates_dropped: u64,
    /// Whole datagrams received twice (same packet number) and dropped.
    pub duplicate_packets: u64,
    /// Datagrams failing the CRC32C (plain mode).
    pub corrupt_dropped: u64,
    /// Sealed datagrams failing authentication: forged, damaged, or sealed with a key
    /// this node does not hold.
    pub auth_failed_dropped: u64,
    /// Authenticated datagrams whose packet number was already seen or is older than
    /// the replay window: replays, and network duplicates (indistinguishable).
    pub replayed_dropped: u64,
    /// Plain datagrams reaching a sealed node, or sealed ones reaching a plain node.
    pub wrong_protection_dropped: u64,
    /// Datagrams with bad magic, version or structure, or violating the protocol.
    pub malformed_dropped: u64,
    /// Datagrams from nodes not added with `add_peer`.
    pub unknown_peer_dropped: u64,
    /// Datagrams whose header sender differs from the address the driver resolved.
    pub sender_mismatch_dropped: u64,
    /// Datagrams from an older incarnation of the peer or for an older one of ours.
    pub stale_incarnation_dropped: u64,
    /// Packets left unacknowledged because data was beyond the dedup window or the
    /// reassembly memory was full (the sender retries).
    pub refused_packets: u64,
    /// `Unreachable` events emitted.
    pub unreachable_events: u64,
    /// `PeerRestarted` events emitted.
    pub peer_restarts: u64,
    /// ACK frames sent (piggybacked or alone).
    pub acks_sent: u64,
    /// Datagrams carrying only an ACK.
    pub ack_only_sent: u64,
    /// PING frames sent (keepalive or incarnation announcements).
    pub pings_sent: u64,
    /// Latest RTT estimate per peer (after its first sample).
    pub rtt: BTreeMap<NodeId, RttStats>,
    /// Delivery latency in microseconds, `now - sent_at` at the receiver per message
    /// (1 us resolution, 3 significant digits; values above one hour are recorded as
    /// one hour). The histogram auto-resizes: it covers the largest latency seen
    /// so far, so `high()` grows with the data instead of starting at one hour.
    pub delivery_latency: Histogram<u64>,
}

/// Largest delivery latency the histogram tells apart (1 h, in microseconds); the
/// snapshot layer's latency histograms share it.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;

impl Default for Stats {
    fn default() -> Self {
        Stats {
            datagrams_sent: 0,
            bytes_sent: 0,
            datagrams_received: 0,
            bytes_received: 0,
            messages_sent: 0,
            messages_delivered: 0,
            messages_acked: 0,
            messages_abandoned: 0,
            fragments_sent: 0,
            retransmits: 0,
            urgent_copies: 0,
            packets_lost: 0,
            spurious_losses: 0,
            probe_copies: 0,
            rto_expirations: 0,
            duplicates_dropped: 0,
            duplicate_packets: 0,
            corrupt_dropped: 0,
            auth_failed_dropped: 0,
            replayed_dropped: 0,
            wrong_protection_dropped: 0,
            malformed_dropped: 0,
            unknown_peer_dropped: 0,
            sender_mismatch_dropped: 0,
            stale_incarnation_dropped: 0,
            refused_packets: 0,
            unreachable_events: 0,
            peer_restarts: 0,
            acks_sent: 0,
            ack_only_sent: 0,
            pings_sent: 0,
            rtt: BTreeMap::new(),
            // Starts at 16 KB and grows to what the latencies need: sized for one hour
            // up front it was 188 KB zeroed per core, which was 8% of the simulator's
            // run at 256 nodes (a Core per node, most latencies below 10 ms).
            delivery_latency: Histogram::new(3).expect("valid precision"),
        }
    }
}

impl Stats {
    /// Records one delivery latency: at least 1 us, at most `LATENCY_MAX_US`, so the
    /// auto-resizing histogram never grows past what a fixed one-hour histogram held.
    pub(crate) fn record_delivery_latency(&mut self, micros: u64) {
        let v = micros.clamp(1, LATENCY_MAX_US);
        self.delivery_latency
            .record(v)
            .expect("an auto-resizing histogram takes any value up to one hour");
    }

    /// Smallest smoothed RTT over all peers with a sample.
    pub fn min_srtt(&self) -> Option<Duration> {
        self.rtt.values().map(|r| r.srtt).min()
    }

    /// Datagrams dropped for any reason at the receiving side.
    pub fn dropped(&self) -> u64 {
        self.corrupt_dropped
            + self.auth_failed_dropped
            + self.replayed_dropped
            + self.wrong_protection_dropped
            + self.malformed_dropped
            + self.unknown_peer_dropped
            + self.sender_mismatch_dropped
            + self.stale_incarnation_dropped
            + self.duplicate_packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_sums_every_reason() {
        let s = Stats {
            corrupt_dropped: 1,
            auth_failed_dropped: 2,
            replayed_dropped: 4,
            wrong_protection_dropped: 8,
            malformed_dropped: 16,
            unknown_peer_dropped: 32,
            sender_mismatch_dropped: 64,
            stale_incarnation_dropped: 128,
            duplicate_packets: 256,
            ..Stats::default()
        };
        assert_eq!(s.dropped(), 511);
    }

    /// The growing histogram reads exactly as the one-hour histogram it replaced did.
    #[test]
    fn delivery_latency_reads_as_a_fixed_one_hour_histogram() {
        let mut fixed = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3).expect("bounds");
        let mut stats = Stats::default();
        assert!(stats.delivery_latency.high() < 1 << 12, "starts small");
        for v in [
            0,
            1,
            7,
            999,
            2048,
            40_000,
            1_234_567,
            LATENCY_MAX_US,
            u64::MAX,
        ] {
            stats.record_delivery_latency(v);
            fixed.saturating_record(v.clamp(1, LATENCY_MAX_US));
        }
        let h = &stats.delivery_latency;
        assert_eq!(
            (h.len(), h.min(), h.max()),
            (fixed.len(), fixed.min(), fixed.max())
        );
        for q in [0.0, 0.1, 0.5, 0.7, 0.9, 0.99, 1.0] {
            assert_eq!(h.value_at_quantile(q), fixed.value_at_quantile(q), "q {q}");
        }
        assert_eq!(
            h.highest_equivalent(h.max()),
            fixed.highest_equivalent(LATENCY_MAX_US),
            "beyond one hour is one hour"
        );
    }
}
