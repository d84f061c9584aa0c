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
//!
//! # Removing a member
//!
//! A member that is dead for good would hold every round (and every snapshot) up, so an
//! operator removes it ([`crate::stack::Stack::request_removal`]). That is a round too,
//! in the manner of Flink rescaling from a checkpoint: the removed node is not asked, the
//! others go back to the newest snapshot they all hold *and* whose removed part one of
//! them holds (the initiator of a snapshot keeps every member's part as a replica), and
//! that one, the heir, takes the removed node's state and the messages that were in
//! flight to it ([`crate::process::Process::on_inherit`]: the bank adds the money). So
//! nothing is lost or created, and later snapshots no longer wait for the removed node.
//! A member that learnt of a pending removal keeps it across a coordinator's crash: the
//! round it starts on timeout removes the same node.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shutter_transport::Time;
use shutter_vclock::NodeId;

use crate::wire::{LocalReport, SnapshotId};

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

/// A member leaving for good, and the member that inherits its part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Removal {
    /// The member that leaves.
    pub node: NodeId,
    /// The member that holds its part of the target snapshot and takes it over.
    pub heir: NodeId,
}

/// A membership change a round makes besides rolling back.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change {
    /// `node` leaves for good (it is not asked); `heir` takes over its part, chosen by
    /// the coordinator once every other member answered (`None` until then).
    Remove {
        /// The member that leaves.
        node: NodeId,
        /// Who inherits its part.
        heir: Option<NodeId>,
    },
    /// `node` joins with a fresh process (started to join: it waits for this round),
    /// reachable at `addr` (`IP:PORT`).
    Add {
        /// The new member.
        node: NodeId,
        /// Its UDP address.
        addr: String,
        /// The membership after the change, as the coordinator knows it: the new
        /// member adopts it (its own list may name members removed meanwhile).
        members: Vec<NodeId>,
    },
}

impl Change {
    /// The member that leaves or joins.
    pub fn node(&self) -> NodeId {
        match self {
            Change::Remove { node, .. } | Change::Add { node, .. } => *node,
        }
    }

    /// The removal with its heir, once chosen.
    pub fn removal(&self) -> Option<Removal> {
        match self {
            Change::Remove {
                node,
                heir: Some(heir),
            } => Some(Removal {
                node: *node,
                heir: *heir,
            }),
            _ => None,
        }
    }

    /// True if `other` is the same change (the same kind for the same node; a
    /// removal's heir and an addition's membership may differ between rounds).
    pub fn same(&self, other: &Change) -> bool {
        matches!(
            (self, other),
            (Change::Remove { node: a, .. }, Change::Remove { node: b, .. })
                | (Change::Add { node: a, .. }, Change::Add { node: b, .. }) if a == b
        )
    }

    /// The membership after the change.
    pub fn apply(&self, members: &[NodeId]) -> Vec<NodeId> {
        if let Change::Add { members, .. } = self {
            return members.clone();
        }
        let mut out: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|n| !matches!(self, Change::Remove { node, .. } if node == n))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The rollback protocol's messages (carried in [`crate::wire::Envelope::Recovery`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoveryMsg {
    /// Coordinator to all: stop and say which checkpoints you hold; with a change, the
    /// round also removes or adds that member.
    Halt(Epoch, Option<Change>),
    /// Member to coordinator: halted; these snapshot ids are durable here, and of these,
    /// per other member (the removed one included), those of which it also holds that
    /// member's part as a replica.
    Halted(Epoch, Vec<SnapshotId>, ReplicaIds),
    /// Coordinator to all: restore your part of `id` (in a removal round the heir also
    /// takes over the removed member's part; a joining member starts from its fresh
    /// state), and apply the change. `(member, supplier)`: a member that does not hold
    /// its part gets it from the supplier's replica ([`RecoveryMsg::Part`]).
    Restore(Epoch, SnapshotId, Option<Change>, Supply),
    /// Supplier to a member that lacks its part of the round's snapshot: the part, from
    /// the replica the supplier (its initiator) keeps; `None` if it is gone.
    Part(Epoch, Option<Box<LocalReport>>),
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
    /// Restore this node's part of the snapshot (the host reads it from its store, or
    /// it came from a supplier), apply the change if any, and send these members their
    /// parts from this node's replicas.
    Restore(Restoring),
    /// A member is joining at this address: the host must be able to reach it.
    Joining(NodeId, String),
    /// Run again; `Some` if the cluster rolled back to that snapshot.
    Resumed(Epoch, Option<SnapshotId>),
}

