//! Cluster-wide rollback to the newest snapshot every member holds durably, sans-IO.
//!
//! A node that comes back after a crash has lost its memory; the others have not, so
//! their states and the messages in flight no longer add up (the bank's money). The
//! cure is Flink's: every member rolls back to the same committed snapshot. This module
//! is the agreement, in four rounds led by a coordinator (the restarted node, or any node
//! whose rollback stalled):
//!
//! 1. `Halt { epoch }`: every member stops its application (no ticks, no sends, incoming
//!    application and snapshot messages dropped until it has restored) and answers
//!    `Halted` with the ids of the checkpoints it holds ([`crate::checkpoint`]);
//! 2. the coordinator picks the newest id every member holds and sends `Restore`;
//! 3. each member restores its part (state, cut clock, recorded incoming messages
//!    delivered again exactly once) with a new engine life, and answers `Restored`;
//! 4. `Resume`: everyone runs again.
//!
//! Nobody sends application messages between `Halt` and `Resume`, so after `Resume` every
//! member runs from the snapshot and nothing sent before it can reach a restored process:
//! such stragglers carry an engine life below the epoch and are dropped
//! (`Recovery::admits`). Epochs are wall-clock microseconds of the coordinator (made
//! larger than any seen, ties broken by node id); a higher epoch supersedes a lower one
//! at every member, so a coordinator that crashes midway is replaced by whichever member
//! times out first, and a rollback that restarts simply restores again. A member that
//! is down holds every round up; its restart starts a new epoch. Mattern only (the
//! engine must resume from a cut clock).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shutter_transport::Time;
use shutter_vclock::NodeId;

use crate::wire::SnapshotId;

/// The opening checkpoint every node writes before its process first runs: its
/// initial state with empty channels. Together they are a consistent snapshot (no
/// message was sent before any of them), so a rollback always has something every
/// member holds, even before the cluster's first snapshot committed everywhere. Real
/// snapshot ids never have `s == 0`.
pub const GENESIS: SnapshotId = SnapshotId {
    initiator: NodeId(0),
    s: 0,
};

/// A rollback round: `(epoch, coordinator)`, ordered; the larger supersedes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch {
    /// Wall-clock microseconds at the coordinator (at least one above any epoch seen).
    pub at: u64,
    /// The coordinator.
    pub by: NodeId,
}

/// The rollback protocol's messages (carried in [`crate::wire::Envelope::Recovery`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoveryMsg {
    /// Coordinator to all: stop and say which checkpoints you hold.
    Halt(Epoch),
    /// Member to coordinator: halted; these snapshot ids are durable here.
    Halted(Epoch, Vec<SnapshotId>),
    /// Coordinator to all: restore your part of `id`.
    Restore(Epoch, SnapshotId),
    /// Member to coordinator: restored (or, with `false`, could not: its part is gone).
    Restored(Epoch, bool),
    /// Coordinator to all: run again. `None`: no snapshot is held by every member, so
    /// nothing was restored and every member keeps the state it had.
    Resume(Epoch, Option<SnapshotId>),
}

/// What the recovery asks of its stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send `msg` to `to`.
    Send(NodeId, RecoveryMsg),
    /// Restore this node's part of the snapshot (the host reads it from its store).
    Restore(Epoch, SnapshotId),
    /// Run again; `Some` if the cluster rolled back to that snapshot.
    Resumed(Epoch, Option<SnapshotId>),
}

/// Where this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Halted for `epoch` (restored already if `restored`), since `since`.
    Halted {
        epoch: Epoch,
        restored: bool,
        since: Time,
    },
}

/// The coordinator's view of its round.
#[derive(Debug)]
struct Round {
    epoch: Epoch,
    /// The snapshot an operator asked for (`None`: the newest every member holds).
    wanted: Option<SnapshotId>,
    halted: BTreeMap<NodeId, Vec<SnapshotId>>,
    target: Option<SnapshotId>,
    restored: BTreeSet<NodeId>,
}

