//! Wire types shared by the engines and the runtime: snapshot ids, the application
//! header every app message carries, Mattern's control messages and the envelope that
//! multiplexes both over one transport stream.
//!
//! Everything is serde + postcard. Nothing here trusts its input beyond what decoding
//! checks: the engines ignore control messages that name unknown snapshots or come from
//! the wrong node.

use std::fmt;

use serde::{Deserialize, Serialize};
use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use crate::global::AbortReason;

/// Name of one snapshot: the initiator `k` and `s = V_k[k]` right after `k` ticked to
/// start it. Unique because `k`'s own clock entry only grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SnapshotId {
    /// The node that started the snapshot and collects the reports.
    pub initiator: NodeId,
    /// The initiator's own clock entry at initiation; messages with `ts[initiator] >= s`
    /// are post-cut.
    pub s: u64,
}

impl SnapshotId {
    /// True if a message stamped `ts` was sent after its sender joined this snapshot.
    pub fn is_post_cut(&self, ts: &VClock) -> bool {
        ts.get(self.initiator) >= self.s
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.initiator, self.s)
    }
}

/// Piggybacked on every application message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppHeader {
    /// The sender's vector clock after ticking for this send.
    pub ts: VClock,
    /// Active snapshots the sender has joined: the receiver joins them before delivery.
    pub joined: Vec<SnapshotId>,
    /// The sender engine's life (see `mattern::EngineConfig::life`): sequence numbers
    /// restart with every life.
    pub life: u64,
    /// Per-channel sequence number: the first message of a life from the sender to this
    /// receiver is 1, the next 2, ... (0 from engines that do not number, such as
    /// Chandy-Lamport's, which relies on FIFO channels instead).
    pub seq: u64,
}

/// An application message captured in a channel state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedMessage {
    /// The sender's timestamp (pre-cut: `ts[initiator] < s`).
    pub ts: VClock,
    /// The application payload, byte for byte.
    pub payload: Vec<u8>,
}

/// One node's application message counts at its local cut, which let
/// [`crate::verify::check_counts`] prove every channel state complete and exact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutCounts {
    /// Per receiver: messages this node's engine life had sent to it before the cut.
    pub sent: Vec<(NodeId, u64)>,
    /// Per sender: `(sender's engine life, messages of that life delivered here before
    /// the cut)`.
    pub delivered: Vec<(NodeId, u64, u64)>,
    /// Per sender: `(sender's engine life, highest number it declared lost)` when the
    /// report was sent, for senders whose session with this node ended (see
    /// [`Control::Lost`]): those messages are gone for good, so the channel may hold
    /// fewer than were sent.
    pub lost: Vec<(NodeId, u64, u64)>,
}

/// What one node hands its initiator once all its incoming channels are closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalReport {
    /// The snapshot this belongs to.
    pub id: SnapshotId,
    /// Opaque application state recorded at the cut.
    pub state: Vec<u8>,
    /// The node's vector clock at its cut.
    pub cut: VClock,
    /// Local time of the cut (the node's own clock, only roughly comparable across hosts).
    pub cut_at: Time,
    /// Channel states of the incoming channels, by sender; empty channels may be omitted.
    pub channels: Vec<(NodeId, Vec<RecordedMessage>)>,
    /// The reporting engine's life (0 from engines without lives): must be the life
    /// whose row of counts the initiator holds.
    pub life: u64,
    /// `(sender, newest life of it this node had received from)` when it reported. A
    /// life newer than the one that took the sender's cut means the sender crashed
    /// during the snapshot and its new process, which knows nothing of the snapshot,
    /// reached this node: its messages look pre-cut and would be recorded or delivered
    /// before the cut, so the initiator aborts.
    pub seen: Vec<(NodeId, u64)>,
    /// Message counts at the cut (`None` from a part that does not carry them, such as
    /// a replica kept by an initiator or a genesis checkpoint).
    pub counts: Option<CutCounts>,
}

/// One entry of a participant's column: `(sender, sender's engine life, pre-cut
/// messages the sender sent to the participant)`.
pub type ExpectedCount = (NodeId, u64, u64);