/// A restore the host is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Restoring {
    pub epoch: Epoch,
    pub id: SnapshotId,
    pub change: Option<Change>,
    /// Members this node supplies with their part of `id`.
    pub supply: Vec<NodeId>,
    /// This node's part, from a supplier (its store does not hold it).
    pub supplied: Option<LocalReport>,
}

/// Where this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// A new process started to join: waits for the round that adds it.
    Joining,
    /// Halted for `epoch` (restored already if `restored`), since `since`.
    Halted {
        epoch: Epoch,
        restored: bool,
        since: Time,
    },
}

/// Per other member, the snapshot ids of which a node holds that member's part.
pub type ReplicaIds = Vec<(NodeId, Vec<SnapshotId>)>;

/// `(member, supplier)`: who sends whom its part in a round.
pub type Supply = Vec<(NodeId, NodeId)>;

/// The coordinator's view of its round.
#[derive(Debug)]
struct Round {
    epoch: Epoch,
    /// The snapshot an operator asked for (`None`: the newest every member holds).
    wanted: Option<SnapshotId>,
    /// The membership change this round makes, if any.
    change: Option<Change>,
    /// Who takes part: every member but the one removed, and the one joining.
    quorum: Vec<NodeId>,
    /// Per member: the ids it holds, and per other member those of which it holds a
    /// replica of that member's part.
    halted: BTreeMap<NodeId, (Vec<SnapshotId>, ReplicaIds)>,
    target: Option<SnapshotId>,
    restored: BTreeSet<NodeId>,
}

