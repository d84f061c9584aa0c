//! The event loop: virtual time jumps to the earliest of every pending thing (a datagram
//! arriving, a transport or engine deadline, a bank tick, a scheduled initiation, a crash
//! or a recovery), the real cores and nodes run, and everything they emit goes through the
//! seeded [`Faults`] of its link. A step bound turns livelock into a violation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_snapshot::bank::BankInvariant;
use shutter_snapshot::recovery::{Epoch, GENESIS, Removal};
use shutter_snapshot::stack::StackEvent;
use shutter_snapshot::wire::SnapshotId;
use shutter_snapshot::{AbortWhy, GlobalSnapshot, LocalReport, SnapshotEvent, verify};
use shutter_transport::Time;
use shutter_transport::faults::{DatagramCopy, FaultPlan, Faults};
use shutter_vclock::NodeId;

use super::checks::{NodeEnd, check_committed, check_end, check_snapshot};
use super::node::{INITIAL_BALANCE, Mark, Seen, SimEngine, SimNode, Status};
use super::oracle::{CutRec, Oracle};
use super::scenario::{ChangeKind, CrashKind, Scenario};
use super::{Options, Outcome};

/// Virtual time allowed after the traffic stops for everything to settle.
const SETTLE: Duration = Duration::from_secs(60);

type InFlight = Reverse<(Time, u64, u32, u32, Vec<u8>)>;

/// One run in progress.
pub(super) struct World<'a, E: SimEngine>
where
    E::Control: Serialize + DeserializeOwned,
{
    sc: &'a Scenario,
    ids: Vec<NodeId>,
    now: Time,
    nodes: Vec<SimNode<E>>,
    faults: Faults,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    oracle: Oracle,
    /// Pending crash starts, sorted by time, consumed from the front.
    crashes: Vec<(Time, usize, CrashKind, Time)>,
    next_crash: usize,
    next_init: usize,
    traffic_end: Time,
    out: Outcome,
    scratch: Vec<DatagramCopy>,
    /// Completed snapshots, checked at the end when the oracle knows which messages
    /// were lost for good.
    completed: Vec<GlobalSnapshot>,
    /// Parts committed by each node (what a checkpoint store writes).
    committed: Vec<(NodeId, LocalReport)>,
    /// See [`Options::recovery`].
    recovery: bool,
    /// Pending membership changes `(at, via, change)`, in time order.
    changes: Vec<(Time, u32, ChangeKind)>,
    /// Nodes that start waiting to join (they bring no money).
    joiners: Vec<NodeId>,
    /// See [`Options::disk_damage`].
    disk_damage: bool,
}

fn ms(v: u64) -> Time {
    Time(v * 1000)
}

