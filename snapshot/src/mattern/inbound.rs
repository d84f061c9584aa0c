//! Receive bookkeeping of one incoming channel by sequence number.
//!
//! Every application message carries the sender engine's life and a per-channel
//! sequence number. The receiver keeps, per sender, the highest `upto` such that every
//! number up to it is *resolved* (received, or declared lost by a `Control::Lost`), plus
//! the resolved numbers above it. A snapshot's channel from that sender is closed once
//! `upto` reaches the sender's pre-cut count. This is what lets snapshots keep working
//! after a transport restart abandoned messages: counting alone would wait forever for
//! messages that will never come.
//!
//! Memory: `above` holds only numbers received out of order beyond a gap; a gap is
//! filled by the late message or by the sender's `Lost` once its session ends.

use std::collections::BTreeSet;

/// Resolved sequence numbers from one sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Inbound {
    /// The sender life these numbers belong to (0 until the first message).
    life: u64,
    /// Every number `1..=upto` is resolved.
    upto: u64,
    /// Resolved numbers above `upto + 1`.
    above: BTreeSet<u64>,
    /// Messages of this life delivered (admitted), counted apart from the numbering so
    /// that snapshots can be checked against it.
    delivered: u64,
    /// The highest number the sender declared lost (0: none).
    lost_upto: u64,
}

impl Inbound {
    /// Switches to `life` if it is newer (numbering restarts); false if `life` is older
    /// than the one tracked (a straggler of a past life).
    fn enter(&mut self, life: u64) -> bool {
        if life > self.life {
            *self = Inbound {
                life,
                ..Inbound::default()
            };
        }
        life == self.life
    }

    /// A message numbered `seq` of sender life `life` arrived. True if it is new and
    /// must be delivered; false if it is stale: already resolved (declared lost, or a
    /// duplicate) or from a past life.
    pub(crate) fn admit(&mut self, life: u64, seq: u64) -> bool {
        if !self.enter(life) || seq <= self.upto || !self.above.insert(seq) {
            return false;
        }
        self.advance();
        true
    }

    /// The sender declared every number up to `upto` of `life` resolved.
    pub(crate) fn resolve_upto(&mut self, life: u64, upto: u64) {
        if !self.enter(life) {
            return;
        }
        self.lost_upto = self.lost_upto.max(upto);
        if upto <= self.upto {
            return;
        }
        self.upto = upto;
        self.above.retain(|&s| s > upto);
        self.advance();
    }

    fn advance(&mut self) {
        while self.upto < u64::MAX && self.above.remove(&(self.upto + 1)) {
            self.upto += 1;
        }
    }

    /// The message just admitted is delivered. Counted apart from `admit`, after the
    /// snapshots it announces were joined: it is not delivered before their cuts.
    pub(crate) fn count_delivery(&mut self) {
        self.delivered += 1;
    }

    /// Messages of the current sender life delivered so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The highest number of the current sender life declared lost (0: none).
    pub(crate) fn lost_upto(&self) -> u64 {
        self.lost_upto
    }

    /// The newest sender life seen (0 before the first message).
    pub(crate) fn life(&self) -> u64 {
        self.life
    }

    /// True if every number `1..=n` of sender life `life` is resolved.
    pub(crate) fn resolved_through(&self, life: u64, n: u64) -> bool {
        n == 0 || (self.life == life && self.upto >= n)
    }

    /// Numbers held above the contiguous prefix (for memory checks).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.above.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Inbound;

    #[test]
    fn out_of_order_arrivals_close_the_prefix() {
        let mut ib = Inbound::default();
        assert!(ib.admit(1, 2));
        assert!(ib.admit(1, 3));
        assert!(!ib.resolved_through(1, 1));
        assert!(ib.admit(1, 1));
        assert!(ib.resolved_through(1, 3));
        assert_eq!(ib.held(), 0);
        assert!(!ib.admit(1, 2), "a duplicate is stale");
    }

    #[test]
    fn lost_fills_gaps_and_late_arrivals_are_stale() {
        let mut ib = Inbound::default();
        assert!(ib.admit(1, 1));
        assert!(ib.admit(1, 4));
        ib.resolve_upto(1, 3);
        assert!(ib.resolved_through(1, 4));
        assert!(!ib.admit(1, 2), "declared lost, must not be delivered");
        assert!(ib.admit(1, 5));
        // A Lost older than what is resolved changes nothing.
        ib.resolve_upto(1, 2);
        assert!(ib.resolved_through(1, 5));
    }

    #[test]
    fn a_new_life_restarts_numbering_and_old_lives_are_stale() {
        let mut ib = Inbound::default();
        assert!(ib.admit(5, 1));
        assert!(ib.admit(5, 2));
        assert!(ib.admit(9, 1), "new life");
        assert!(
            !ib.resolved_through(5, 2),
            "counts of the old life are gone"
        );
        assert!(ib.resolved_through(9, 1));
        assert!(!ib.admit(5, 3), "straggler of a past life");
        ib.resolve_upto(5, 10);
        assert!(!ib.resolved_through(9, 2));
        assert!(ib.resolved_through(9, 0));
    }

    #[test]
    fn extreme_numbers_do_not_overflow() {
        let mut ib = Inbound::default();
        ib.resolve_upto(1, u64::MAX);
        assert!(!ib.admit(1, u64::MAX));
        assert!(ib.resolved_through(1, u64::MAX));
    }

    #[test]
    fn deliveries_are_counted_per_life_apart_from_losses() {
        let mut ib = Inbound::default();
        for seq in [2, 1] {
            assert!(ib.admit(3, seq));
            ib.count_delivery();
        }
        ib.resolve_upto(3, 5);
        assert_eq!((ib.delivered(), ib.lost_upto()), (2, 5));
        assert!(ib.admit(4, 1), "a new life");
        assert_eq!((ib.delivered(), ib.lost_upto()), (0, 0));
    }
}
