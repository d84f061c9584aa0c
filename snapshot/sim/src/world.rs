//! The event loop: virtual time jumps to the earliest pending thing (a datagram
//! arriving, a stack deadline, a tick, a command, a snapshot to start, a crash or a
//! restart), the nodes' stacks run, and every datagram they emit goes through the
//! seeded fault injector of its link. A step bound turns livelock into a violation.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_snapshot::process::{Process, decode_state};
use shutter_snapshot::recovery::{Epoch, Removal};
use shutter_snapshot::stack::StackEvent;
use shutter_snapshot::{AbortWhy, GlobalSnapshot, SnapshotEvent, SnapshotId, verify};
use shutter_transport::Time;
use shutter_transport::faults::{DatagramCopy, FaultPlan, Faults};
use shutter_vclock::NodeId;

use crate::cut::{Cut, End, Progress};
use crate::node::{SimEngine, SimNode, Status};
use crate::report::{LogEntry, LogKind, Report};
use crate::setup::{CrashPlan, EndCheck, Sim, SnapCheck, StopWhen};

/// Virtual time allowed after the traffic stops for everything to settle.
const SETTLE: Duration = Duration::from_secs(60);

/// A datagram on its way: `(arrival, order, to (index), from, bytes)`.
type InFlight = Reverse<(Time, u64, usize, NodeId, Vec<u8>)>;

fn at(d: Duration) -> Time {
    Time(d.as_micros() as u64)
}

/// One run in progress.
pub(crate) struct World<P: Process, E: SimEngine>
where
    E::Control: Serialize + DeserializeOwned,
{
    factory: Box<dyn FnMut(NodeId) -> P>,
    invariants: Vec<(String, SnapCheck<P::State>)>,
    end_checks: Vec<(String, EndCheck<P>)>,
    nodes: Vec<SimNode<P, E>>,
    index: BTreeMap<NodeId, usize>,
    now: Time,
    traffic_end: Time,
    tick: Option<Duration>,
    next_tick: Time,
    /// One-off ticks ([`Sim::tick_at`]), sorted, consumed from the front.
    ticks_at: Vec<Time>,
    faults: Faults,
    queue: BinaryHeap<InFlight>,
    order: u64,
    scratch: Vec<DatagramCopy>,
    /// Pending crashes and restarts, initiations and commands, each sorted by time
    /// and consumed from the front.
    crashes: Vec<CrashPlan>,
    restarts: Vec<(Time, usize, bool)>,
    initiations: Vec<(Time, NodeId)>,
    commands: Vec<(Time, NodeId, Vec<u8>)>,
    recovery: bool,
    keep_log: bool,
    max_steps: u64,
    stop_when: Option<StopWhen<P>>,
    out: Report,
}

