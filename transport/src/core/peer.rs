//! Everything a [`Core`](super::Core) keeps about one peer, its timer table, and the
//! table of all peers ([`Peers`]).
//!
//! Timers are not stored: each is derived from state ([`Peer::deadlines`]), so they can
//! never go stale; the core's next deadline is the minimum over peers and timers.

use std::time::Duration;

use shutter_vclock::NodeId;

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
        Self::fresh(cfg.initial_rtt)
    }

    fn fresh(initial_rtt: Duration) -> Self {
        Peer {
            incarnation: 0,
            send: SendState::default(),
            recv: RecvState::default(),
            ack: AckTracker::default(),
            rtt: RttEstimator::new(initial_rtt),
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

    /// Retransmission timeout including backoff, capped at `max_rto`. When the newest
    /// packet in flight carried a PING (first contact, a probe, a keepalive), the peer
    /// acknowledges it at once and with it everything it got, so `max_ack_delay` is left
    /// out, as RFC 9002 leaves it out for the handshake packets its peers do not delay:
    /// a lost first-contact PING then costs SRTT + max(G, 4 RTTVAR) (3 ms on first
    /// contact with the defaults) instead of 5 ms, and every probe after the first comes
    /// that much sooner.
    pub(crate) fn rto(&self, cfg: &Config) -> std::time::Duration {
        let ack_delay = if self.send.last_eliciting_pinged {
            std::time::Duration::ZERO
        } else {
            cfg.max_ack_delay
        };
        let mut rto = self.rtt.rto_with(cfg, ack_delay);
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

/// Every peer of a core, by id, iterated in ascending id order.
///
/// A `Peer` is about 900 bytes, and most peers of a large cluster are never talked to
/// by a given node (in the simulator at 256 nodes a node exchanges messages with a few
/// dozen of its 255 peers). So a peer's state is built on the first mutable access
/// ([`Peers::get_mut`]); until then [`Peers::get`] shows `blank`, a peer as
/// [`Peer::new`] builds it, which is what the built state would still be. Calls that
/// visit every peer ([`Peers::next_deadline_after_touch`], [`Peers::for_each_built`])
/// leave unbuilt peers alone because for a fresh peer they change nothing.
///
/// Ids and states are two parallel vectors sorted by id rather than a
/// `BTreeMap<NodeId, Peer>`, which moved whole 900-byte values when its nodes split and
/// walked its nodes to drop them (in the simulator at 256 nodes, building and dropping
/// the peer tables was 12% of the run). Lookups binary-search the small id vector (1 KiB
/// at 256 peers). Adding and removing a peer in the middle is O(peers), but members
/// change rarely and are usually added in ascending order (an append).
#[derive(Debug)]
pub(crate) struct Peers {
    /// Ascending.
    ids: Vec<NodeId>,
    /// `slots[i]` belongs to `ids[i]`; `None` while it is still as `Peer::new` built it.
    slots: Vec<Option<Box<Peer>>>,
    /// What an unbuilt slot stands for; never changed.
    blank: Peer,
    initial_rtt: Duration,
}

impl Peers {
    /// An empty table for a core with `cfg`.
    pub(crate) fn new(cfg: &Config) -> Self {
        let blank = Peer::new(cfg);
        // What lets the table skip unbuilt peers in `touch` and `build_packet`.
        debug_assert!(!blank.expecting() && blank.next_deadline(cfg).is_none());
        Peers {
            ids: Vec::new(),
            slots: Vec::new(),
            blank,
            initial_rtt: cfg.initial_rtt,
        }
    }

    fn find(&self, id: NodeId) -> Result<usize, usize> {
        self.ids.binary_search(&id)
    }

    #[cfg(any(debug_assertions, test))]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn contains_key(&self, id: &NodeId) -> bool {
        self.find(*id).is_ok()
    }

    /// The peer's state (a fresh one if it was never changed).
    pub(crate) fn get(&self, id: &NodeId) -> Option<&Peer> {
        let i = self.find(*id).ok()?;
        Some(self.slots[i].as_deref().unwrap_or(&self.blank))
    }

    /// The peer's state, to change it (built now if it was never changed).
    pub(crate) fn get_mut(&mut self, id: &NodeId) -> Option<&mut Peer> {
        let i = self.find(*id).ok()?;
        let rtt = self.initial_rtt;
        Some(self.slots[i].get_or_insert_with(|| Box::new(Peer::fresh(rtt))))
    }

    /// The peer's state if it was ever changed; `None` for a fresh or unknown peer.
    pub(crate) fn get_built_mut(&mut self, id: &NodeId) -> Option<&mut Peer> {
        let i = self.find(*id).ok()?;
        self.slots[i].as_deref_mut()
    }

    /// Adds `id` (fresh), unless it is already there.
    pub(crate) fn insert(&mut self, id: NodeId) {
        if let Err(i) = self.find(id) {
            self.ids.insert(i, id);
            self.slots.insert(i, None);
        }
    }

    /// Removes `id`; its state if it was ever changed (`Some(None)`: a fresh one).
    pub(crate) fn remove(&mut self, id: &NodeId) -> Option<Option<Box<Peer>>> {
        let i = self.find(*id).ok()?;
        self.ids.remove(i);
        Some(self.slots.remove(i))
    }

    /// After a change to `id`'s state: starts or stops its waiting clock and returns
    /// its earliest deadline (`None` also for an unknown peer; use `contains_key`).
    pub(crate) fn next_deadline_after_touch(
        &mut self,
        now: Time,
        id: &NodeId,
        cfg: &Config,
    ) -> Option<Time> {
        let i = self.find(*id).ok()?;
        match self.slots[i].as_deref_mut() {
            Some(p) => {
                p.refresh_expect(now);
                p.next_deadline(cfg)
            }
            // A fresh peer expects nothing and has no deadline.
            None => None,
        }
    }

    /// Runs `f` on every built peer (ascending ids) and returns their ids with their
    /// earliest deadlines afterwards. Fresh peers are skipped (see `Core::expedite`).
    pub(crate) fn for_each_built(
        &mut self,
        cfg: &Config,
        mut f: impl FnMut(&mut Peer),
    ) -> Vec<(NodeId, Option<Time>)> {
        self.ids
            .iter()
            .zip(&mut self.slots)
            .filter_map(|(&id, slot)| {
                let p = slot.as_deref_mut()?;
                f(p);
                Some((id, p.next_deadline(cfg)))
            })
            .collect()
    }

    /// Every built peer with its id, ascending (fresh ones are skipped: they read as
    /// `Peer::new` builds them).
    pub(crate) fn built_by_id(&self) -> impl Iterator<Item = (NodeId, &Peer)> {
        self.ids
            .iter()
            .copied()
            .zip(&self.slots)
            .filter_map(|(id, s)| Some((id, s.as_deref()?)))
    }

    /// Every peer with its id, ascending (fresh ones as `Peer::new` builds them).
    #[cfg(any(debug_assertions, test))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (NodeId, &Peer)> {
        self.ids.iter().copied().zip(
            self.slots
                .iter()
                .map(|s| s.as_deref().unwrap_or(&self.blank)),
        )
    }
}

impl std::ops::Index<&NodeId> for Peers {
    type Output = Peer;

    fn index(&self, id: &NodeId) -> &Peer {
        self.get(id).expect("a peer of the table")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_pinged_packet_is_timed_without_the_ack_delay() {
        let cfg = Config::default();
        let mut peer = Peer::new(&cfg);
        peer.send.on_packet_sent(0, Time(0), vec![(0, 0)], false);
        let data = peer.rto(&cfg);
        peer.send.on_packet_sent(1, Time(10), Vec::new(), true);
        assert_eq!(peer.rto(&cfg), data - cfg.max_ack_delay);
        // First contact with the defaults: 1 ms guess + 4 x 0.5 ms, not 5 ms.
        assert_eq!(peer.rto(&cfg), Duration::from_millis(3));
    }

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

    #[test]
    fn peer_table_keeps_ids_sorted_and_builds_peers_on_first_change() {
        let cfg = Config::default();
        let mut t = Peers::new(&cfg);
        for id in [5, 1, 9, 3, 5] {
            t.insert(NodeId(id));
        }
        assert_eq!(t.len(), 4, "adding an existing peer does nothing");
        let ids: Vec<u32> = t.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, [1, 3, 5, 9]);
        assert!(t.get_built_mut(&NodeId(5)).is_none(), "fresh until changed");
        assert_eq!(t.get(&NodeId(5)).map(|p| p.incarnation), Some(0));
        for id in [1, 3, 9] {
            t.get_mut(&NodeId(id)).expect("present").incarnation = u64::from(id);
        }
        assert!(t.get_built_mut(&NodeId(9)).is_some());
        assert!(matches!(t.remove(&NodeId(3)), Some(Some(p)) if p.incarnation == 3));
        assert!(matches!(t.remove(&NodeId(5)), Some(None)));
        assert!(t.remove(&NodeId(3)).is_none());
        assert!(!t.contains_key(&NodeId(3)) && t.contains_key(&NodeId(9)));
        assert!(t.get(&NodeId(4)).is_none() && t.get_mut(&NodeId(4)).is_none());
        assert_eq!(t[&NodeId(9)].incarnation, 9);
        t.insert(NodeId(2));
        let seen = t.for_each_built(&cfg, |p| p.incarnation += 1);
        let ids: Vec<u32> = seen.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, [1, 9], "fresh peers are skipped");
        let built: Vec<u32> = t.built_by_id().map(|(id, _)| id.0).collect();
        assert_eq!(built, [1, 9]);
        let incs: Vec<u64> = t.iter().map(|(_, p)| p.incarnation).collect();
        assert_eq!(incs, [2, 0, 10], "fresh peers are left alone");
        assert!(t.get_built_mut(&NodeId(2)).is_none());
    }
}
