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
    /// Packets declared lost (threshold or timeout).
    pub packets_lost: u64,
    /// Packets declared lost that were acknowledged later (reordering, not loss); each
    /// one makes loss detection more tolerant of reordering towards that peer.
    pub spurious_losses: u64,
    /// Retransmission timeouts that fired.
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
    /// Delivery latency in microseconds, `now - sent_at` at the receiver per message.
    pub delivery_latency: Histogram<u64>,
}

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
            // 1 us .. 1 h at 3 significant digits; larger values saturate.
            delivery_latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid bounds"),
        }
    }
}

impl Stats {
    /// Smallest smoothed RTT over all peers with a sample.
    pub fn min_srtt(&self) -> Option<Duration> {
        self.rtt.values().map(|r| r.srtt).min()
    }

    /// Datagrams dropped for any reason at the receiving side.
    pub fn dropped(&self) -> u64 {
        self.corrupt_dropped
            + self.malformed_dropped
            + self.unknown_peer_dropped
            + self.sender_mismatch_dropped
            + self.stale_incarnation_dropped
            + self.duplicate_packets
    }
}