impl Round {
    /// The snapshot to go back to, once every member halted: the one asked for, else the
    /// newest (by the coordinator's own order of commits, then the others', the genesis
    /// checkpoints last) that every
    /// member holds or can be supplied with, and in a removal round whose removed part
    /// a member holds (the lowest such member inherits it). A member without its part
    /// gets it from a replica: the initiator of a snapshot keeps every part of it, so its
    /// newest one fits even while its `Done`s are still on their way (they are dropped
    /// while halted) and the members' older ones are pruned at the initiator.
    /// Returns `(id, the round's change with the heir named, [(member, supplier)])`.
    fn choose(&self, me: NodeId) -> Option<(SnapshotId, Option<Change>, Supply)> {
        let joiner = match &self.change {
            Some(Change::Add { node, .. }) => Some(*node),
            _ => None,
        };
        let removing = match &self.change {
            Some(Change::Remove { node, .. }) => Some(*node),
            _ => None,
        };
        // Who holds a replica of `node`'s part of `id` (the lowest such member).
        let holder = |node: NodeId, id: &SnapshotId| {
            self.halted
                .iter()
                .find(|(n, (_, r))| {
                    **n != node && r.iter().any(|(m, ids)| *m == node && ids.contains(id))
                })
                .map(|(n, _)| *n)
        };
        let fits = |id: &SnapshotId| {
            let change = match removing {
                Some(node) => Some(Change::Remove {
                    node,
                    heir: Some(holder(node, id)?),
                }),
                None => self.change.clone(),
            };
            let mut supply = Vec::new();
            for (n, (have, _)) in &self.halted {
                if Some(*n) == joiner || have.contains(id) {
                    continue;
                }
                supply.push((*n, holder(*n, id)?));
            }
            Some((*id, change, supply))
        };
        if let Some(id) = self.wanted {
            return fits(&id);
        }
        // The genesis checkpoints last: any real snapshot that fits is newer.
        let mine = self.halted.get(&me).map(|(h, _)| h.iter().rev());
        let others = self
            .halted
            .iter()
            .filter(|(n, _)| **n != me)
            .flat_map(|(_, (h, _))| h.iter().rev());
        mine.into_iter()
            .flatten()
            .chain(others)
            .filter(|id| **id != GENESIS)
            .chain([&GENESIS])
            .find_map(fits)
    }
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
    /// Per other member, the snapshot ids of which this node holds that member's part.
    replicas: BTreeMap<NodeId, Vec<SnapshotId>>,
    /// Changes learnt from `Halt`s and not finished yet, oldest first (a round for
    /// another change may supersede one; it is taken up again afterwards).
    pending: Vec<Change>,
    /// The change of the round this node is halted in.
    current: Option<Change>,
    /// Running with changes pending since then: one is started after `patience`
    /// unless a round comes first.
    pending_since: Option<Time>,
    /// A `Restore` that waits for this node's part from its supplier.
    awaiting_part: Option<Restoring>,
    /// A supplied part that came before its `Restore` (channels are not FIFO).
    early_part: Option<(Epoch, Option<Box<LocalReport>>)>,
    /// The newest engine life this node sent application messages in (see
    /// [`Recovery::note_sent`]).
    sent_life: u64,
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
            replicas: BTreeMap::new(),
            pending: Vec::new(),
            current: None,
            pending_since: None,
            awaiting_part: None,
            early_part: None,
            sent_life: 0,
            actions: VecDeque::new(),
        }
    }

    /// This node sent an application message in engine life `life`.
    ///
    /// Needed because of [`Recovery::is_early`]'s assumption: a member that has not
    /// restored yet takes a message of a life above the round's epoch for one from a
    /// member that restored first. A process that started fresh while a round was under
    /// way (its disk lost, and nobody saw it restart) also has such a life, and what it
    /// sent before it was halted would be held as early and delivered after the
    /// others' restore: money made (crash swarm seed 2788). So a member halted by a
    /// round below a life it sent in coordinates a newer round at once; that round's
    /// epoch is above the life, which makes those messages from before the rollback.
    pub(crate) fn note_sent(&mut self, life: u64) {
        self.sent_life = self.sent_life.max(life);
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

    /// True while halted for a round that has not restored this node yet: what the
    /// history before the round sends waits for the round's outcome.
    pub(crate) fn holds_traffic(&self) -> bool {
        matches!(
            self.phase,
            Phase::Halted {
                restored: false,
                ..
            }
        )
    }

    /// True if an application message from an engine life `life` may be delivered.
    pub(crate) fn admits(&self, life: u64) -> bool {
        life >= self.floor
    }

    /// True if an application message of engine life `life` comes from the history
    /// after the current round while this node has not restored yet: a member that
    /// restored first sent it in its new life. It must wait for this node's restore,
    /// not be dropped (the transport acknowledged it already).
    pub(crate) fn is_early(&self, life: u64) -> bool {
        matches!(
            self.phase,
            Phase::Halted { epoch, restored: false, .. } if life >= Self::min_life(epoch)
        )
    }

    /// The engine life a restore in `epoch` must use at least.
    pub(crate) fn min_life(epoch: Epoch) -> u64 {
        epoch.at.saturating_add(1)
    }

    pub(crate) fn set_durable(&mut self, ids: Vec<SnapshotId>) {
        self.durable = ids;
    }

    pub(crate) fn set_replicas(&mut self, replicas: BTreeMap<NodeId, Vec<SnapshotId>>) {
        self.replicas = replicas;
    }

    /// Every member, this node included, sorted.
    pub(crate) fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// True while this node coordinates a round.
    pub(crate) fn coordinating(&self) -> bool {
        self.round.is_some()
    }

    /// The newest round this node has heard of.
    pub(crate) fn seen(&self) -> Option<Epoch> {
        self.seen
    }

    /// A new process that waits to be added (see [`Change::Add`]); until then it is
    /// halted.
    pub(crate) fn await_join(&mut self) {
        self.phase = Phase::Joining;
    }

    /// The node a pending round adds, whose recovery messages must get through before
    /// it is a member.
    pub(crate) fn joining(&self) -> Option<NodeId> {
        let round = self.round.as_ref().and_then(|r| r.change.as_ref());
        self.pending.iter().chain(round).find_map(|c| match c {
            Change::Add { node, .. } => Some(*node),
            Change::Remove { .. } => None,
        })
    }

    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        match self.phase {
            Phase::Halted { since, .. } => Some(since + self.patience),
            Phase::Running => self.pending_since.map(|t| t + self.patience),
            Phase::Joining => None,
        }
    }

    /// Starts a round coordinated here, at wall-clock (or virtual) microsecond `clock`,
    /// to `wanted` if given (it must be held by every member), else to the newest
    /// snapshot every member holds; making `change` if given (or the change an
    /// interrupted round left pending).
    pub(crate) fn start(
        &mut self,
        now: Time,
        clock: u64,
        wanted: Option<SnapshotId>,
        change: Option<Change>,
    ) {
        let at = clock.max(self.seen.map_or(0, |e| e.at.saturating_add(1)));
        let epoch = Epoch { at, by: self.me };
        // Drop pending changes that are done already, then take the oldest.
        let members = self.members.clone();
        self.pending.retain(|c| match c {
            Change::Remove { node, .. } => members.contains(node),
            Change::Add { node, .. } => !members.contains(node),
        });
        self.pending_since = None;
        // Removals first: a removed member is gone for good, and every other round
        // (an addition's quorum includes it) would wait for it in vain.
        let change = change
            .or_else(|| {
                let removal = self
                    .pending
                    .iter()
                    .find(|c| matches!(c, Change::Remove { .. }));
                removal.or(self.pending.first()).cloned()
            })
            .map(|c| match c {
                // The membership it leads to is this coordinator's, now.
                Change::Add { node, addr, .. } => {
                    let mut members = self.members.clone();
                    members.push(node);
                    members.sort_unstable();
                    members.dedup();
                    Change::Add {
                        node,
                        addr,
                        members,
                    }
                }
                c => c,
            });
        let quorum = match &change {
            Some(c) => c.apply(&self.members),
            None => self.members.clone(),
        };
        for &n in &quorum {
            if n != self.me {
                self.actions
                    .push_back(Action::Send(n, RecoveryMsg::Halt(epoch, change.clone())));
            }
        }
        self.round = Some(Round {
            epoch,
            wanted,
            change: change.clone(),
            quorum,
            halted: BTreeMap::new(),
            target: None,
            restored: BTreeSet::new(),
        });
        // The coordinator halts itself like any member.
        self.on_msg(now, self.me, RecoveryMsg::Halt(epoch, change));
    }

    /// A member stalled past its patience takes over with a new round.
    pub(crate) fn handle_timeout(&mut self, now: Time, clock: u64) {
        if let Phase::Halted { since, .. } = self.phase
            && since + self.patience <= now
        {
            tracing::warn!(node = %self.me, "rollback stalled; coordinating a new round");
            self.start(now, clock, None, None);
        } else if self.phase == Phase::Running
            && self.pending_since.is_some_and(|t| t + self.patience <= now)
        {
            tracing::warn!(node = %self.me, "a membership change is still pending; coordinating it");
            self.start(now, clock, None, None);
        }
    }

    /// The host restored this node's part of `id` for `epoch` (`ok`: it could), having
    /// applied `change` if any.
    pub(crate) fn restored(&mut self, now: Time, epoch: Epoch, ok: bool, change: Option<&Change>) {
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
                if let Some(c) = change {
                    self.members = c.apply(&self.members);
                    self.replicas.remove(&c.node());
                }
            }
            self.reply(now, epoch.by, RecoveryMsg::Restored(epoch, ok));
        }
    }

    /// Keeps `change` pending until a round makes it (an addition's host must be able to
    /// reach the joiner from now on).
    fn learn(&mut self, change: &Change) {
        if self.pending.iter().any(|p| p.same(change)) {
            return;
        }
        if let Change::Add { node, addr, .. } = change
            && *node != self.me
        {
            self.actions.push_back(Action::Joining(*node, addr.clone()));
        }
        self.pending.push(change.clone());
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
            RecoveryMsg::Halt(epoch, change) => {
                let removes_me =
                    matches!(&change, Some(Change::Remove { node, .. }) if *node == self.me);
                let adds_me = matches!(&change, Some(Change::Add { node, .. }) if *node == self.me);
                // A joining process waits for the round that adds it, and nothing else.
                if from != epoch.by || removes_me || (self.phase == Phase::Joining && !adds_me) {
                    return;
                }
                // A change outlives the round that announced it (see the module docs),
                // even one a newer round superseded before it reached this member: a
                // removal known to its coordinator alone would be lost with its round
                // (which halts nobody), and every later round would wait for the dead
                // member (sim_recovery membership seed 3909).
                if let Some(c) = &change {
                    self.learn(c);
                }
                if self.seen.is_some_and(|s| s > epoch) {
                    return;
                }
                // See `note_sent`; a Halt of an epoch seen already was answered then.
                let supersede =
                    self.sent_life >= Self::min_life(epoch) && self.seen.is_none_or(|s| s < epoch);
                self.current = change.clone();
                self.pending_since = None;
                let removing = match &change {
                    Some(Change::Remove { node, .. }) => Some(*node),
                    _ => None,
                };
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
                // Replicas of every member the round involves, the removed one included.
                let involved = match &change {
                    Some(c) => c.apply(&self.members),
                    None => self.members.clone(),
                };
                let replicas = self
                    .replicas
                    .iter()
                    .filter(|(n, _)| involved.contains(n) || removing == Some(**n))
                    .map(|(n, ids)| (*n, ids.clone()))
                    .collect();
                self.awaiting_part = None;
                if self.early_part.as_ref().is_some_and(|(e, _)| *e < epoch) {
                    self.early_part = None;
                }
                let have = self.durable.clone();
                self.reply(now, epoch.by, RecoveryMsg::Halted(epoch, have, replicas));
                if supersede {
                    tracing::warn!(node = %self.me, "halted in a round older than this process's life: coordinating a newer one");
                    self.start(now, now.as_micros(), None, None);
                }
            }
            RecoveryMsg::Halted(epoch, have, replicas) => {
                let Some(round) = self.round.as_mut().filter(|r| r.epoch == epoch) else {
                    return;
                };
                if !round.quorum.contains(&from) {
                    return;
                }
                round.halted.insert(from, (have, replicas));
                if round.halted.len() < round.quorum.len() || round.target.is_some() {
                    return;
                }
                match round.choose(self.me) {
                    Some((id, change, supply)) => {
                        round.target = Some(id);
                        for &n in &round.quorum {
                            if n != self.me {
                                self.actions.push_back(Action::Send(
                                    n,
                                    RecoveryMsg::Restore(epoch, id, change.clone(), supply.clone()),
                                ));
                            }
                        }
                        self.on_msg(
                            now,
                            self.me,
                            RecoveryMsg::Restore(epoch, id, change, supply),
                        );
                    }
                    None => {
                        if let Some(Change::Remove { node, .. }) = &round.change {
                            tracing::error!(node = %self.me, removing = %node, "no snapshot is held by every other member with a replica of the removed member's part: it stays a member");
                        } else {
                            tracing::error!(node = %self.me, "no checkpoint is held by every member: nothing to roll back to");
                        }
                        self.resume_all(now, epoch, None);
                    }
                }
            }
            RecoveryMsg::Restore(epoch, id, change, supply) => {
                if from != epoch.by
                    || !matches!(self.phase, Phase::Halted { epoch: e, restored: false, .. } if e == epoch)
                    || self.awaiting_part.is_some()
                {
                    return;
                }
                let restoring = Restoring {
                    epoch,
                    id,
                    change,
                    supply: supply
                        .iter()
                        .filter(|(_, by)| *by == self.me)
                        .map(|(m, _)| *m)
                        .collect(),
                    supplied: None,
                };
                if !supply.iter().any(|(m, _)| *m == self.me) {
                    self.actions.push_back(Action::Restore(restoring));
                    return;
                }
                self.awaiting_part = Some(restoring);
                if let Some((e, part)) = self.early_part.take()
                    && e == epoch
                {
                    self.on_msg(now, from, RecoveryMsg::Part(e, part));
                }
            }
            RecoveryMsg::Part(epoch, part) => {
                if !matches!(self.phase, Phase::Halted { epoch: e, restored: false, .. } if e == epoch)
                {
                    return;
                }
                let Some(mut restoring) = self.awaiting_part.take() else {
                    // Before its Restore: kept for it.
                    self.early_part = Some((epoch, part));
                    return;
                };
                match part {
                    Some(part) if part.id == restoring.id => {
                        restoring.supplied = Some(*part);
                        self.actions.push_back(Action::Restore(restoring));
                    }
                    // The supplier lost the replica: this member cannot restore, and the
                    // coordinator starts over.
                    _ => self.reply(now, epoch.by, RecoveryMsg::Restored(epoch, false)),
                }
            }
            RecoveryMsg::Restored(epoch, ok) => {
                let Some(round) = self.round.as_mut().filter(|r| r.epoch == epoch) else {
                    return;
                };
                if !ok {
                    // A member lost its part between Halted and Restore: start over.
                    tracing::warn!(node = %self.me, member = %from, "a member could not restore; restarting the rollback");
                    let at = epoch.at.saturating_add(1);
                    self.start(now, at, None, None);
                    return;
                }
                if !round.quorum.contains(&from) {
                    return;
                }
                round.restored.insert(from);
                if round.restored.len() == round.quorum.len() {
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
                // Done (or, with no target, given up): either way not pending any more.
                if let Some(c) = self.current.take() {
                    self.pending.retain(|p| !p.same(&c));
                }
                self.actions.push_back(Action::Resumed(epoch, target));
                // A change a newer round superseded is taken up again: at once by this
                // round's coordinator, after `patience` by anyone else holding it.
                if !self.pending.is_empty() {
                    if epoch.by == self.me {
                        self.start(now, now.as_micros(), None, None);
                    } else {
                        self.pending_since = Some(now);
                    }
                }
            }
        }
    }

    fn resume_all(&mut self, now: Time, epoch: Epoch, target: Option<SnapshotId>) {
        let quorum = self
            .round
            .take()
            .map_or_else(|| self.members.clone(), |r| r.quorum);
        for &n in &quorum {
            if n != self.me {
                self.actions
                    .push_back(Action::Send(n, RecoveryMsg::Resume(epoch, target)));
            }
        }
        self.on_msg(now, self.me, RecoveryMsg::Resume(epoch, target));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(initiator: u32, s: u64) -> SnapshotId {
        SnapshotId {
            initiator: NodeId(initiator),
            s,
        }
    }

    fn part(node: u32, of: SnapshotId) -> LocalReport {
        LocalReport {
            id: of,
            state: vec![node as u8],
            cut: Default::default(),
            cut_at: Time::ZERO,
            channels: Vec::new(),
            life: 1,
            seen: Vec::new(),
            counts: None,
        }
    }

    /// Three members; n1 initiated `B` and completed it (it keeps every part), but its
    /// `Done` has not reached n0, which still holds only the older `A` that n1 pruned.
    fn cluster() -> Vec<Recovery> {
        let members = [NodeId(0), NodeId(1), NodeId(2)];
        let (a, b) = (id(1, 1), id(1, 2));
        let mut nodes: Vec<Recovery> = members
            .iter()
            .map(|&m| Recovery::new(m, &members, Duration::from_secs(3)))
            .collect();
        nodes[0].set_durable(vec![GENESIS, a]);
        nodes[1].set_durable(vec![GENESIS, b]);
        nodes[2].set_durable(vec![GENESIS, a, b]);
        nodes[1].set_replicas(BTreeMap::from([(NodeId(0), vec![b]), (NodeId(2), vec![b])]));
        nodes
    }

    /// Delivers every queued message, oldest first, and collects the restores asked of
    /// the hosts.
    fn run(nodes: &mut [Recovery]) -> Vec<(NodeId, Restoring)> {
        run_alive(nodes, |_| true)
    }

    /// [`run`], with what is sent to a node not `alive` lost (it is dead, or not in
    /// `nodes` at all).
    fn run_alive(
        nodes: &mut [Recovery],
        alive: impl Fn(NodeId) -> bool,
    ) -> Vec<(NodeId, Restoring)> {
        let mut restores = Vec::new();
        let mut queue: VecDeque<(NodeId, NodeId, RecoveryMsg)> = VecDeque::new();
        loop {
            for n in nodes.iter_mut() {
                while let Some(a) = n.poll_action() {
                    match a {
                        Action::Send(to, msg) => queue.push_back((n.me, to, msg)),
                        Action::Restore(r) => restores.push((n.me, r)),
                        _ => {}
                    }
                }
            }
            let Some((from, to, msg)) = queue.pop_front() else {
                return restores;
            };
            if alive(to) {
                nodes[to.0 as usize].on_msg(Time::ZERO, from, msg);
            }
        }
    }

    /// What the hosts do: a member that holds the snapshot restores from its store; a
    /// supplier first sends the parts its replicas hold (here, at once).
    fn supply(nodes: &mut [Recovery], restores: &[(NodeId, Restoring)]) {
        for (n, r) in restores {
            for &m in &r.supply {
                let msg = RecoveryMsg::Part(r.epoch, Some(Box::new(part(m.0, r.id))));
                nodes[m.0 as usize].on_msg(Time::ZERO, *n, msg);
            }
        }
    }

    fn remove_n2(nodes: &mut [Recovery]) {
        let change = Change::Remove {
            node: NodeId(2),
            heir: None,
        };
        nodes[0].start(Time::ZERO, 10, None, Some(change));
    }

    #[test]
    fn a_member_without_the_newest_snapshot_gets_its_part_from_the_initiator() {
        let mut nodes = cluster();
        remove_n2(&mut nodes);
        let first = run(&mut nodes);
        // Both go back to B: n1 holds it (and inherits n2's part), n0 waits for its part.
        let by: Vec<NodeId> = first.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            by,
            vec![NodeId(1)],
            "only n1 holds B; n0 waits for its part"
        );
        let r = &first[0].1;
        assert_eq!(r.id, id(1, 2));
        assert_eq!(r.supply, vec![NodeId(0)]);
        let heir = Some(NodeId(1));
        assert_eq!(
            r.change,
            Some(Change::Remove {
                node: NodeId(2),
                heir
            })
        );
        supply(&mut nodes, &first);
        let second = run(&mut nodes);
        let (n, r) = second.first().expect("n0 restores once its part came");
        assert_eq!(*n, NodeId(0));
        assert_eq!(r.supplied.as_ref().map(|p| p.id), Some(id(1, 2)));
        assert!(r.supply.is_empty());
    }

    #[test]
    fn a_part_that_overtakes_its_restore_waits_for_it() {
        let mut nodes = cluster();
        remove_n2(&mut nodes);
        let epoch = nodes[0].seen().unwrap();
        // The Halts reach n1; before its Halted answer comes back (and so before n0's
        // Restore), n1's part for n0 arrives.
        while let Some(a) = nodes[0].poll_action() {
            if let Action::Send(to, m) = a {
                nodes[to.0 as usize].on_msg(Time::ZERO, NodeId(0), m);
            }
        }
        let part = Some(Box::new(part(0, id(1, 2))));
        nodes[0].on_msg(Time::ZERO, NodeId(1), RecoveryMsg::Part(epoch, part));
        let restores = run(&mut nodes);
        let (_, r) = restores
            .iter()
            .find(|(n, _)| *n == NodeId(0))
            .expect("n0 restores");
        assert_eq!(r.supplied.as_ref().map(|p| p.state.clone()), Some(vec![0]));
    }

    #[test]
    fn a_snapshot_every_member_holds_needs_no_supplier() {
        let mut nodes = cluster();
        nodes[0].set_durable(vec![GENESIS, id(1, 1), id(1, 2)]);
        nodes[0].start(Time::ZERO, 10, None, None);
        let restores = run(&mut nodes);
        assert_eq!(restores.len(), 3);
        assert!(
            restores
                .iter()
                .all(|(_, r)| r.id == id(1, 2) && r.supply.is_empty())
        );
    }

    #[test]
    fn a_supplier_that_lost_the_replica_makes_the_round_start_over() {
        let mut nodes = cluster();
        nodes[0].start(Time::ZERO, 10, None, None);
        let first = run(&mut nodes);
        let r = &first.iter().find(|(n, _)| *n == NodeId(1)).unwrap().1;
        nodes[0].on_msg(Time::ZERO, NodeId(1), RecoveryMsg::Part(r.epoch, None));
        let epoch = r.epoch;
        // n0 answers Restored(false) to itself as coordinator, which starts a new round.
        run(&mut nodes);
        assert!(nodes[0].seen().unwrap() > epoch, "a new round started");
    }

    /// The crash-swarm seed 2788 case: n2 started fresh (disk lost, nobody saw it
    /// restart) while n0's round was under way, so n2's life is above the round's epoch
    /// and the others would take what n2 sent for messages of a restored life.
    #[test]
    fn a_member_that_sent_in_a_life_above_the_round_coordinates_a_newer_one() {
        let mut nodes = cluster();
        let started = Time(1_000);
        nodes[0].start(started, 1_000, None, None);
        let old = nodes[0].seen().unwrap();
        // n2's life began after the round's epoch, and it sent in it.
        let life = Recovery::min_life(old) + 5;
        nodes[2].note_sent(life);
        let later = Time(life + 100);
        while let Some(a) = nodes[0].poll_action() {
            if let Action::Send(to, m) = a {
                nodes[to.0 as usize].on_msg(later, NodeId(0), m);
            }
        }
        let newer = nodes[2].seen().unwrap();
        assert_eq!(newer.by, NodeId(2), "n2 coordinates");
        assert!(
            Recovery::min_life(old) <= life && life < newer.at,
            "the newer round's epoch is above the life n2 sent in"
        );
        // The newer round runs to its end everywhere; the messages n2 sent are from
        // before it and no member takes them for early ones.
        // (n0 lacks B and waits for its part from n1, B's initiator.)
        let mut restores = run(&mut nodes);
        supply(&mut nodes, &restores);
        restores.extend(run(&mut nodes));
        assert!(restores.iter().all(|(_, r)| r.epoch == newer));
        assert_eq!(restores.len(), 3, "every member restores once");
        for n in &nodes {
            assert_eq!(n.seen(), Some(newer));
        }
        assert!(
            !nodes[1].is_early(life),
            "n2's message is from before the round"
        );

        // The same Halt to a member that sent nothing in such a life changes nothing.
        let mut nodes = cluster();
        nodes[0].start(started, 1_000, None, None);
        nodes[2].note_sent(Recovery::min_life(old) - 1);
        while let Some(a) = nodes[0].poll_action() {
            if let Action::Send(to, m) = a {
                nodes[to.0 as usize].on_msg(later, NodeId(0), m);
            }
        }
        assert_eq!(nodes[2].seen(), Some(old), "no newer round");
    }

    /// The membership seed 3909 case: n0's removal of the dead n2 and n1's addition of
    /// n3 start at once; n1's round is newer, so n0's Halt reaches n1 after n1 halted
    /// for its own round. n1's round waits for n2 in vain; the round n1 coordinates when
    /// its patience runs out must be the removal, which n1 learnt from the superseded
    /// Halt and puts before the addition.
    #[test]
    fn a_removal_whose_round_was_superseded_is_made_by_the_next_round() {
        let mut nodes = cluster();
        let dead = NodeId(2);
        let removal = Change::Remove {
            node: dead,
            heir: None,
        };
        let addition = Change::Add {
            node: NodeId(3),
            addr: "n3".into(),
            members: Vec::new(),
        };
        nodes[0].start(Time::ZERO, 10, None, Some(removal.clone()));
        nodes[1].start(Time::ZERO, 20, None, Some(addition));
        // n1's Halt reaches n0 before n0's reaches n1.
        let sent = |n: &mut Recovery| -> Vec<(NodeId, RecoveryMsg)> {
            std::iter::from_fn(|| n.poll_action())
                .filter_map(|a| match a {
                    Action::Send(to, m) => Some((to, m)),
                    _ => None,
                })
                .collect()
        };
        for (to, m) in sent(&mut nodes[1]) {
            if to == NodeId(0) {
                nodes[0].on_msg(Time::ZERO, NodeId(1), m);
            }
        }
        for (to, m) in sent(&mut nodes[0]) {
            if to == NodeId(1) {
                nodes[1].on_msg(Time::ZERO, NodeId(0), m);
            }
        }
        let stuck = nodes[1].seen().unwrap();
        assert_eq!(stuck.by, NodeId(1), "n1's round superseded n0's");
        let alive = |n: NodeId| n.0 < 2;
        assert!(run_alive(&mut nodes, alive).is_empty(), "n2 never halts");

        let later = Time::ZERO + Duration::from_secs(3);
        nodes[1].handle_timeout(later, 30);
        let halts = sent(&mut nodes[1]);
        assert!(
            halts.iter().all(|(to, m)| *to == NodeId(0)
                && matches!(m, RecoveryMsg::Halt(_, Some(c)) if c.same(&removal))),
            "the new round removes n2 and does not ask it: {halts:?}"
        );
        for (to, m) in halts {
            nodes[to.0 as usize].on_msg(later, NodeId(1), m);
        }
        let mut restores = run_alive(&mut nodes, alive);
        supply(&mut nodes, &restores);
        restores.extend(run_alive(&mut nodes, alive));
        assert_eq!(restores.len(), 2, "n0 and n1 restore: {restores:?}");
        // The hosts restore.
        for (n, r) in &restores {
            nodes[n.0 as usize].restored(later, r.epoch, true, r.change.as_ref());
        }
        run_alive(&mut nodes, alive);
        for n in &nodes[..2] {
            assert!(!n.members().contains(&dead), "n2 was removed");
        }
    }
}