/// One node's side of the rollback protocol (coordinator and member).
#[derive(Debug)]
pub(crate) struct Recovery {
    me: NodeId,
    /// Every member, this node included, sorted.
    members: Vec<NodeId>,
    /// How long a halted member waits before it takes over as coordinator.
    patience: Duration,
    phase: Phase,
    /// The highest epoch seen.
    seen: Option<Epoch>,
    /// Application messages of engine lives below this are from before the last
    /// rollback: dropped.
    floor: u64,
    round: Option<Round>,
    /// Snapshot ids this node holds durably, newest last (set by the host).
    durable: Vec<SnapshotId>,
    actions: VecDeque<Action>,
}

impl Recovery {
    pub(crate) fn new(me: NodeId, members: &[NodeId], patience: Duration) -> Self {
        let mut members = members.to_vec();
        members.push(me);
        members.sort_unstable();
        members.dedup();
        Recovery {
            me,
            members,
            patience,
            phase: Phase::Running,
            seen: None,
            floor: 0,
            round: None,
            durable: Vec::new(),
            actions: VecDeque::new(),
        }
    }

    /// True while the application must not run.
    pub(crate) fn is_halted(&self) -> bool {
        self.phase != Phase::Running
    }

    /// True if application and snapshot traffic may reach the node: it runs, or it has
    /// restored its part in the current round already (members that resumed first
    /// send in their new lives, and those messages must not be lost).
    pub(crate) fn accepts_traffic(&self) -> bool {
        matches!(
            self.phase,
            Phase::Running | Phase::Halted { restored: true, .. }
        )
    }

    /// True if an application message from an engine life `life` may be delivered.
    pub(crate) fn admits(&self, life: u64) -> bool {
        life >= self.floor
    }

    /// The engine life a restore in `epoch` must use at least.
    pub(crate) fn min_life(epoch: Epoch) -> u64 {
        epoch.at.saturating_add(1)
    }

