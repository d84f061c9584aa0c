//! Receive-side acknowledgement state: which packet numbers arrived (SACK ranges) and
//! when to send the next ACK.
//!
//! Bounds: at most [`MAX_RANGES`] ranges (the lowest are forgotten; the sender then
//! declares those packets lost and resends their data in new packets, which dedup
//! absorbs) and at most [`MAX_ACK_RECORDS`] remembered "this packet of ours carried an
//! ACK up to n" records, used to stop repeating ranges the peer has seen.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::time::Time;

/// Most disjoint ranges of received packet numbers kept per peer.
pub(crate) const MAX_RANGES: usize = 256;
/// Beyond this many ranges an ACK-only packet carries a PING, so the peer acknowledges it
/// and we learn which ranges it has seen and can stop repeating them.
pub(crate) const PRUNE_PING_RANGES: usize = 16;
/// Most records of sent ACK frames kept per peer.
pub(crate) const MAX_ACK_RECORDS: usize = 256;

/// Sorted, disjoint, non-adjacent inclusive ranges of packet numbers.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeSet {
    /// `(low, high)` ascending.
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// Whether `n` is in the set.
    pub(crate) fn contains(&self, n: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 < n);
        self.ranges.get(i).is_some_and(|r| r.0 <= n)
    }

    /// Adds `n`, merging neighbours; forgets the lowest range beyond [`MAX_RANGES`].
    pub(crate) fn insert(&mut self, n: u64) {
        let i = self.ranges.partition_point(|r| r.1.saturating_add(1) < n);
        match self.ranges.get_mut(i) {
            Some(r) if r.0 <= n && n <= r.1 => return,
            Some(r) if r.0.checked_sub(1) == Some(n) => r.0 = n,
            Some(r) if r.1.checked_add(1) == Some(n) => {
                r.1 = n;
                if let Some(&(next_lo, next_hi)) = self.ranges.get(i + 1)
                    && Some(next_lo) == n.checked_add(1)
                {
                    self.ranges[i].1 = next_hi;
                    self.ranges.remove(i + 1);
                }
            }
            _ => self.ranges.insert(i, (n, n)),
        }
        if self.ranges.len() > MAX_RANGES {
            self.ranges.remove(0);
        }
    }

    /// Forgets every number `<= n`.
    pub(crate) fn remove_up_to(&mut self, n: u64) {
        self.ranges.retain(|r| r.1 > n);
        if let Some(first) = self.ranges.first_mut() {
            first.0 = first.0.max(n.saturating_add(1));
        }
    }

    /// Ranges highest first, as the ACK frame wants them.
    pub(crate) fn descending(&self) -> Vec<(u64, u64)> {
        self.ranges.iter().rev().copied().collect()
    }

    /// Number of ranges.
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the set is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// When and what to acknowledge to one peer.
#[derive(Debug, Default)]
pub(crate) struct AckTracker {
    /// Received packet numbers not yet known to be acknowledged to the peer.
    pub(crate) ranges: RangeSet,
    /// Largest packet number received, and when.
    largest: Option<(u64, Time)>,
    /// Ack-eliciting packets received since we last sent an ACK.
    eliciting_since_ack: u32,
    /// Send an ACK no later than this.
    pub(crate) deadline: Option<Time>,
    /// Our packet number -> largest packet number our ACK frame in it covered.
    sent_acks: BTreeMap<u64, u64>,
}

impl AckTracker {
    /// Whether packet `pn` was already received (and is still remembered).
    pub(crate) fn is_duplicate(&self, pn: u64) -> bool {
        self.ranges.contains(pn)
    }

    /// Records a received packet and schedules its acknowledgement: immediately when it
    /// arrived out of order, is the second unacknowledged ack-eliciting packet or carries
    /// a PING (`ping`), otherwise within `max_ack_delay`.
    ///
    /// A PING asks for an answer: first contact (the sender waits for it before sending
    /// data), a keepalive or a probe. Delaying its ACK delayed every first contact by
    /// `max_ack_delay` and made that delay the link's first RTT sample.
    pub(crate) fn on_packet(
        &mut self,
        now: Time,
        pn: u64,
        eliciting: bool,
        ping: bool,
        max_ack_delay: Duration,
    ) {
        let in_order = self
            .largest
            .is_none_or(|(l, _)| l.checked_add(1) == Some(pn));
        if self.largest.is_none_or(|(l, _)| pn > l) {
            self.largest = Some((pn, now));
        }
        self.ranges.insert(pn);
        if !eliciting {
            return;
        }
        self.eliciting_since_ack += 1;
        let at = if !in_order || ping || self.eliciting_since_ack >= 2 {
            now
        } else {
            now + max_ack_delay
        };
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    /// Ack delay to report: time since the largest packet arrived.
    pub(crate) fn delay_micros(&self, now: Time) -> u64 {
        self.largest
            .map_or(0, |(_, at)| now.as_micros().saturating_sub(at.as_micros()))
    }

    /// Notes that our packet `pn` carried an ACK frame up to `largest`.
    pub(crate) fn on_ack_sent(&mut self, pn: u64, largest: u64) {
        self.eliciting_since_ack = 0;
        self.deadline = None;
        self.sent_acks.insert(pn, largest);
        while self.sent_acks.len() > MAX_ACK_RECORDS {
            self.sent_acks.pop_first();
        }
    }

    /// The peer acknowledged our packets in `lo..=hi`: ACK frames they carried have
    /// arrived, so ranges up to their largest need not be repeated.
    pub(crate) fn on_peer_acked(&mut self, lo: u64, hi: u64) {
        let seen = self.sent_acks.range(lo..=hi).map(|(_, &l)| l).max();
        if let Some(seen) = seen {
            self.sent_acks.retain(|&pn, _| pn > hi);
            self.ranges.remove_up_to(seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_set_merges_and_bounds() {
        let mut s = RangeSet::default();
        for n in [5, 3, 4, 10, 8, 9, 1] {
            s.insert(n);
        }
        assert_eq!(s.descending(), vec![(8, 10), (3, 5), (1, 1)]);
        s.insert(2);
        s.insert(6);
        s.insert(7);
        assert_eq!(s.descending(), vec![(1, 10)]);
        assert!(s.contains(1) && s.contains(10) && !s.contains(11) && !s.contains(0));
        s.remove_up_to(4);
        assert_eq!(s.descending(), vec![(5, 10)]);
        for n in 0..1000 {
            s.insert(100 + 2 * n);
        }
        assert_eq!(s.descending().len(), MAX_RANGES);
    }

    #[test]
    fn delayed_then_immediate() {
        let d = Duration::from_millis(2);
        let mut a = AckTracker::default();
        a.on_packet(Time(0), 0, true, false, d);
        assert_eq!(a.deadline, Some(Time(2000)));
        a.on_packet(Time(10), 1, true, false, d);
        assert_eq!(a.deadline, Some(Time(10)));
        a.on_ack_sent(0, 1);
        a.on_packet(Time(20), 5, true, false, d);
        assert_eq!(a.deadline, Some(Time(20)), "out of order acks at once");
        a.on_ack_sent(1, 5);
        a.on_packet(Time(30), 6, true, true, d);
        assert_eq!(a.deadline, Some(Time(30)), "a PING is answered at once");
        a.on_peer_acked(0, 0);
        assert_eq!(a.ranges.descending(), vec![(5, 6)]);
    }
}