impl<P: Process + 'static, E: SimEngine> World<P, E>
where
    E::Control: Serialize + DeserializeOwned,
{
    pub(crate) fn new(mut sim: Sim<P>, traffic: Duration, ordered: bool) -> Self {
        let ids = sim.topology.nodes();
        let traffic_end = at(traffic);
        let nodes: Vec<SimNode<P, E>> = ids
            .iter()
            .map(|&id| {
                let process = (sim.factory)(id);
                let channels = sim.topology.channels_of(id);
                SimNode::new(id, &ids, channels, process, ordered, sim.snapshot_timeout)
            })
            .collect();
        let mut initiations: Vec<(Time, NodeId)> =
            sim.snapshots.iter().map(|&(t, n)| (at(t), n)).collect();
        if let Some(every) = sim.snapshot_every.filter(|d| !d.is_zero()) {
            let mut t = every;
            let mut turn = 0;
            while at(t) < traffic_end && !ids.is_empty() {
                initiations.push((at(t), ids[turn % ids.len()]));
                turn += 1;
                t += every;
            }
        }
        initiations.sort();
        let mut commands: Vec<_> = std::mem::take(&mut sim.commands)
            .into_iter()
            .map(|(t, n, c)| (at(t), n, c))
            .collect();
        commands.sort_by_key(|c| (c.0, c.1));
        let mut ticks_at: Vec<Time> = sim.ticks_at.iter().map(|&t| at(t)).collect();
        ticks_at.sort();
        let plan = FaultPlan {
            seed: sim.seed,
            default: sim.faults.clone(),
            links: sim.links.clone(),
            partitions: sim.partitions.clone(),
        };
        let crashes = sim.crash_plan(traffic);
        // Chandy-Lamport cannot resume from a cut, so it cannot roll back.
        let recovery = sim.recovery && E::ROLLS_BACK;
        World {
            index: ids.iter().enumerate().map(|(i, &n)| (n, i)).collect(),
            factory: sim.factory,
            invariants: sim.invariants,
            end_checks: sim.end_checks,
            nodes,
            now: Time::ZERO,
            traffic_end,
            tick: sim.tick.filter(|d| !d.is_zero()),
            next_tick: Time::ZERO,
            ticks_at,
            faults: Faults::new(plan).unwrap_or_else(|e| panic!("invalid faults: {e}")),
            queue: BinaryHeap::new(),
            order: 0,
            scratch: Vec::new(),
            crashes,
            restarts: Vec::new(),
            initiations,
            commands,
            recovery,
            keep_log: sim.log,
            max_steps: sim.max_steps,
            stop_when: sim.stop_when,
            out: Report {
                seed: sim.seed,
                algorithm: sim.algorithm,
                ..Report::default()
            },
        }
    }

    /// Runs the traffic time and then to quiescence (or a bound), and checks.
    pub(crate) fn run(mut self) -> Report {
        for i in 0..self.nodes.len() {
            self.nodes[i]
                .stack
                .set_roll_back_on_peer_restart(self.recovery);
            self.nodes[i].stack.start(self.now);
            self.service(i);
        }
        loop {
            self.out.steps += 1;
            if self.out.steps > self.max_steps {
                self.violation(format!(
                    "livelock: {} steps without settling (virtual time {})",
                    self.max_steps, self.now
                ));
                break;
            }
            if self.now >= self.traffic_end && self.quiescent() {
                break;
            }
            if self.now > self.traffic_end + SETTLE {
                let stuck = self.stuck();
                self.violation(format!(
                    "not settled {SETTLE:?} after the traffic stopped: {stuck}"
                ));
                break;
            }
            let Some(next) = self.next_deadline() else {
                if !self.quiescent() {
                    let stuck = self.stuck();
                    self.violation(format!("stalled with work left: {stuck}"));
                }
                break;
            };
            self.now = self.now.max(next);
            self.step();
            if self.now < self.traffic_end && self.stop_condition_holds() {
                self.traffic_end = self.now;
                self.out.stopped_at = Some(self.now);
            }
        }
        self.finish()
    }

    fn stop_condition_holds(&self) -> bool {
        let Some(condition) = &self.stop_when else {
            return false;
        };
        condition(&Progress {
            now: self.now,
            processes: self
                .nodes
                .iter()
                .filter(|n| n.status == Status::Up)
                .map(|n| (n.id, n.stack.node().process()))
                .collect(),
            completed: self.out.completed.len(),
            crashes: self.out.crashes,
        })
    }

    fn violation(&mut self, v: String) {
        self.out.violations.push(v);
    }

    fn quiescent(&self) -> bool {
        self.queue.is_empty() && self.restarts.is_empty() && self.nodes.iter().all(|n| n.quiet())
    }

    fn stuck(&self) -> String {
        let mut s = format!("{} datagrams queued;", self.queue.len());
        for n in self.nodes.iter().filter(|n| !n.quiet()) {
            s += &format!(
                " {}: {:?} transport quiet={} engine idle={} halted={};",
                n.id,
                n.status,
                n.stack.is_quiet(),
                n.stack.node().engine().idle(),
                n.stack.is_halted()
            );
        }
        s
    }

    fn next_deadline(&self) -> Option<Time> {
        let traffic = self.now < self.traffic_end;
        [
            self.queue.peek().map(|Reverse(q)| q.0),
            self.crashes.first().map(|c| at(c.at)),
            self.restarts.first().map(|r| r.0),
            self.initiations.first().map(|i| i.0).filter(|_| traffic),
            self.commands.first().map(|c| c.0).filter(|_| traffic),
            self.ticks_at.first().copied().filter(|_| traffic),
            self.tick
                .map(|_| self.next_tick)
                .filter(|t| *t < self.traffic_end),
        ]
        .into_iter()
        .flatten()
        .chain(
            self.nodes
                .iter()
                .filter(|n| n.status == Status::Up)
                .filter_map(|n| n.stack.poll_timeout()),
        )
        .min()
    }

    fn log(&mut self, node: NodeId, kind: LogKind) {
        if self.keep_log {
            self.out.log.push(LogEntry {
                at: self.now,
                node,
                kind,
            });
        }
    }

    fn step(&mut self) {
        let now = self.now;
        while self.crashes.first().is_some_and(|c| at(c.at) <= now) {
            let c = self.crashes.remove(0);
            let Some(&i) = self.index.get(&c.node) else {
                self.violation(format!("crash of {}, which is not a node", c.node));
                continue;
            };
            if self.nodes[i].status != Status::Up {
                continue;
            }
            self.out.crashes += 1;
            self.nodes[i].status = Status::Down(now + c.down);
            if c.lose_disk {
                self.nodes[i].disk.clear();
            }
            let pos = self.restarts.partition_point(|r| r.0 <= now + c.down);
            self.restarts.insert(pos, (now + c.down, i, c.lose_disk));
            self.log(c.node, LogKind::Crashed);
        }
        while self.restarts.first().is_some_and(|r| r.0 <= now) {
            let (_, i, lost_disk) = self.restarts.remove(0);
            self.restart(i, lost_disk);
        }
        while self.queue.peek().is_some_and(|Reverse(q)| q.0 <= now) {
            let Reverse((_, _, to, from, bytes)) = self.queue.pop().expect("peeked");
            if self.nodes[to].status == Status::Up {
                self.nodes[to].stack.handle_datagram(now, from, &bytes);
                self.service(to);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].status == Status::Up
                && self.nodes[i].stack.poll_timeout().is_some_and(|t| t <= now)
            {
                self.nodes[i].stack.handle_timeout(now);
                self.service(i);
            }
        }
        // The periodic tick and any one-off ones due now: each is a tick of every node.
        let mut ticks = 0;
        if let Some(every) = self.tick
            && self.next_tick <= now
            && now < self.traffic_end
        {
            self.next_tick = now + every;
            ticks += 1;
        }
        while now < self.traffic_end && self.ticks_at.first().is_some_and(|t| *t <= now) {
            self.ticks_at.remove(0);
            ticks += 1;
        }
        for _ in 0..ticks {
            for i in 0..self.nodes.len() {
                if self.nodes[i].status == Status::Up {
                    self.nodes[i].stack.handle_tick(now);
                    self.service(i);
                }
            }
        }
        while now < self.traffic_end && self.commands.first().is_some_and(|c| c.0 <= now) {
            let (_, node, command) = self.commands.remove(0);
            match self.index.get(&node).copied() {
                Some(i) if self.nodes[i].status == Status::Up => {
                    self.log(node, LogKind::Command);
                    self.nodes[i].stack.handle_command(now, &command);
                    self.service(i);
                }
                Some(_) => {}
                None => self.violation(format!("command to {node}, which is not a node")),
            }
        }
        while now < self.traffic_end && self.initiations.first().is_some_and(|c| c.0 <= now) {
            let (_, node) = self.initiations.remove(0);
            let Some(&i) = self.index.get(&node) else {
                self.violation(format!("snapshot from {node}, which is not a node"));
                continue;
            };
            if self.nodes[i].status != Status::Up {
                self.out.initiations_skipped += 1;
                continue;
            }
            match self.nodes[i].stack.initiate(now) {
                Ok(_) => self.out.initiated += 1,
                Err(_) => self.out.initiations_skipped += 1,
            }
            self.service(i);
        }
    }

    /// A new process in place of crashed node `i`: with recovery it rolls the cluster
    /// back from its disk (or, without a disk, starts as on a first start, and the
    /// others roll back when they see it); without, it just starts.
    fn restart(&mut self, i: usize, lost_disk: bool) {
        let now = self.now;
        let id = self.nodes[i].id;
        let process = (self.factory)(id);
        let n = &mut self.nodes[i];
        n.replace(now, process);
        n.status = Status::Up;
        n.stack.set_roll_back_on_peer_restart(self.recovery);
        if self.recovery && !lost_disk {
            n.stack.recover(now);
        } else {
            if self.recovery {
                let genesis = n.stack.genesis(now);
                n.commit(genesis);
            }
            n.stack.start(now);
        }
        self.log(id, LogKind::Restarted);
        self.service(i);
    }

    /// After any call into node `i`'s stack: its datagrams go through the faults of
    /// their link, its events are handled and what its tracer saw is logged.
    fn service(&mut self, i: usize) {
        let now = self.now;
        let me = self.nodes[i].id;
        loop {
            while let Some(t) = self.nodes[i].stack.poll_transmit(now) {
                self.faults
                    .apply(now, me, t.to, &t.bytes, &mut self.scratch);
                let Some(&to) = self.index.get(&t.to) else {
                    continue;
                };
                for d in self.scratch.drain(..) {
                    self.order += 1;
                    self.queue
                        .push(Reverse((d.at, self.order, to, me, d.bytes)));
                }
            }
            let traced = std::mem::take(&mut self.nodes[i].stack.observer_mut().log);
            for (t, kind) in traced {
                if self.keep_log {
                    self.out.log.push(LogEntry {
                        at: t,
                        node: me,
                        kind,
                    });
                }
            }
            let mut fed = false;
            while let Some(ev) = self.nodes[i].stack.poll_event() {
                match ev {
                    StackEvent::Snapshot(ev) => self.on_snapshot_event(i, ev),
                    StackEvent::RestoreRequested {
                        epoch, id, removal, ..
                    } => {
                        self.restore(i, epoch, id, removal);
                        fed = true;
                    }
                    StackEvent::Resumed { rolled_back_to } => {
                        self.out.rollbacks += 1;
                        self.log(me, LogKind::RolledBack(rolled_back_to));
                        if rolled_back_to.is_none() {
                            self.violation(format!(
                                "{me}: a rollback found no snapshot every member holds"
                            ));
                        }
                    }
                    StackEvent::Joining { node, .. } => {
                        self.nodes[i].stack.add_peer(now, node);
                        fed = true;
                    }
                    StackEvent::PeerUnreachable(_) | StackEvent::PeerRestarted { .. } => {}
                }
            }
            if !fed {
                break;
            }
        }
    }

    fn on_snapshot_event(&mut self, i: usize, ev: SnapshotEvent) {
        let me = self.nodes[i].id;
        match ev {
            SnapshotEvent::Completed(snap) => {
                self.log(me, LogKind::Completed(snap.id));
                self.check_snapshot(&snap);
                if self.recovery {
                    // The initiator keeps every other member's part with its own.
                    self.nodes[i].pending_replicas = Some((snap.id, snap.parts_except(me)));
                }
                self.out.completed.push(*snap);
            }
            SnapshotEvent::Committed(part) => {
                if self.recovery {
                    self.nodes[i].commit(*part);
                }
            }
            SnapshotEvent::Aborted { id, reason } => {
                self.log(me, LogKind::Aborted(id));
                if id.initiator == me {
                    if reason.why == AbortWhy::FailedCheck {
                        self.violation(format!(
                            "snapshot {id}: the initiator's own check refused it ({reason})"
                        ));
                    }
                    self.out.aborted.push((id, reason));
                }
            }
            SnapshotEvent::LocalCut { .. } => {}
        }
    }

    /// Cut consistency and channel sanity, then every user invariant.
    fn check_snapshot(&mut self, snap: &GlobalSnapshot) {
        if let Err(e) = verify::check_all(snap, &[]) {
            self.violation(format!("snapshot {}: {e}", snap.id));
            return;
        }
        let mut states = BTreeMap::new();
        for (&n, bytes) in &snap.states {
            match decode_state::<P>(bytes) {
                Ok(s) => {
                    states.insert(n, s);
                }
                Err(e) => {
                    self.violation(format!(
                        "snapshot {}: the state of {n} does not decode: {e}",
                        snap.id
                    ));
                    return;
                }
            }
        }
        let cut = Cut {
            snapshot: snap,
            states,
        };
        let mut found = Vec::new();
        for (name, check) in &self.invariants {
            if let Err(why) = check(&cut) {
                found.push(format!("snapshot {}: invariant {name:?}: {why}", snap.id));
            }
        }
        self.out.violations.extend(found);
    }

    /// Answers a restore request of node `i` from its disk, as `shutter node` does.
    fn restore(&mut self, i: usize, epoch: Epoch, id: SnapshotId, removal: Option<Removal>) {
        let now = self.now;
        let me = self.nodes[i].id;
        let stored = self.nodes[i].stored(id).cloned();
        self.nodes[i].stack.supply(now, epoch, stored.as_ref());
        let (part, inherited) = match &stored {
            Some(c) => (Some(&c.part), c.inherited_for(me, removal)),
            None => (None, Vec::new()),
        };
        let restored = self.nodes[i].stack.roll_back(now, epoch, part, &inherited);
        // A part a supplier sent is written, as a real store would.
        if let (None, Some(restored)) = (&stored, restored) {
            self.nodes[i].commit(restored);
        }
    }

    fn finish(mut self) -> Report {
        for n in &self.nodes {
            let (count, last) = n.stack.node().off_topology();
            if count > 0 {
                let to = last.map_or_else(String::new, |t| t.to_string());
                self.out.violations.push(format!(
                    "{}: the process sent {count} messages on channels the topology does not \
                     have (the last to {to}); they were not sent",
                    n.id
                ));
            }
            let refused = n.stack.stats().send_errors;
            if refused > 0 {
                self.out.violations.push(format!(
                    "{}: the transport refused {refused} messages",
                    n.id
                ));
            }
            let (sent, delivered) = n.counts();
            self.out.sent += sent;
            self.out.delivered += delivered;
        }
        if self.out.violations.is_empty() {
            let end = End {
                processes: self
                    .nodes
                    .iter()
                    .map(|n| (n.id, n.stack.node().process()))
                    .collect(),
                crashes: self.out.crashes,
                rollbacks: self.out.rollbacks,
            };
            for (name, check) in &self.end_checks {
                if let Err(why) = check(&end) {
                    self.out
                        .violations
                        .push(format!("at the end: {name:?}: {why}"));
                }
            }
        }
        self.out.faults = self.faults.stats().clone();
        self.out.end = self.now;
        self.out
    }
}
