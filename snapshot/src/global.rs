//! What a snapshot produces: the assembled [`GlobalSnapshot`], the events engines emit,
//! and abort reasons.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use crate::wire::{LocalReport, RecordedMessage, SnapshotId};

/// When things happened, each stamp in the local time of the node that took it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Initiation, at the initiator.
    pub started: Time,
    /// Each node's local cut, in that node's time.
    pub local_cuts: BTreeMap<NodeId, Time>,
    /// Assembly of the last report, at the initiator.
    pub completed: Time,
}

impl Timings {
    /// Initiation to completion in microseconds (both stamps are the initiator's).
    pub fn latency_micros(&self) -> u64 {
        self.completed
            .as_micros()
            .saturating_sub(self.started.as_micros())
    }
}

/// A complete, consistent global snapshot as assembled by the initiator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalSnapshot {
    /// Which snapshot.
    pub id: SnapshotId,
    /// Opaque application state of every node at its cut.
    pub states: BTreeMap<NodeId, Vec<u8>>,
    /// Vector clock of every node at its cut.
    pub cuts: BTreeMap<NodeId, VClock>,
    /// Channel state `(from, to)`: messages sent before `from`'s cut and received after
    /// `to`'s cut. Every ordered pair of distinct nodes is present, possibly empty.
    pub channels: BTreeMap<(NodeId, NodeId), Vec<RecordedMessage>>,
    /// Start, local cuts, completion.
    pub timings: Timings,
    /// Control messages exchanged for this snapshot (sent or received by the initiator,
    /// which is every control message of the algorithm).
    pub control_messages: u64,
    /// Per channel `(from, to)`, what the two ends had counted at their cuts (empty if
    /// the parts carried no counts): lets [`crate::verify::check_counts`] prove every
    /// channel state complete and exact without any application invariant.
    pub counts: BTreeMap<(NodeId, NodeId), ChannelCount>,
}

/// The counts of one channel `from -> to` at the cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCount {
    /// Messages `from` had sent on the channel before its cut (in the engine life that
    /// took the cut).
    pub sent: u64,
    /// Of those, messages `to` had delivered before its cut; `None` if `to` had already
    /// heard from a later life of `from` (that cut cannot be right).
    pub delivered: Option<u64>,
    /// True if `from`'s session with `to` ended and some of those messages were
    /// declared lost for good (the channel may then hold fewer than the rest).
    pub lossy: bool,
}

impl GlobalSnapshot {
    /// The nodes in the snapshot.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.states.keys().copied()
    }

    /// Total number of messages recorded in channel states.
    pub fn recorded_messages(&self) -> usize {
        self.channels.values().map(Vec::len).sum()
    }

    /// Recorded messages that `to` must receive again, by sender, after restoring.
    pub fn incoming(&self, to: NodeId) -> impl Iterator<Item = (NodeId, &RecordedMessage)> + '_ {
        self.channels
            .iter()
            .filter(move |((_, t), _)| *t == to)
            .flat_map(|((from, _), msgs)| msgs.iter().map(move |m| (*from, m)))
    }

    /// Every member's part but `me`'s: what the initiator `me` keeps as replicas.
    pub fn parts_except(&self, me: NodeId) -> Vec<(NodeId, LocalReport)> {
        self.nodes()
            .filter(|n| *n != me)
            .filter_map(|n| self.part(n).map(|p| (n, p)))
            .collect()
    }

    /// `node`'s part as it reported it (state, cut clock, incoming channel states), for
    /// keeping as a replica; `None` if `node` is not in the snapshot. The engine life and
    /// the senders' lives it had seen are not kept (0 and empty): a restore does not
    /// need them.
    pub fn part(&self, node: NodeId) -> Option<LocalReport> {
        Some(LocalReport {
            id: self.id,
            state: self.states.get(&node)?.clone(),
            cut: self.cuts.get(&node)?.clone(),
            cut_at: self
                .timings
                .local_cuts
                .get(&node)
                .copied()
                .unwrap_or_default(),
            channels: self
                .channels
                .iter()
                .filter(|((_, to), msgs)| *to == node && !msgs.is_empty())
                .map(|((from, _), msgs)| (*from, msgs.clone()))
                .collect(),
            life: 0,
            seen: Vec::new(),
            counts: None,
        })
    }
}