    pub(crate) fn set_durable(&mut self, ids: Vec<SnapshotId>) {
        self.durable = ids;
    }

    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        match self.phase {
            Phase::Halted { since, .. } => Some(since + self.patience),
            Phase::Running => None,
        }
    }

    /// Starts a round coordinated here, at wall-clock (or virtual) microsecond `clock`,
    /// to `wanted` if given (it must be held by every member), else to the newest
    /// snapshot every member holds.
    pub(crate) fn start(&mut self, now: Time, clock: u64, wanted: Option<SnapshotId>) {
        let at = clock.max(self.seen.map_or(0, |e| e.at.saturating_add(1)));
        let epoch = Epoch { at, by: self.me };
        self.round = Some(Round {
            epoch,
            wanted,
            halted: BTreeMap::new(),
            target: None,
            restored: BTreeSet::new(),
        });
        for &n in &self.members {
            if n != self.me {
                self.actions
                    .push_back(Action::Send(n, RecoveryMsg::Halt(epoch)));
            }
        }
        // The coordinator halts itself like any member.
        self.on_msg(now, self.me, RecoveryMsg::Halt(epoch));
    }

    /// A member stalled past its patience takes over with a new round.
    pub(crate) fn handle_timeout(&mut self, now: Time, clock: u64) {
        if let Phase::Halted { since, .. } = self.phase
            && since + self.patience <= now
        {
            tracing::warn!(node = %self.me, "rollback stalled; coordinating a new round");
            self.start(now, clock, None);
        }
    }

    /// The host restored this node's part of `id` for `epoch` (`ok`: it could).
    pub(crate) fn restored(&mut self, now: Time, epoch: Epoch, ok: bool) {
        if let Phase::Halted {
            epoch: e,
            restored,
            since,
        } = &mut self.phase
            && *e == epoch
        {
            *restored = true;
            *since = now;
            if ok {
                self.floor = Self::min_life(epoch);
            }
            self.reply(now, epoch.by, RecoveryMsg::Restored(epoch, ok));
        }
    }

    fn reply(&mut self, now: Time, to: NodeId, msg: RecoveryMsg) {
        if to == self.me {
            self.on_msg(now, self.me, msg);
        } else {
            self.actions.push_back(Action::Send(to, msg));
        }
    }

    /// A recovery message from `from` (members only; the stack checks).
    pub(crate) fn on_msg(&mut self, now: Time, from: NodeId, msg: RecoveryMsg) {
        match msg {
            RecoveryMsg::Halt(epoch) => {
                if from != epoch.by || self.seen.is_some_and(|s| s > epoch) {
                    return;
                }
                self.seen = Some(epoch);
                if self.round.as_ref().is_some_and(|r| r.epoch < epoch) {
                    // A newer round supersedes ours.
                    self.round = None;
                }
                self.phase = Phase::Halted {
                    epoch,
                    restored: false,
                    since: now,
                };
                let have = self.durable.clone();
                self.reply(now, epoch.by, RecoveryMsg::Halted(epoch, have));
            }
            RecoveryMsg::Halted(epoch, have) => {
                let Some(round) = self.round.as_mut().filter(|r| r.epoch == epoch) else {
                    return;
                };
                round.halted.insert(from, have);
                if round.halted.len() < self.members.len() || round.target.is_some() {
                    return;
                }
                // The newest id every member holds ("newest" by this node's own order of
                // commits, which is the order it learned of completions).
                let common = |id: &SnapshotId| round.halted.values().all(|h| h.contains(id));
                let target = match round.wanted {
                    Some(id) => common(&id).then_some(id),
                    None => round.halted[&self.me]
                        .iter()
                        .rev()
                        .find(|id| common(id))
                        .copied(),
                };
                match target {
                    Some(id) => {
                        round.target = Some(id);
                        for &n in &self.members {
                            if n != self.me {
                                self.actions
                                    .push_back(Action::Send(n, RecoveryMsg::Restore(epoch, id)));
                            }
                        }
                        self.on_msg(now, self.me, RecoveryMsg::Restore(epoch, id));
                    }
                    None => {
                        tracing::error!(node = %self.me, "no checkpoint is held by every member: nothing to roll back to");
                        self.resume_all(now, epoch, None);
                    }
                }
            }
            RecoveryMsg::Restore(epoch, id) => {
                if from != epoch.by
                    || !matches!(self.phase, Phase::Halted { epoch: e, .. } if e == epoch)
                {
                    return;
                }
                self.actions.push_back(Action::Restore(epoch, id));
            }
            RecoveryMsg::Restored(epoch, ok) => {
                let Some(round) = self.round.as_mut().filter(|r| r.epoch == epoch) else {
                    return;
                };
                if !ok {
                    // A member lost its part between Halted and Restore: start over.
                    tracing::warn!(node = %self.me, member = %from, "a member could not restore; restarting the rollback");
                    let at = epoch.at.saturating_add(1);
                    self.start(now, at, None);
                    return;
                }
                round.restored.insert(from);
                if round.restored.len() == self.members.len() {
                    let target = round.target;
                    self.resume_all(now, epoch, target);
                }
            }
            RecoveryMsg::Resume(epoch, target) => {
                if from != epoch.by
                    || !matches!(self.phase, Phase::Halted { epoch: e, .. } if e == epoch)
                {
                    return;
                }
                self.phase = Phase::Running;
                self.actions.push_back(Action::Resumed(epoch, target));
            }
        }
    }

    fn resume_all(&mut self, now: Time, epoch: Epoch, target: Option<SnapshotId>) {
        self.round = None;
        for &n in &self.members {
            if n != self.me {
                self.actions
                    .push_back(Action::Send(n, RecoveryMsg::Resume(epoch, target)));
            }
        }
        self.on_msg(now, self.me, RecoveryMsg::Resume(epoch, target));
    }
}
