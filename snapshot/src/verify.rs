//! Checks every completed snapshot must pass, coded once and used by tests, the
//! simulator and the runtime:
//!
//! * [`check_cut_consistency`]: for all `i, j`: `cut_j[i] <= cut_i[i]` (no node's cut
//!   has seen an event of another node that lies after that node's own cut);
//! * [`check_channels`]: every recorded message on `i -> j` was sent before `i`'s cut,
//!   and channels only name nodes of the snapshot;
//! * [`check_classification`]: the cuts and recorded messages agree with the snapshot's
//!   name `(k, s)`: the initiator's cut is at `s`, every other cut lies before it
//!   (`cut_j[k] < s`), every recorded message is pre-cut (`ts[k] < s`) and no message is
//!   recorded twice;
//! * [`check_counts`]: every channel state is complete and exact: the messages recorded
//!   on `i -> j` plus those `j` delivered before its cut are exactly what `i` sent
//!   before its cut (from the counts both ends took at their cuts);
//! * application invariants through the [`Invariant`] trait (see
//!   [`crate::bank::BankInvariant`]); [`check_all`] runs everything.
//!
//! [`check_structure`] (everything but the application invariants) is what the engines
//! run on every assembled snapshot before they report it complete: a failure becomes an
//! abort ([`crate::AbortWhy::FailedCheck`]), never a completed snapshot.

use shutter_vclock::{NodeId, VClock};
use thiserror::Error;

use crate::global::GlobalSnapshot;

/// What is wrong with a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Inconsistency {
    /// `observer`'s cut has seen `subject`'s event `seen`, after `subject`'s own cut.
    #[error(
        "inconsistent cut: {observer} has seen event {seen} of {subject}, \
         but {subject}'s cut is at {own}"
    )]
    Cut {
        /// The node whose cut clock is too far ahead (`j`).
        observer: NodeId,
        /// The node whose entry is exceeded (`i`).
        subject: NodeId,
        /// `cut_observer[subject]`.
        seen: u64,
        /// `cut_subject[subject]`.
        own: u64,
    },
    /// States and cut clocks do not cover the same nodes.
    #[error("node {0} has a state or a cut clock but not both")]
    Incomplete(NodeId),
    /// A channel names a node that is not part of the snapshot.
    #[error("channel {from}->{to} names a node outside the snapshot")]
    UnknownNode {
        /// Sender side of the channel.
        from: NodeId,
        /// Receiver side of the channel.
        to: NodeId,
    },
    /// A recorded message was sent after its sender's cut, so it cannot be in flight
    /// across the cut.
    #[error("channel {from}->{to} message #{index} was sent after {from}'s cut")]
    PostCutMessage {
        /// Sender.
        from: NodeId,
        /// Receiver.
        to: NodeId,
        /// Position in the recorded channel state.
        index: usize,
    },
    /// A node other than the initiator cut after the snapshot had started: its cut clock
    /// has seen the initiator's event `s` or later.
    #[error(
        "{node}'s cut has seen event {seen} of initiator {initiator}, \
         but the snapshot started at {s}"
    )]
    CutAfterStart {
        /// The node whose cut is too late.
        node: NodeId,
        /// The initiator.
        initiator: NodeId,
        /// `cut_node[initiator]`.
        seen: u64,
        /// The snapshot's `s`.
        s: u64,
    },
    /// The initiator's own cut is not at the `s` that names the snapshot.
    #[error("initiator {initiator}'s cut is at {own}, but the snapshot is named {s}")]
    InitiatorCut {
        /// The initiator.
        initiator: NodeId,
        /// `cut_initiator[initiator]`.
        own: u64,
        /// The snapshot's `s`.
        s: u64,
    },
    /// A recorded message was sent after its sender had joined the snapshot
    /// (`ts[initiator] >= s`), so it is post-cut and belongs to no channel state.
    #[error("channel {from}->{to} message #{index} is post-cut for the snapshot")]
    NotPreCut {
        /// Sender.
        from: NodeId,
        /// Receiver.
        to: NodeId,
        /// Position in the recorded channel state.
        index: usize,
    },
    /// The same send event (`ts[from]`) appears twice in one channel state.
    #[error("channel {from}->{to} holds event {event} of {from} twice")]
    Duplicate {
        /// Sender.
        from: NodeId,
        /// Receiver.
        to: NodeId,
        /// `ts[from]` of the message recorded twice.
        event: u64,
    },
    /// A channel state does not account for what was sent on the channel: `recorded`
    /// messages in it plus `delivered` before the receiver's cut differ from the `sent`
    /// before the sender's cut (`delivered` is `None` if the receiver had heard from a
    /// later life of the sender).
    #[error(
        "channel {from}->{to} is not exact: {from} sent {sent} before its cut, {to} \
         delivered {delivered:?} before its cut and the channel holds {recorded}"
    )]
    Count {
        /// Sender.
        from: NodeId,
        /// Receiver.
        to: NodeId,
        /// Sent before the sender's cut.
        sent: u64,
        /// Delivered before the receiver's cut.
        delivered: Option<u64>,
        /// Recorded in the channel state.
        recorded: u64,
    },
    /// An application invariant failed.
    #[error("invariant {name} violated: {detail}")]
    Invariant {
        /// The invariant's name.
        name: String,
        /// What it found.
        detail: String,
    },
}

