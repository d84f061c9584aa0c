//! The ground-truth event log: every application send (identified by `(sender,
//! ts[sender])` from its header), every delivery, every local cut with the process's own
//! counts at that instant, every transport restart, and every snapshot outcome. Checks
//! compare what the engines report against this log, never against the engines' own
//! bookkeeping.

use std::collections::{BTreeMap, BTreeSet};

use shutter_snapshot::{AbortReason, SnapshotId};
use shutter_transport::Time;
use shutter_transport::core::MessageId;
use shutter_vclock::{NodeId, VClock};

use super::node::Mark;

/// Identity of one application message: its sender and the sender's own clock entry in
/// its timestamp (unique because every send ticks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgKey {
    /// Sender.
    pub from: NodeId,
    /// `ts[from]` of the message.
    pub seq: u64,
}

/// One application send.
#[derive(Clone, Debug)]
pub struct SentMsg {
    /// Receiver.
    pub to: NodeId,
    /// 1-based position among the sender's sends.
    pub ord: u64,
    /// Virtual send time.
    pub at: Time,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// One delivery to the application.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    /// Receiver.
    pub at_node: NodeId,
    /// 1-based position among the receiver's deliveries.
    pub ord: u64,
    /// Virtual time.
    pub at: Time,
}

/// A local cut as it really happened.
#[derive(Clone, Debug)]
pub struct CutRec {
    /// Counts and state at the cut.
    pub mark: Mark,
    /// The clock the engine reported with its `LocalCut` event.
    pub clock: VClock,
    /// Virtual time.
    pub at: Time,
    /// The node's life at the cut: how many real crashes it had been through.
    pub life: u32,
}

/// The log.
#[derive(Debug, Default)]
pub struct Oracle {
    /// Every send, by identity.
    pub sends: BTreeMap<MsgKey, SentMsg>,
    /// Every delivery of each message (more than one is a bug).
    pub deliveries: BTreeMap<MsgKey, Vec<Received>>,
    /// Every local cut, by snapshot and node: one per life of the node at most (a new
    /// process cannot know its dead predecessor joined, and may join again).
    pub cuts: BTreeMap<(SnapshotId, NodeId), Vec<CutRec>>,
    /// Transport outages `(down, up)` per node (transport restarts and real crashes).
    pub restarts: BTreeMap<NodeId, Vec<(Time, Time)>>,
    /// Real crashes per node, in order: `(when, balance the dead process held, opening
    /// balance of the next life)`. The first is destroyed money, the second created.
    pub crashes: BTreeMap<NodeId, Vec<(Time, u64, u64)>>,
    /// The life of a node in which it emitted its (last) abort of a snapshot.
    pub abort_lives: BTreeMap<(SnapshotId, NodeId), u32>,
    /// For completed snapshots, the life of each node whose cut the snapshot holds.
    pub used_lives: BTreeMap<(SnapshotId, NodeId), u32>,
    /// Snapshots started, with the initiation time.
    pub initiated: BTreeMap<SnapshotId, Time>,
    /// Snapshots completed (at the initiator).
    pub completed: BTreeMap<SnapshotId, Time>,
    /// Abort events, by snapshot: who emitted them and why.
    pub aborted: BTreeMap<SnapshotId, Vec<(NodeId, AbortReason)>>,
    /// Messages the transport declared abandoned (receiver restarted).
    pub abandoned: BTreeSet<MsgKey>,
    /// Application messages handed back to their sender's process (refunded), with the
    /// sender's count of returns at that moment (compared with [`Mark::returned`]).
    ///
    /// [`Mark::returned`]: super::node::Mark::returned
    pub returned: BTreeMap<MsgKey, u64>,
    /// Transport ids of unacknowledged application messages: `(sender, receiver, id)`.
    pub in_transport: BTreeMap<(NodeId, NodeId, MessageId), MsgKey>,
    /// Violations found while logging (duplicate identities and the like).
    pub violations: Vec<String>,
    send_count: BTreeMap<NodeId, u64>,
    delivery_count: BTreeMap<NodeId, u64>,
    return_count: BTreeMap<NodeId, u64>,
}

impl Oracle {
    /// Logs a send; returns its ordinal at the sender.
    pub fn send(&mut self, now: Time, from: NodeId, to: NodeId, ts: &VClock, payload: &[u8]) {
        self.send_seq(now, from, to, ts.get(from), payload.to_vec());
    }

