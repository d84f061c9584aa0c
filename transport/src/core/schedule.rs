//! Which peers have work: the index that keeps [`super::Core`]'s calls independent of
//! idle peers.
//!
//! Every timer deadline is derived from a peer's state ([`super::peer::Peer::deadlines`]);
//! without an index, `poll_timeout`, `handle_timeout` and `poll_transmit` had to derive
//! them for every peer on every call (at 64 nodes 29% of the runtime's CPU, in the
//! simulator at 128 nodes 70%). The core instead *touches* a peer after anything that
//! can change its state (an input concerning it, a packet built for it, a timer run),
//! and the schedule keeps:
//!
//! * each peer's earliest deadline, in a set ordered by time, so `poll_timeout` is the
//!   first entry and `handle_timeout` visits only the peers whose deadline passed;
//! * the *ready* peers: those touched since `poll_transmit` last found nothing to send
//!   to them, plus those with a passed deadline (an ACK or keepalive that falls due needs
//!   no input). `poll_transmit` builds packets only for them, round robin.
//!
//! A peer that is neither ready nor due has nothing to send, because only an input or a
//! deadline changes that; in debug builds small cores check the index against a full
//! recomputation after every call.

use std::collections::{BTreeMap, BTreeSet};

use shutter_vclock::NodeId;

use crate::time::Time;

/// The timer index and the ready set; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    /// `(deadline, peer)` for every peer with an armed timer.
    timers: BTreeSet<(Time, NodeId)>,
    /// Each armed peer's entry in `timers`.
    armed: BTreeMap<NodeId, Time>,
    /// Peers `poll_transmit` must look at.
    ready: BTreeSet<NodeId>,
}

impl Schedule {
    /// Records `peer`'s earliest deadline after a change and marks it ready.
    pub(crate) fn touch(&mut self, peer: NodeId, next: Option<Time>) {
        self.rearm(peer, next);
        self.ready.insert(peer);
    }

    /// Records `peer`'s earliest deadline without marking it ready (after a packet was
    /// built for it: `poll_transmit` still holds it).
    pub(crate) fn rearm(&mut self, peer: NodeId, next: Option<Time>) {
        let old = match next {
            Some(t) => self.armed.insert(peer, t),
            None => self.armed.remove(&peer),
        };
        if old != next {
            if let Some(old) = old {
                self.timers.remove(&(old, peer));
            }
            if let Some(t) = next {
                self.timers.insert((t, peer));
            }
        }
    }

    /// Forgets a removed peer.
    pub(crate) fn remove(&mut self, peer: NodeId) {
        if let Some(t) = self.armed.remove(&peer) {
            self.timers.remove(&(t, peer));
        }
        self.ready.remove(&peer);
    }

    /// The earliest armed deadline.
    pub(crate) fn first(&self) -> Option<Time> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Peers whose deadline is at or before `now`.
    pub(crate) fn due(&self, now: Time) -> Vec<NodeId> {
        self.timers
            .range(..=(now, NodeId(u32::MAX)))
            .map(|&(_, p)| p)
            .collect()
    }

    /// Marks the peers with a passed deadline ready (an ACK or keepalive that fell due).
    pub(crate) fn ready_due(&mut self, now: Time) {
        for &(_, p) in self.timers.range(..=(now, NodeId(u32::MAX))) {
            self.ready.insert(p);
        }
    }

    /// The first ready peer at or after `start`, wrapping around.
    pub(crate) fn next_ready(&self, start: u32) -> Option<NodeId> {
        self.ready
            .range(NodeId(start)..)
            .next()
            .or_else(|| self.ready.first())
            .copied()
    }

    /// `poll_transmit` found nothing to send to `peer`.
    pub(crate) fn idle(&mut self, peer: NodeId) {
        self.ready.remove(&peer);
    }

    /// The armed deadline of `peer` (for the debug check).
    #[cfg(debug_assertions)]
    pub(crate) fn armed(&self, peer: NodeId) -> Option<Time> {
        self.armed.get(&peer).copied()
    }

    /// Entries in the timer set (for the debug check and the tests).
    #[cfg(any(debug_assertions, test))]
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.timers.len(), self.armed.len());
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_follow_touches_and_ready_peers_come_round_robin() {
        let mut s = Schedule::default();
        let (a, b, c) = (NodeId(1), NodeId(2), NodeId(3));
        s.touch(a, Some(Time(30)));
        s.touch(b, Some(Time(10)));
        s.touch(c, None);
        assert_eq!(s.first(), Some(Time(10)));
        s.touch(b, Some(Time(40)));
        assert_eq!(s.first(), Some(Time(30)));
        assert_eq!(s.due(Time(35)), vec![a]);
        assert_eq!(s.next_ready(2), Some(b));
        assert_eq!(s.next_ready(4), Some(a));
        s.idle(a);
        s.idle(b);
        s.idle(c);
        assert_eq!(s.next_ready(0), None);
        s.ready_due(Time(40));
        assert_eq!(s.next_ready(0), Some(a));
        s.rearm(c, Some(Time(5)));
        assert_eq!(s.next_ready(3), Some(a), "rearm does not make a peer ready");
        assert_eq!(s.first(), Some(Time(5)));
        s.remove(c);
        assert_eq!(s.first(), Some(Time(30)));
        assert_eq!(s.len(), 2);
    }
}
