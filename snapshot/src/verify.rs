//! Checks every completed snapshot must pass, coded once and used by tests, the
//! simulator and the runtime:
//!
//! * [`check_cut_consistency`]: for all `i, j`: `cut_j[i] <= cut_i[i]` (no node's cut
//!   has seen an event of another node that lies after that node's own cut);
//! * [`check_channels`]: every recorded message on `i -> j` was sent before `i`'s cut,
//!   and channels only name nodes of the snapshot;
//! * application invariants through the [`Invariant`] trait (see
//!   [`crate::bank::BankInvariant`]); [`check_all`] runs everything.

use shutter_vclock::NodeId;
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
    /// An application invariant failed.
    #[error("invariant {name} violated: {detail}")]
    Invariant {
        /// The invariant's name.
        name: String,
        /// What it found.
        detail: String,
    },
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
    for (&(from, to), msgs) in &snap.channels {
        let (Some(cut_from), true) = (snap.cuts.get(&from), snap.cuts.contains_key(&to)) else {
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

/// Cut consistency, channel sanity, then each invariant in order.
pub fn check_all(
    snap: &GlobalSnapshot,
    invariants: &[&dyn Invariant],
) -> Result<(), Inconsistency> {
    check_cut_consistency(snap)?;
    check_channels(snap)?;
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
}