    /// [`Oracle::send`] of the message whose timestamp reads `seq` at `from` (all the
    /// oracle takes of a timestamp), keeping `payload` without a copy.
    pub fn send_seq(&mut self, now: Time, from: NodeId, to: NodeId, seq: u64, payload: Vec<u8>) {
        let ord = {
            let c = self.send_count.entry(from).or_default();
            *c += 1;
            *c
        };
        let key = MsgKey { from, seq };
        let msg = SentMsg {
            to,
            ord,
            at: now,
            payload,
        };
        if self.sends.insert(key, msg).is_some() {
            self.violations.push(format!(
                "two sends share identity {key:?} (clock did not tick)"
            ));
        }
    }

    /// Logs a delivery to `to`'s application of the message stamped `ts` from `from`.
    pub fn deliver(&mut self, now: Time, to: NodeId, from: NodeId, ts: &VClock, payload: &[u8]) {
        self.deliver_seq(now, to, from, ts.get(from), payload);
    }

    /// [`Oracle::deliver`] of the message whose timestamp reads `seq` at `from`.
    pub fn deliver_seq(&mut self, now: Time, to: NodeId, from: NodeId, seq: u64, payload: &[u8]) {
        let ord = {
            let c = self.delivery_count.entry(to).or_default();
            *c += 1;
            *c
        };
        let key = MsgKey { from, seq };
        match self.sends.get(&key) {
            None => self
                .violations
                .push(format!("{to} delivered {key:?}, which was never sent")),
            Some(s) if s.to != to || s.payload != payload => self.violations.push(format!(
                "{to} delivered {key:?} but it was sent to {} with other bytes",
                s.to
            )),
            Some(_) => {}
        }
        let list = self.deliveries.entry(key).or_default();
        list.push(Received {
            at_node: to,
            ord,
            at: now,
        });
        let count = list.len();
        if count > 1 {
            self.violations
                .push(format!("{key:?} delivered {count} times"));
        }
    }

    /// Logs that `key`'s sender got it back as undeliverable.
    pub fn returned(&mut self, key: MsgKey) {
        let ord = {
            let c = self.return_count.entry(key.from).or_default();
            *c += 1;
            *c
        };
        if self.returned.insert(key, ord).is_some() {
            self.violations
                .push(format!("{key:?} handed back to its sender twice"));
        }
    }

    /// True if `key` went back to its sender no later than the sender's `returned`-th
    /// return (before its cut, for a cut's [`Mark::returned`]).
    ///
    /// [`Mark::returned`]: super::node::Mark::returned
    pub fn returned_by(&self, key: &MsgKey, returned: u64) -> bool {
        self.returned.get(key).is_some_and(|&ord| ord <= returned)
    }

    /// Logs a real crash of `node`, whose process held `held` and whose next life opens
    /// with `fresh`.
    pub fn crash(&mut self, node: NodeId, at: Time, held: u64, fresh: u64) {
        self.crashes
            .entry(node)
            .or_default()
            .push((at, held, fresh));
    }

    /// True if `node` crashed for real (all memory lost) at or after `t`.
    pub fn really_crashed_since(&self, node: NodeId, t: Time) -> bool {
        self.crashes
            .get(&node)
            .is_some_and(|c| c.iter().any(|&(at, _, _)| at >= t))
    }

    /// Money created minus money destroyed by the first `lives` real crashes of `node`
    /// (all of them with `u32::MAX`).
    pub fn crash_money(&self, node: NodeId, lives: u32) -> i128 {
        self.crashes.get(&node).map_or(0, |c| {
            c.iter()
                .take(lives as usize)
                .map(|&(_, held, fresh)| i128::from(fresh) - i128::from(held))
                .sum()
        })
    }

    /// The cut of `node` in snapshot `id` whose clock is `clock` (the one a report used).
    pub fn cut_with_clock(&self, id: SnapshotId, node: NodeId, clock: &VClock) -> Option<&CutRec> {
        self.cuts
            .get(&(id, node))
            .and_then(|v| v.iter().find(|c| c.clock == *clock))
    }

    /// Sends counted by the simulator for `node`.
    pub fn sends_of(&self, node: NodeId) -> u64 {
        self.send_count.get(&node).copied().unwrap_or(0)
    }

    /// Deliveries counted by the simulator for `node`.
    pub fn deliveries_of(&self, node: NodeId) -> u64 {
        self.delivery_count.get(&node).copied().unwrap_or(0)
    }

    /// True if `node`'s transport crashed at or after `t` (losing what it held).
    pub fn crashed_since(&self, node: NodeId, t: Time) -> bool {
        self.restarts
            .get(&node)
            .is_some_and(|v| v.iter().any(|&(down, _)| down >= t))
    }

    /// Whether an undelivered message is excused: its sender's transport crashed after
    /// sending it, or the transport reported it abandoned (receiver restarted).
    pub fn loss_excused(&self, key: &MsgKey) -> bool {
        self.abandoned.contains(key)
            || self
                .sends
                .get(key)
                .is_some_and(|s| self.crashed_since(key.from, s.at))
    }
}