/// Mattern control messages. Those about a snapshot all travel between its initiator
/// and one participant, so a snapshot of `N` nodes costs `3 (N - 1)` control messages
/// when no pre-cut message was in flight at any cut, else `5 (N - 1)`;
/// [`Control::Lost`] goes between any two nodes, once per restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Initiator to all: snapshot `id` has begun; join it if you have not yet.
    Begin {
        /// The snapshot.
        id: SnapshotId,
        /// Snapshots the initiator had joined when it started this one: joined first by
        /// the receiver, exactly as for an application message's header.
        joined: Vec<SnapshotId>,
    },
    /// Participant to initiator on joining: its report as it stands at its cut (no
    /// channel state yet). Its counts' `sent` is the participant's row of the count
    /// matrix: `(destination, messages sent to it before the cut)` in the report's life,
    /// the highest pre-cut sequence number on that channel. If the rows show every
    /// incoming channel of the participant closed at its cut (each pre-cut message
    /// delivered before it), this is its final report and it gets no
    /// [`Control::Expect`]; when that holds for every node the snapshot completes in two
    /// one-way delays instead of four. A `Cut` without counts is ignored.
    Cut {
        /// The report at the cut.
        report: Box<LocalReport>,
    },
    /// Initiator to participant once every row is in: how many pre-cut messages each
    /// sender sent to it (its column). The participant's channel from a sender is closed
    /// once every sequence number up to that count is resolved (received or declared
    /// lost with [`Control::Lost`]).
    Expect {
        /// The snapshot.
        id: SnapshotId,
        /// `(sender, sender's life, pre-cut messages it sent to the receiver)`.
        counts: Vec<ExpectedCount>,
    },
    /// Participant to initiator: local state, cut and channel states.
    Report(Box<LocalReport>),
    /// Initiator to all: the snapshot completed; stop announcing it and forget it.
    Done {
        /// The snapshot.
        id: SnapshotId,
        /// The engine life of the receiver's part in it: a process that restarted
        /// during the snapshot and joined it again commits nothing (the part used is
        /// its predecessor's report at the cut).
        life: u64,
    },
    /// Either direction: the snapshot is abandoned. A participant tells its initiator,
    /// the initiator tells everyone.
    Abort {
        /// The snapshot.
        id: SnapshotId,
        /// Who was missing and why.
        reason: AbortReason,
    },
    /// Sender to receiver, not about any snapshot: the transport session between them
    /// ended (one side restarted), so every application message of sender life `life`
    /// numbered up to `upto` that the receiver has not received yet never will be. The
    /// receiver stops waiting for them, and discards any that still shows up, so
    /// snapshots keep closing their channels after a restart.
    Lost {
        /// The sender engine's life.
        life: u64,
        /// Highest sequence number handed to the ended session.
        upto: u64,
    },
}

impl Control {
    /// The snapshot this message is about (`None` for [`Control::Lost`]).
    pub fn id(&self) -> Option<SnapshotId> {
        match self {
            Control::Begin { id, .. }
            | Control::Expect { id, .. }
            | Control::Done { id, .. }
            | Control::Abort { id, .. } => Some(*id),
            Control::Report(r) | Control::Cut { report: r } => Some(r.id),
            Control::Lost { .. } => None,
        }
    }
}

/// An application message as [`crate::stack::Stack`] ships it: the header in lean form
/// (see [`crate::lean`]), decoded back to an [`AppHeader`] before the engine sees it.
/// Its wire form is hand-written (one flags byte for `keep`, the head's form and what
/// is left out): see `lean::frame`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeanApp {
    /// The receiver keeps this message's header as a baseline that later messages on
    /// the channel may name.
    pub keep: bool,
    /// Life, sequence number and clock, whole or against a baseline.
    pub head: LeanHead,
    /// As [`AppHeader::joined`].
    pub joined: Vec<SnapshotId>,
    /// Application bytes.
    pub payload: Vec<u8>,
}

/// The per-message part of a lean header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeanHead {
    /// Everything spelled out (no usable baseline yet).
    Whole {
        /// As [`AppHeader::life`].
        life: u64,
        /// As [`AppHeader::seq`].
        seq: u64,
        /// As [`AppHeader::ts`].
        ts: VClock,
    },
    /// Against a baseline: a message the receiver kept, of the same sender life, which
    /// supplies the life; sequence number and clock are increments over the baseline's.
    Diff {
        /// This message's transport id minus the baseline's (at least 1).
        back: u64,
        /// `seq - baseline seq`.
        seq: u64,
        /// `ts - baseline ts`, entry by entry.
        ts: ClockDiff,
    },
}