/// Why a snapshot was abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortWhy {
    /// Not finished within the configured timeout.
    Timeout,
    /// The transport reported this peer unreachable.
    Unreachable(NodeId),
    /// Recorded channel state exceeded the configured byte limit.
    ChannelStateTooLarge,
    /// This node crashed and came back as a new process while the snapshot ran: the
    /// parts of its two lives cannot make one cut.
    Restarted(NodeId),
    /// The assembled snapshot failed the initiator's check
    /// ([`crate::verify::check_structure`]) and was not reported complete; the reason's
    /// `missing` names the nodes the failed check names. Never expected: counted, so a
    /// bug shows instead of a wrong snapshot.
    FailedCheck,
}

impl fmt::Display for AbortWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortWhy::Timeout => f.write_str("timed out"),
            AbortWhy::Unreachable(n) => write!(f, "{n} unreachable"),
            AbortWhy::ChannelStateTooLarge => f.write_str("channel state too large"),
            AbortWhy::Restarted(n) => write!(f, "{n} restarted during the snapshot"),
            AbortWhy::FailedCheck => f.write_str("failed its consistency check"),
        }
    }
}

/// An abort: who the snapshot was still waiting for, and why it gave up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortReason {
    /// Nodes whose part was missing (sorted, no duplicates); for
    /// [`AbortWhy::FailedCheck`], the nodes the failed check names.
    pub missing: Vec<NodeId>,
    /// The cause.
    pub why: AbortWhy,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; missing", self.why)?;
        if self.missing.is_empty() {
            return f.write_str(" nobody");
        }
        for n in &self.missing {
            write!(f, " {n}")?;
        }
        Ok(())
    }
}

/// Reported by an engine through `poll_event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotEvent {
    /// This node took its local cut for `id` (every participant emits this once).
    LocalCut {
        /// The snapshot.
        id: SnapshotId,
        /// Local time of the cut.
        at: Time,
        /// This node's clock at the cut.
        clock: VClock,
    },
    /// The snapshot is complete (only at the initiator).
    Completed(Box<GlobalSnapshot>),
    /// The snapshot was abandoned; emitted by the initiator and by every participant
    /// that had joined and not yet finished its part.
    Aborted {
        /// The snapshot.
        id: SnapshotId,
        /// Who was missing and why.
        reason: AbortReason,
    },
    /// The snapshot is known complete and checked (the initiator's `Done` arrived, or
    /// this node is the initiator and has just completed it): `part` is exactly this
    /// node's part of it (state, cut clock, recorded incoming channels), what a node
    /// keeps in its checkpoint store.
    Committed(Box<LocalReport>),
}

/// The verdict of an application receive: the engine has already joined any announced
/// snapshots (calling back for the local state), so the caller must now deliver, unless
/// [`Delivery::stale`] says to discard.
#[must_use = "the message must be delivered to the application now (unless stale)"]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Snapshots joined because of this message (their local state was taken first).
    pub joined: Vec<SnapshotId>,
    /// Number of snapshots whose channel state recorded this message.
    pub recorded_in: usize,
    /// The message must NOT be delivered: its sequence number was already resolved
    /// (declared lost after a restart, see `Control::Lost`), so snapshots have already
    /// accounted for it as never arriving.
    pub stale: bool,
}

/// Why a snapshot could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InitiateError {
    /// This node already runs the configured maximum of its own snapshots.
    #[error("already running {0} snapshots initiated here")]
    TooManyActive(usize),
    /// A cluster-wide rollback is under way.
    #[error("a cluster-wide rollback is under way")]
    RollingBack,
}
