//! What user checks see: a completed snapshot with decoded states ([`Cut`]) and the
//! processes at the end of a run ([`End`]).

use std::collections::BTreeMap;

use shutter_snapshot::GlobalSnapshot;
use shutter_vclock::NodeId;

/// A completed snapshot as an invariant sees it: every node's state at its cut,
/// decoded, and the messages that were in flight on each channel across the cut.
pub struct Cut<'a, S> {
    pub(crate) snapshot: &'a GlobalSnapshot,
    pub(crate) states: BTreeMap<NodeId, S>,
}

impl<'a, S> Cut<'a, S> {
    /// The snapshot as the engine assembled it (ids, clocks, timings, raw bytes).
    pub fn snapshot(&self) -> &'a GlobalSnapshot {
        self.snapshot
    }

    /// Every node's state at its local cut, by node.
    pub fn states(&self) -> impl Iterator<Item = (NodeId, &S)> + '_ {
        self.states.iter().map(|(n, s)| (*n, s))
    }

    /// `node`'s state at its local cut.
    pub fn state(&self, node: NodeId) -> Option<&S> {
        self.states.get(&node)
    }

    /// The payloads in flight on `from -> to` across the cut (sent before `from`'s cut,
    /// received after `to`'s), in the order `to` received them.
    pub fn channel(&self, from: NodeId, to: NodeId) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.snapshot
            .channels
            .get(&(from, to))
            .into_iter()
            .flatten()
            .map(|m| m.payload.as_slice())
    }

    /// Every message in flight across the cut: `(from, to, payload)`.
    pub fn in_flight(&self) -> impl Iterator<Item = (NodeId, NodeId, &'a [u8])> + 'a {
        self.snapshot
            .channels
            .iter()
            .flat_map(|(&(f, t), msgs)| msgs.iter().map(move |m| (f, t, m.payload.as_slice())))
    }
}

/// The live processes once a run has settled, for [`crate::Sim::at_end`] checks.
pub struct End<'a, P> {
    pub(crate) processes: Vec<(NodeId, &'a P)>,
    pub(crate) crashes: u64,
    pub(crate) rollbacks: u64,
}

impl<'a, P> End<'a, P> {
    /// Every node's process, by node.
    pub fn processes(&self) -> impl Iterator<Item = (NodeId, &'a P)> + '_ {
        self.processes.iter().copied()
    }

    /// `node`'s process.
    pub fn process(&self, node: NodeId) -> Option<&'a P> {
        self.processes
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, p)| *p)
    }

    /// Crashes that happened in the run.
    pub fn crashes(&self) -> u64 {
        self.crashes
    }

    /// Rollbacks the nodes went through (one per node per round).
    pub fn rollbacks(&self) -> u64 {
        self.rollbacks
    }
}

/// The run so far, for a [`crate::Sim::stop_when`] condition.
pub struct Progress<'a, P> {
    pub(crate) now: shutter_transport::Time,
    pub(crate) processes: Vec<(NodeId, &'a P)>,
    pub(crate) completed: usize,
    pub(crate) crashes: u64,
}

impl<'a, P> Progress<'a, P> {
    /// Virtual time now.
    pub fn now(&self) -> shutter_transport::Time {
        self.now
    }

    /// The processes of the nodes that are up, by node.
    pub fn processes(&self) -> impl Iterator<Item = (NodeId, &'a P)> + '_ {
        self.processes.iter().copied()
    }

    /// Snapshots completed so far.
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// Crashes so far.
    pub fn crashes(&self) -> u64 {
        self.crashes
    }
}