/// Entry-wise increments of a vector clock over a baseline, from entry 0; entries past
/// the end did not change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockDiff {
    /// `(count, increment)`: `count` consecutive entries grew by `increment` (runs of
    /// unchanged entries and of equal steps cost two varints).
    Runs(Vec<(u64, u64)>),
    /// One increment per entry.
    Each(Vec<u64>),
    /// `(gap, increment)` for each entry that grew: its index is the previous one's
    /// plus `gap` (the first one's is `gap`), so a few changed entries cost two varints
    /// each.
    Sparse(Vec<(u64, u64)>),
    /// Frame of reference with exceptions: each of `count` entries grew by `min` plus a
    /// `bits`-bit number, packed little-endian in `packed` (entry 0 in the low bits of
    /// byte 0), plus, for the few entries in `extra`, a further increment. Entries that
    /// all grew by similar amounts (all-to-all traffic: about 2N each between two
    /// messages on a channel) cost `bits` bits instead of a varint, and a few outliers
    /// (a node heard of for the first time) do not widen every entry.
    Packed {
        /// Entries described.
        count: u64,
        /// Added to every entry.
        min: u64,
        /// Bits per entry in `packed` (0..=64).
        bits: u8,
        /// `count * bits` bits, rounded up to whole bytes.
        packed: Vec<u8>,
        /// `(gap, increment)` added on top, indexed as in [`ClockDiff::Sparse`].
        extra: Vec<(u64, u64)>,
    },
}

/// One transport message: application traffic or engine control. Generic over the
/// control type so the Chandy-Lamport baseline can share it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope<C = Control> {
    /// An application message with its snapshot header.
    App {
        /// Clock and joined snapshots of the sender.
        header: AppHeader,
        /// Application bytes.
        payload: Vec<u8>,
    },
    /// An engine control message.
    Control(C),
    /// A message of the cluster-wide rollback protocol ([`crate::recovery`]).
    Recovery(crate::recovery::RecoveryMsg),
    /// An application message with its header in lean form: what the stack ships.
    Lean(LeanApp),
}

impl<C: Serialize + for<'de> Deserialize<'de>> Envelope<C> {
    /// Postcard encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("postcard encoding into a Vec cannot fail")
    }

    /// Postcard decoding; any malformed input is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips() {
        let id = SnapshotId {
            initiator: NodeId(2),
            s: 7,
        };
        let e: Envelope = Envelope::App {
            header: AppHeader {
                ts: VClock::from_entries(vec![1, 0, 7]),
                joined: vec![id],
                life: 1,
                seq: 4,
            },
            payload: b"hi".to_vec(),
        };
        assert_eq!(Envelope::from_bytes(&e.to_bytes()).unwrap(), e);
        let c: Envelope = Envelope::Control(Control::Cut {
            report: Box::new(LocalReport {
                id,
                state: vec![7],
                cut: VClock::from_entries(vec![1, 0, 6]),
                cut_at: Time(5),
                channels: vec![],
                life: 1,
                seen: vec![(NodeId(0), 1)],
                counts: Some(CutCounts {
                    sent: vec![(NodeId(0), 3)],
                    ..CutCounts::default()
                }),
            }),
        });
        assert_eq!(Envelope::from_bytes(&c.to_bytes()).unwrap(), c);
        let lost: Envelope = Envelope::Control(Control::Lost { life: 1, upto: 9 });
        assert_eq!(Envelope::from_bytes(&lost.to_bytes()).unwrap(), lost);
        assert_eq!(Control::Lost { life: 1, upto: 9 }.id(), None);
        assert!(Envelope::<Control>::from_bytes(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn post_cut_is_by_initiator_entry() {
        let id = SnapshotId {
            initiator: NodeId(1),
            s: 3,
        };
        assert!(!id.is_post_cut(&VClock::from_entries(vec![9, 2])));
        assert!(id.is_post_cut(&VClock::from_entries(vec![0, 3])));
        assert_eq!(id.to_string(), "n1@3");
    }
}