impl Inconsistency {
    /// The nodes the finding names (sorted, no duplicates): what an abort reports.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut v = match *self {
            Inconsistency::Cut {
                observer, subject, ..
            } => vec![observer, subject],
            Inconsistency::Incomplete(n) => vec![n],
            Inconsistency::CutAfterStart {
                node, initiator, ..
            } => vec![node, initiator],
            Inconsistency::InitiatorCut { initiator, .. } => vec![initiator],
            Inconsistency::UnknownNode { from, to }
            | Inconsistency::PostCutMessage { from, to, .. }
            | Inconsistency::NotPreCut { from, to, .. }
            | Inconsistency::Duplicate { from, to, .. }
            | Inconsistency::Count { from, to, .. } => vec![from, to],
            Inconsistency::Invariant { .. } => Vec::new(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// An application-level property of a global snapshot (for example conservation of money).
pub trait Invariant {
    /// Short name for error messages.
    fn name(&self) -> &str;
    /// `Err(detail)` if the snapshot violates the property.
    fn check(&self, snapshot: &GlobalSnapshot) -> Result<(), String>;
}

/// For all `i, j`: `cut_j[i] <= cut_i[i]`; names the first offending pair.
pub fn check_cut_consistency(snap: &GlobalSnapshot) -> Result<(), Inconsistency> {
    for n in snap.states.keys() {
        if !snap.cuts.contains_key(n) {
            return Err(Inconsistency::Incomplete(*n));
        }
    }
    for n in snap.cuts.keys() {
        if !snap.states.contains_key(n) {
            return Err(Inconsistency::Incomplete(*n));
        }
    }
    for (&subject, own_cut) in &snap.cuts {
        let own = own_cut.get(subject);
        for (&observer, cut) in &snap.cuts {
            let seen = cut.get(subject);
            if seen > own {
                return Err(Inconsistency::Cut {
                    observer,
                    subject,
                    seen,
                    own,
                });
            }
        }
    }
    Ok(())
}

/// Every recorded message on `i -> j` was sent before `i`'s cut (`ts[i] <= cut_i[i]`)
/// and both ends belong to the snapshot.
pub fn check_channels(snap: &GlobalSnapshot) -> Result<(), Inconsistency> {
    // Channels come sorted by sender, and every ordered pair is present (N² of them):
    // look each sender's cut up once, not once per channel.
    let mut sender: Option<(NodeId, Option<&VClock>)> = None;
    for (&(from, to), msgs) in &snap.channels {
        let cut_from = match sender {
            Some((n, cut)) if n == from => cut,
            _ => {
                let cut = snap.cuts.get(&from);
                sender = Some((from, cut));
                cut
            }
        };
        let (Some(cut_from), true) = (cut_from, snap.cuts.contains_key(&to)) else {
            return Err(Inconsistency::UnknownNode { from, to });
        };
        for (index, m) in msgs.iter().enumerate() {
            if m.ts.get(from) > cut_from.get(from) {
                return Err(Inconsistency::PostCutMessage { from, to, index });
            }
        }
    }
    Ok(())
}

/// The cuts and channel states agree with the snapshot's name `(k, s)`: `cut_k[k] = s`,
/// `cut_j[k] < s` for every other node `j`, every recorded message has `ts[k] < s`, and
/// no send event is recorded twice on a channel.
pub fn check_classification(snap: &GlobalSnapshot) -> Result<(), Inconsistency> {
    let (k, s) = (snap.id.initiator, snap.id.s);
    for (&node, cut) in &snap.cuts {
        let seen = cut.get(k);
        if node == k && seen != s {
            return Err(Inconsistency::InitiatorCut {
                initiator: k,
                own: seen,
                s,
            });
        }
        if node != k && seen >= s {
            return Err(Inconsistency::CutAfterStart {
                node,
                initiator: k,
                seen,
                s,
            });
        }
    }
    for (&(from, to), msgs) in &snap.channels {
        let mut events = std::collections::BTreeSet::new();
        for (index, m) in msgs.iter().enumerate() {
            if snap.id.is_post_cut(&m.ts) {
                return Err(Inconsistency::NotPreCut { from, to, index });
            }
            let event = m.ts.get(from);
            if !events.insert(event) {
                return Err(Inconsistency::Duplicate { from, to, event });
            }
        }
    }
    Ok(())
}

/// Every channel state is complete and exact: for each channel `i -> j`, the messages
/// recorded plus those `j` delivered before its cut are exactly the `sent` before `i`'s
/// cut. With the cut consistent (every message delivered before `j`'s cut was sent
/// before `i`'s) and delivery exactly once, that means every pre-cut message is either
/// on the receiver's side of the cut or in the channel state, and nothing else is.
/// Where the sender declared messages lost for good (its session with the receiver
/// ended), the channel may hold fewer, never more. Snapshots whose parts carried no
/// counts (`counts` empty) pass.
pub fn check_counts(snap: &GlobalSnapshot) -> Result<(), Inconsistency> {
    for (&(from, to), c) in &snap.counts {
        let recorded = snap.channels.get(&(from, to)).map_or(0, Vec::len) as u64;
        let accounted = c.delivered.map(|d| d.saturating_add(recorded));
        let exact = match accounted {
            Some(a) if c.lossy => a <= c.sent,
            Some(a) => a == c.sent,
            None => false,
        };
        if !exact {
            return Err(Inconsistency::Count {
                from,
                to,
                sent: c.sent,
                delivered: c.delivered,
                recorded,
            });
        }
    }
    Ok(())
}

/// Everything but the application invariants: cut consistency, channel sanity,
/// classification and exact channel counts. Engines run this before reporting a
/// snapshot complete.
pub fn check_structure(snap: &GlobalSnapshot) -> Result<(), Inconsistency> {
    check_cut_consistency(snap)?;
    check_channels(snap)?;
    check_classification(snap)?;
    check_counts(snap)
}

/// Runs `invariant` and wraps its failure.
pub fn check_invariant(
    snap: &GlobalSnapshot,
    invariant: &dyn Invariant,
) -> Result<(), Inconsistency> {
    invariant
        .check(snap)
        .map_err(|detail| Inconsistency::Invariant {
            name: invariant.name().to_owned(),
            detail,
        })
}

/// [`check_structure`], then each invariant in order.
pub fn check_all(
    snap: &GlobalSnapshot,
    invariants: &[&dyn Invariant],
) -> Result<(), Inconsistency> {
    check_structure(snap)?;
    for inv in invariants {
        check_invariant(snap, *inv)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shutter_vclock::VClock;

    use super::*;
    use crate::global::Timings;
    use crate::wire::{RecordedMessage, SnapshotId};

    fn snap(cuts: &[&[u64]]) -> GlobalSnapshot {
        let mut s = GlobalSnapshot {
            id: SnapshotId {
                initiator: NodeId(0),
                s: 1,
            },
            states: BTreeMap::new(),
            cuts: BTreeMap::new(),
            channels: BTreeMap::new(),
            timings: Timings::default(),
            control_messages: 0,
            counts: Default::default(),
        };
        for (i, c) in cuts.iter().enumerate() {
            s.states.insert(NodeId(i as u32), vec![]);
            s.cuts
                .insert(NodeId(i as u32), VClock::from_entries(c.to_vec()));
        }
        s
    }

    #[test]
    fn names_the_offending_pair() {
        assert_eq!(check_cut_consistency(&snap(&[&[2, 0], &[1, 3]])), Ok(()));
        assert_eq!(
            check_cut_consistency(&snap(&[&[2, 0], &[3, 3]])),
            Err(Inconsistency::Cut {
                observer: NodeId(1),
                subject: NodeId(0),
                seen: 3,
                own: 2
            })
        );
    }

    #[test]
    fn channel_message_after_sender_cut_is_rejected() {
        let mut s = snap(&[&[2, 0], &[1, 3]]);
        s.channels.insert(
            (NodeId(0), NodeId(1)),
            vec![RecordedMessage {
                ts: VClock::from_entries(vec![3]),
                payload: vec![],
            }],
        );
        let e = check_channels(&s).unwrap_err();
        assert!(matches!(e, Inconsistency::PostCutMessage { index: 0, .. }));
        s.channels.clear();
        s.channels.insert((NodeId(0), NodeId(9)), vec![]);
        assert!(matches!(
            check_channels(&s),
            Err(Inconsistency::UnknownNode { .. })
        ));
    }

    #[test]
    fn classification_follows_the_snapshot_name() {
        // Snapshot n0@1: n0's cut is at 1, n1's before it.
        let ok = snap(&[&[1, 0], &[0, 3]]);
        assert_eq!(check_structure(&ok), Ok(()));
        // A restarted initiator reusing s: n1 has seen n0's event 3 of an earlier life.
        let e = check_classification(&snap(&[&[1, 0], &[3, 3]])).unwrap_err();
        assert!(
            matches!(e, Inconsistency::CutAfterStart { seen: 3, .. }),
            "{e}"
        );
        assert_eq!(e.nodes(), vec![NodeId(0), NodeId(1)]);
        let e = check_classification(&snap(&[&[2, 0], &[0, 3]])).unwrap_err();
        assert!(
            matches!(e, Inconsistency::InitiatorCut { own: 2, .. }),
            "{e}"
        );
        let m = |ts: Vec<u64>| RecordedMessage {
            ts: VClock::from_entries(ts),
            payload: vec![],
        };
        let mut post = ok.clone();
        post.channels
            .insert((NodeId(1), NodeId(0)), vec![m(vec![1, 2])]);
        assert!(matches!(
            check_classification(&post),
            Err(Inconsistency::NotPreCut { index: 0, .. })
        ));
        let mut twice = ok;
        twice
            .channels
            .insert((NodeId(1), NodeId(0)), vec![m(vec![0, 2]), m(vec![0, 2])]);
        assert!(matches!(
            check_structure(&twice),
            Err(Inconsistency::Duplicate { event: 2, .. })
        ));
    }

    #[test]
    fn invariant_failure_is_wrapped() {
        struct Never;
        impl Invariant for Never {
            fn name(&self) -> &str {
                "never"
            }
            fn check(&self, _: &GlobalSnapshot) -> Result<(), String> {
                Err("nope".into())
            }
        }
        let e = check_all(&snap(&[&[1]]), &[&Never]).unwrap_err();
        assert_eq!(e.to_string(), "invariant never violated: nope");
    }

    #[test]
    fn counts_prove_channel_states_exact() {
        use crate::global::ChannelCount;
        use crate::wire::RecordedMessage;
        let mut s = snap(&[&[1, 0], &[0, 1]]);
        let msg = RecordedMessage {
            ts: VClock::from_entries(vec![1]),
            payload: vec![7],
        };
        s.channels.insert((NodeId(0), NodeId(1)), vec![msg]);
        let count = |sent, delivered, lossy| ChannelCount {
            sent,
            delivered: Some(delivered),
            lossy,
        };
        // Sent 3 before the cut: 2 delivered before the receiver's cut, 1 in the channel.
        s.counts.insert((NodeId(0), NodeId(1)), count(3, 2, false));
        assert_eq!(check_counts(&s), Ok(()));
        // One pre-cut message is neither delivered nor recorded: missing.
        s.counts.insert((NodeId(0), NodeId(1)), count(4, 2, false));
        let e = check_counts(&s).unwrap_err();
        assert!(e.to_string().contains("not exact"), "{e}");
        assert_eq!(e.nodes(), vec![NodeId(0), NodeId(1)]);
        // ... unless the sender declared it lost for good.
        s.counts.insert((NodeId(0), NodeId(1)), count(4, 2, true));
        assert_eq!(check_counts(&s), Ok(()));
        // Never more than was sent, lost or not.
        s.counts.insert((NodeId(0), NodeId(1)), count(2, 2, true));
        assert!(check_counts(&s).is_err());
        // A receiver that heard from a later life of the sender: unknown, refused.
        s.counts.insert(
            (NodeId(0), NodeId(1)),
            ChannelCount {
                sent: 3,
                delivered: None,
                lossy: false,
            },
        );
        assert!(check_structure(&s).is_err());
    }
}