impl<'a, E: SimEngine> World<'a, E>
where
    E::Control: Serialize + DeserializeOwned,
{
    pub(super) fn new(sc: &'a Scenario, ordered: bool, opts: Options) -> Self {
        let ids = sc.node_ids();
        let joiners: Vec<NodeId> = sc
            .changes
            .iter()
            .filter_map(|c| match c.change {
                ChangeKind::Add(n) => Some(NodeId(n)),
                ChangeKind::Remove(_) => None,
            })
            .collect();
        let founders: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|n| !joiners.contains(n))
            .collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                if joiners.contains(&id) {
                    SimNode::joining(id, &ids, sc.seed, ordered, opts.clock_floors)
                } else {
                    SimNode::new(id, &founders, sc.seed, ordered, opts.clock_floors)
                }
            })
            .collect();
        let changes = sc
            .changes
            .iter()
            .map(|c| (ms(c.at_ms), c.via, c.change))
            .collect();
        let plan = FaultPlan {
            seed: sc.seed,
            default: sc.faults.clone(),
            links: Vec::new(),
            partitions: sc.partitions.clone(),
        };
        let mut crashes: Vec<_> = sc
            .crashes
            .iter()
            .map(|c| {
                let at = ms(c.at_ms);
                (
                    at,
                    c.node as usize,
                    c.kind,
                    at + Duration::from_millis(c.down_ms),
                )
            })
            .collect();
        crashes.sort_by_key(|c| (c.0, c.1));
        World {
            sc,
            ids,
            now: Time::ZERO,
            nodes,
            faults: Faults::new(plan).expect("scenario faults are valid"),
            queue: BinaryHeap::new(),
            seq: 0,
            oracle: Oracle::default(),
            crashes,
            next_crash: 0,
            next_init: 0,
            traffic_end: ms(sc.traffic_ms),
            out: Outcome::default(),
            scratch: Vec::new(),
            completed: Vec::new(),
            committed: Vec::new(),
            recovery: opts.recovery,
            changes,
            joiners,
            disk_damage: opts.disk_damage,
        }
    }

    /// Runs to quiescence (or a bound) and checks everything.
    pub(super) fn run(mut self, max_steps: u64) -> Outcome {
        for i in 0..self.nodes.len() {
            self.nodes[i]
                .stack
                .set_roll_back_on_peer_restart(self.recovery);
            if self.joiners.contains(&self.nodes[i].id) {
                continue;
            }
            self.nodes[i].stack.start(self.now);
            self.service(i);
        }
        loop {
            self.out.steps += 1;
            if self.out.steps > max_steps {
                self.out.violations.push(format!(
                    "livelock: {} steps without quiescing (virtual time {})",
                    max_steps, self.now
                ));
                break;
            }
            if self.now >= self.traffic_end && self.quiescent() {
                break;
            }
            if self.now > self.traffic_end + SETTLE {
                self.out.violations.push(format!(
                    "no quiescence {SETTLE:?} after the traffic stopped: {}",
                    self.stuck()
                ));
                break;
            }
            let Some(next) = self.next_deadline() else {
                if !self.quiescent() {
                    self.out
                        .violations
                        .push(format!("stalled with work left: {}", self.stuck()));
                }
                break;
            };
            self.now = self.now.max(next);
            self.step();
        }
        self.finish()
    }

    fn quiescent(&self) -> bool {
        self.queue.is_empty()
            && self.changes.is_empty()
            && self.nodes.iter().all(|n| {
                n.status == Status::Removed
                    || (n.status == Status::Up
                        && n.transport_quiet()
                        && n.engine().idle()
                        && !n.stack.is_halted())
            })
    }

    fn stuck(&self) -> String {
        let mut s = format!("{} datagrams queued;", self.queue.len());
        for n in &self.nodes {
            if !(n.status == Status::Up
                && n.transport_quiet()
                && n.engine().idle()
                && !n.stack.is_halted())
            {
                s += &format!(
                    " {}: {:?} quiet={} idle={} halted={};",
                    n.id,
                    n.status,
                    n.transport_quiet(),
                    n.engine().idle(),
                    n.stack.is_halted()
                );
            }
        }
        s
    }

    fn next_deadline(&self) -> Option<Time> {
        let mut t = self.queue.peek().map(|Reverse(q)| q.0);
        let mut consider = |x: Option<Time>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.crashes.get(self.next_crash).map(|c| c.0));
        if self.now < self.traffic_end {
            consider(self.sc.initiations.get(self.next_init).map(|i| ms(i.1)));
        }
        for n in &self.nodes {
            match n.status {
                Status::Up => {
                    consider(n.stack.poll_timeout());
                    if n.next_tick < self.traffic_end {
                        consider(Some(n.next_tick));
                    }
                }
                Status::Paused(until) | Status::Down(until) | Status::Crashed(until) => {
                    consider(Some(until))
                }
                Status::Removed => {}
            }
        }
        consider(self.changes.first().map(|c| c.0));
        t
    }

    fn step(&mut self) {
        self.change_membership();
        let now = self.now;
        while let Some(&(at, i, kind, until)) = self.crashes.get(self.next_crash) {
            if at > now {
                break;
            }
            self.next_crash += 1;
            if self.nodes[i].status != Status::Up {
                continue;
            }
            // With recovery, a transport restart is a real crash (its abandoned messages
            // would be lost otherwise).
            let kind = match kind {
                CrashKind::Restart if self.recovery => CrashKind::Crash,
                k => k,
            };
            self.out.crashes += 1;
            let id = self.nodes[i].id;
            if kind != CrashKind::Pause {
                self.oracle
                    .restarts
                    .entry(id)
                    .or_default()
                    .push((at, until));
            }
            self.nodes[i].status = match kind {
                CrashKind::Pause => Status::Paused(until),
                CrashKind::Restart => Status::Down(until),
                CrashKind::Crash => {
                    // The money this process held dies with it; its next life opens
                    // with a fresh balance.
                    let held = self.nodes[i].app().balance();
                    self.oracle.crash(id, at, held, INITIAL_BALANCE);
                    if self.recovery && self.disk_damage {
                        self.damage_disk(i, at);
                    }
                    Status::Crashed(until)
                }
            };
        }
        for i in 0..self.nodes.len() {
            match self.nodes[i].status {
                Status::Paused(t) | Status::Down(t) | Status::Crashed(t) if t <= now => {
                    let me = self.nodes[i].id;
                    match self.nodes[i].status {
                        Status::Down(_) => {
                            // Every session ends: the stack drops its backlog and tells
                            // each peer what it will never get.
                            self.nodes[i].restart_transport(now);
                        }
                        Status::Crashed(_) => {
                            // A new process: nothing of the old one's memory survives.
                            self.nodes[i].crash_restart(now);
                            if self.recovery {
                                self.nodes[i].stack.set_roll_back_on_peer_restart(true);
                            }
                            if self.recovery && self.nodes[i].disk.is_empty() {
                                // Its disk is gone: it starts like a first start, and
                                // the others roll the cluster back when they see it.
                                self.nodes[i].first_start(now);
                            } else if self.recovery {
                                // Back with its disk: the cluster rolls back.
                                self.nodes[i].stack.recover(now);
                            } else {
                                self.nodes[i].stack.start(now);
                            }
                        }
                        _ => {}
                    }
                    if !matches!(self.nodes[i].status, Status::Paused(_)) {
                        self.oracle
                            .in_transport
                            .retain(|(from, _, _), _| *from != me);
                    }
                    let n = &mut self.nodes[i];
                    n.status = Status::Up;
                    n.next_tick = n.next_tick.max(now);
                    n.stack.handle_timeout(now);
                    self.service(i);
                }
                _ => {}
            }
        }
        while self.queue.peek().is_some_and(|Reverse(q)| q.0 <= now) {
            let Reverse((_, _, to, from, bytes)) = self.queue.pop().expect("peeked");
            let to = to as usize;
            if self.nodes[to].status == Status::Up {
                self.nodes[to]
                    .stack
                    .handle_datagram(now, NodeId(from), &bytes);
                self.service(to);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].status != Status::Up {
                continue;
            }
            if self.nodes[i].stack.poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[i].stack.handle_timeout(now);
                self.service(i);
            }
            if self.nodes[i].next_tick <= now && now < self.traffic_end {
                let n = &mut self.nodes[i];
                n.next_tick = now + Duration::from_millis(self.sc.tick_ms);
                n.stack.handle_tick(now);
                self.service(i);
            }
        }
        while now < self.traffic_end
            && let Some(&(k, at)) = self.sc.initiations.get(self.next_init)
            && ms(at) <= now
        {
            self.next_init += 1;
            let k = k as usize;
            if self.nodes[k].status != Status::Up {
                self.out.initiations_skipped += 1;
                continue;
            }
            match self.nodes[k].stack.initiate(now) {
                Ok(id) => {
                    self.oracle.initiated.insert(id, now);
                }
                Err(_) => self.out.initiations_refused += 1,
            }
            self.service(k);
        }
    }

    /// After any call into node `i`'s stack: its datagrams go through the faults of
    /// their link, and what its observer saw goes into the oracle.
    fn service(&mut self, i: usize) {
        let now = self.now;
        let me = self.nodes[i].id;
        while let Some(t) = self.nodes[i].stack.poll_transmit(now) {
            self.faults
                .apply(now, me, t.to, &t.bytes, &mut self.scratch);
            for d in self.scratch.drain(..) {
                self.seq += 1;
                self.queue
                    .push(Reverse((d.at, self.seq, t.to.0, me.0, d.bytes)));
            }
        }
        // Snapshot events reach the oracle through the observer (with the state capture
        // of the call that produced them); a restore request is the host's to answer.
        let mut fed = false;
        while let Some(ev) = self.nodes[i].stack.poll_event() {
            match ev {
                StackEvent::RestoreRequested {
                    epoch, id, removal, ..
                } => {
                    self.restore(i, epoch, id, removal);
                    fed = true;
                }
                StackEvent::Joining { node, .. } => {
                    // No sockets here: the transport only needs to know the node.
                    self.nodes[i].stack.add_peer(now, node);
                    fed = true;
                }
                StackEvent::Resumed { rolled_back_to } => {
                    if rolled_back_to.is_some() {
                        self.out.rollbacks += 1;
                    } else {
                        self.out.violations.push(format!(
                            "{me}: a rollback found no snapshot every member holds"
                        ));
                    }
                }
                _ => {}
            }
        }
        for seen in self.nodes[i].take_seen() {
            self.on_seen(i, seen);
        }
        if fed {
            self.service(i);
        }
    }

    fn on_seen(&mut self, i: usize, seen: Seen) {
        let me = self.nodes[i].id;
        match seen {
            Seen::Sent {
                at,
                to,
                seq,
                payload,
            } => self.oracle.send_seq(at, me, to, seq, payload),
            Seen::Handed { to, id, key } => {
                self.oracle.in_transport.insert((me, to, id), key);
            }
            Seen::Dropped(key) => {
                self.oracle.abandoned.insert(key);
            }
            Seen::Received {
                at,
                from,
                seq,
                payload,
            } => self.oracle.deliver_seq(at, me, from, seq, &payload),
            Seen::Discarded { from, seq } => {
                // Only a message handed to an ended session can be stale, and the
                // transport never delivers those after the sender's Lost.
                self.out.violations.push(format!(
                    "{me}: engine discarded message {seq} of {from} as stale"
                ));
            }
            Seen::Returned(key) => self.oracle.returned(key),
            Seen::Malformed { from, error } => self.out.violations.push(format!(
                "{me}: undecodable message from {from} reached the stack: {error}"
            )),
            Seen::Settled { to, id, abandoned } => {
                if let Some(key) = self.oracle.in_transport.remove(&(me, to, id))
                    && abandoned
                {
                    self.oracle.abandoned.insert(key);
                }
            }
            Seen::NodeCall { mark, events } => self.on_node_call(i, mark, events),
        }
    }

    /// One call into node `i`'s process and engine: attribute its state capture (if
    /// any) to the local cuts it produced and log snapshot outcomes.
    fn on_node_call(&mut self, i: usize, mark: Option<Mark>, events: Vec<SnapshotEvent>) {
        let now = self.now;
        let me = self.nodes[i].id;
        for ev in events {
            match ev {
                SnapshotEvent::LocalCut { id, at, clock } => {
                    let Some(mark) = mark.clone() else {
                        self.out
                            .violations
                            .push(format!("snapshot {id}: {me} cut without taking its state"));
                        continue;
                    };
                    let rec = CutRec {
                        mark,
                        clock,
                        at,
                        life: self.nodes[i].lives,
                    };
                    // A new process cannot know its dead predecessor joined, and may
                    // cut again; within one life a second cut is a bug.
                    let cuts = self.oracle.cuts.entry((id, me)).or_default();
                    if cuts.iter().any(|c| c.life == rec.life) {
                        self.out
                            .violations
                            .push(format!("snapshot {id}: {me} took two local cuts"));
                    } else {
                        cuts.push(rec);
                    }
                }
                SnapshotEvent::Completed(snap) => {
                    self.out.completed += 1;
                    self.out.recorded_messages += snap.recorded_messages() as u64;
                    if self.oracle.completed.insert(snap.id, now).is_some() {
                        self.out
                            .violations
                            .push(format!("snapshot {} completed twice", snap.id));
                    }
                    for (&n, clock) in &snap.cuts {
                        if let Some(c) = self.oracle.cut_with_clock(snap.id, n, clock) {
                            self.oracle.used_lives.insert((snap.id, n), c.life);
                        }
                    }
                    self.completed.push(*snap);
                }
                SnapshotEvent::Committed(part) => {
                    if self.recovery {
                        // The initiator keeps every other member's part with its own.
                        if let Some(snap) = self.completed.last()
                            && snap.id == part.id
                            && part.id.initiator == me
                        {
                            self.nodes[i].pending_replicas = Some((snap.id, snap.parts_except(me)));
                        }
                        self.nodes[i].commit((*part).clone());
                    }
                    // Checked at the end against the completed snapshot.
                    self.committed.push((me, *part));
                }
                SnapshotEvent::Aborted { id, reason } => {
                    if id.initiator == me {
                        self.out.aborted += 1;
                        // The engine's own check refused what it assembled: with lives
                        // that never reuse vector time this must never happen.
                        if reason.why == AbortWhy::FailedCheck {
                            self.out.failed_checks += 1;
                            self.out.violations.push(format!(
                                "snapshot {id}: the initiator's check refused it ({reason})"
                            ));
                        }
                    }
                    self.oracle
                        .abort_lives
                        .insert((id, me), self.nodes[i].lives);
                    self.oracle
                        .aborted
                        .entry(id)
                        .or_default()
                        .push((me, reason));
                }
            }
        }
    }

    /// Answers a restore request of node `i` from its disk, as `shutter node` does: its
    /// part of `id`, the parts it inherited with it, and (if it is the heir of a removal)
    /// the removed member's replica, and any parts it supplies to members without theirs;
    /// after a membership change the disk is re-based, a part a supplier sent is added.
    fn restore(&mut self, i: usize, epoch: Epoch, id: SnapshotId, removal: Option<Removal>) {
        let now = self.now;
        let me = self.nodes[i].id;
        let stored = self.nodes[i].stored(id);
        self.nodes[i].stack.supply(now, epoch, stored.as_ref());
        let members_before = self.nodes[i].stack.members();
        let (part, inherited, replicas) = match &stored {
            Some(c) => (
                Some(&c.part),
                c.inherited_for(me, removal),
                c.replicas.clone(),
            ),
            None => (None, Vec::new(), Vec::new()),
        };
        let supplied = self.nodes[i].stack.stats().restored_supplied;
        let restored = self.nodes[i].stack.roll_back(now, epoch, part, &inherited);
        self.out.supplied += self.nodes[i].stack.stats().restored_supplied - supplied;
        if let Some(restored) = restored {
            if self.nodes[i].stack.members() != members_before {
                self.nodes[i].rebase(restored, inherited, replicas);
            } else if stored.is_none() {
                // A part a supplier sent is written like a commit, as the real store
                // does: the genesis checkpoint and the others stay (seed 1889 of the
                // crash swarm lost them to a re-base, and a later round found nothing
                // every member held).
                self.nodes[i].commit(restored);
            }
        }
    }

    /// True once a snapshot initiated by another member completed and every member
    /// (but `node`) committed it: a removal of `node` then has something to go back to.
    fn removable(&self, node: NodeId) -> bool {
        let members: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.id != node && n.status != Status::Removed)
            .filter(|n| !self.joiners.contains(&n.id))
            .map(|n| n.id)
            .collect();
        self.oracle.completed.keys().any(|id| {
            id.initiator != node
                && members
                    .iter()
                    .all(|m| self.committed.iter().any(|(n, p)| n == m && p.id == *id))
        })
    }

    /// Membership changes due now (`Scenario::changes`): a removed node dies for good
    /// first; a request the coordinator refuses (a rollback is under way) is tried again
    /// a millisecond later.
    fn change_membership(&mut self) {
        let now = self.now;
        while let Some(&(at, via, change)) = self.changes.first() {
            if at > now {
                break;
            }
            self.changes.remove(0);
            let node = NodeId(match change {
                ChangeKind::Remove(n) | ChangeKind::Add(n) => n,
            });
            // A removal needs a snapshot whose initiator kept the removed part and that
            // every other member holds (see `shutter_snapshot::recovery`): the victim
            // dies once one exists.
            // None ever (faults abort every snapshot): the change is skipped, counted.
            if matches!(change, ChangeKind::Remove(_)) && !self.removable(node) {
                if now < self.traffic_end + Duration::from_secs(30) {
                    let later = now + Duration::from_millis(1);
                    let pos = self.changes.partition_point(|c| c.0 <= later);
                    self.changes.insert(pos, (later, via, change));
                } else {
                    self.out.membership_skipped += 1;
                }
                continue;
            }
            if let ChangeKind::Remove(n) = change {
                self.nodes[n as usize].status = Status::Removed;
            }
            let v = via as usize;
            let result = if self.nodes[v].status != Status::Up {
                Err(())
            } else {
                match change {
                    ChangeKind::Remove(_) => self.nodes[v]
                        .stack
                        .request_removal(now, node)
                        .map_err(|_| ()),
                    ChangeKind::Add(_) => {
                        self.nodes[v].stack.add_peer(now, node);
                        self.nodes[v]
                            .stack
                            .request_addition(now, node, format!("sim:{node}"))
                            .map_err(|_| ())
                    }
                }
            };
            match result {
                Ok(()) => {
                    self.out.membership_changes += 1;
                    self.service(v);
                }
                Err(()) if now < self.traffic_end + Duration::from_secs(30) => {
                    let retry = now + Duration::from_millis(1);
                    let pos = self.changes.partition_point(|c| c.0 <= retry);
                    self.changes.insert(pos, (retry, via, change));
                }
                Err(()) => self.out.violations.push(format!(
                    "membership change {change:?} via n{via} was refused until the end"
                )),
            }
        }
    }

    /// What a real crash does to node `i`'s disk besides killing the process, drawn
    /// from the crash time so every scenario keeps its shape: a quarter of the crashes
    /// lose the disk, a quarter tear the newest checkpoint (the store skips a damaged
    /// file, as if it was never written), the rest leave the disk intact.
    ///
    /// Not after a membership change: the genesis checkpoints are gone then (they belong
    /// to the old membership), so a node without a disk has nothing in common with the
    /// others. Recovering it would need its part from a replica; that is not built (see
    /// ARCHITECTURE.md), so such a crash tears a checkpoint instead.
    fn damage_disk(&mut self, i: usize, at: Time) {
        let disk = &mut self.nodes[i].disk;
        let changed = disk.first().is_some_and(|c| c.id() != GENESIS);
        match (at.as_micros() / 1000) % 4 {
            0 if !changed => {
                disk.clear();
                self.out.disks_lost += 1;
            }
            1 if disk.len() > 1 => {
                disk.pop();
                self.out.checkpoints_torn += 1;
            }
            _ => {}
        }
    }

    /// With recovery the ground truth is the money: every completed snapshot is
    /// consistent and holds exactly the opening money, and so do the nodes once
    /// everything has settled (no message in flight at quiescence).
    fn finish_recovery(mut self) -> Outcome {
        // Nodes that joined brought no money.
        let total = INITIAL_BALANCE * (self.ids.len() - self.joiners.len()) as u64;
        for snap in std::mem::take(&mut self.completed) {
            if let Err(e) = verify::check_all(&snap, &[&BankInvariant { total }]) {
                self.out
                    .violations
                    .push(format!("snapshot {}: {e}", snap.id));
            }
        }
        let end: u64 = self
            .nodes
            .iter()
            .filter(|n| n.status != Status::Removed)
            .map(|n| n.app().balance())
            .sum();
        if self.out.violations.is_empty() && end != total {
            self.out
                .violations
                .push(format!("the nodes hold {end} at the end, not {total}"));
        }
        self.summarize()
    }

    fn finish(mut self) -> Outcome {
        let v = check_committed(&self.completed, &self.committed);
        self.out.violations.extend(v);
        self.out.committed = self.committed.len() as u64;
        if self.recovery {
            return self.finish_recovery();
        }
        for snap in std::mem::take(&mut self.completed) {
            let v = check_snapshot(&self.oracle, &snap, &self.ids);
            self.out.violations.extend(v);
        }
        let ends: Vec<NodeEnd> = self
            .nodes
            .iter()
            .map(|n| NodeEnd {
                id: n.id,
                app_sent: n.app().sent(),
                app_delivered: n.app().delivered(),
                balance: n.app().balance(),
                engine_idle: n.engine().idle(),
                transport_quiet: n.transport_quiet(),
            })
            .collect();
        for n in &self.nodes {
            if n.refused() > 0 {
                self.out.violations.push(format!(
                    "{}: the transport refused {} envelopes",
                    n.id,
                    n.refused()
                ));
            }
            let [_, _, undecodable] = n.lean_headers();
            if undecodable > 0 {
                self.out.violations.push(format!(
                    "{}: {undecodable} lean headers named a baseline it did not hold",
                    n.id
                ));
            }
        }
        if self.out.violations.is_empty() {
            self.out.violations = check_end(&self.oracle, &ends);
        } else {
            self.out
                .violations
                .extend(self.oracle.violations.iter().cloned());
        }
        self.out.lost_to_restarts = self
            .oracle
            .sends
            .keys()
            .filter(|k| !self.oracle.deliveries.contains_key(k))
            .count() as u64;
        self.out.abandoned = self.oracle.abandoned.len() as u64;
        self.summarize()
    }

    /// The counts every run reports, whichever checks ran.
    fn summarize(mut self) -> Outcome {
        self.out.completed_ids = self.oracle.completed.keys().copied().collect();
        self.out.aborts = std::mem::take(&mut self.oracle.aborted);
        self.out.initiated = self.oracle.initiated.len() as u64;
        self.out.app_messages = self.oracle.sends.len() as u64;
        self.out.returned = self.oracle.returned.len() as u64;
        self.out.max_backlog = self
            .nodes
            .iter()
            .map(|n| n.backlog_peak() as usize)
            .max()
            .unwrap_or(0);
        for n in &self.nodes {
            let [whole, diffed, _] = n.lean_headers();
            self.out.headers_whole += whole;
            self.out.headers_diffed += diffed;
        }
        self.out.faults = self.faults.stats().clone();
        self.out.end = self.now;
        self.out
    }
}
