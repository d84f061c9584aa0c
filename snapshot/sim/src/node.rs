//! One simulated node: the production [`Stack`] running the user's process, a
//! [`Tracer`] observing it for the event log, and the node's disk (the checkpoints of
//! the snapshots it committed, which survive its crashes).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_snapshot::checkpoint::{self, Checkpoint};
use shutter_snapshot::engine::{EngineConfig, SnapshotEngine};
use shutter_snapshot::mattern;
use shutter_snapshot::process::{Node, Process};
use shutter_snapshot::stack::{Observer, Stack};
use shutter_snapshot::topology::Channels;
use shutter_snapshot::{AppHeader, LocalReport, SnapshotEvent, SnapshotId, chandy_lamport, life};
use shutter_transport::Time;
use shutter_transport::auth::{Auth, KeyRing};
use shutter_transport::core::Config;
use shutter_vclock::NodeId;

use crate::report::LogKind;

/// Checkpoints a simulated disk keeps besides the oldest (`shutter node`'s default).
const DISK_KEEP: usize = 8;

/// A snapshot engine the simulator can build.
pub(crate) trait SimEngine: SnapshotEngine + Sized
where
    Self::Control: Serialize + DeserializeOwned,
{
    /// True if the engine can resume from a cut (a rollback).
    const ROLLS_BACK: bool;
    fn build(cfg: EngineConfig) -> Self;
    /// True if the engine holds no per-snapshot state.
    fn idle(&self) -> bool;
}

impl SimEngine for mattern::Engine {
    const ROLLS_BACK: bool = true;
    fn build(cfg: EngineConfig) -> Self {
        mattern::Engine::new(cfg)
    }
    fn idle(&self) -> bool {
        self.is_idle()
    }
}

impl SimEngine for chandy_lamport::Engine {
    const ROLLS_BACK: bool = false;
    fn build(cfg: EngineConfig) -> Self {
        chandy_lamport::Engine::new(cfg)
    }
    fn idle(&self) -> bool {
        // Every piece of per-snapshot state carries a deadline.
        self.poll_timeout().is_none()
    }
}

/// Logs what one stack does, for the report's event log and counters.
pub(crate) struct Tracer {
    pub(crate) log: Vec<(Time, LogKind)>,
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
}

impl<P> Observer<P> for Tracer {
    fn app_sent(&mut self, now: Time, to: NodeId, header: &AppHeader, payload: &[u8]) {
        self.sent += 1;
        self.log.push((
            now,
            LogKind::Sent {
                to,
                ts: header.ts.clone(),
                bytes: payload.len(),
            },
        ));
    }

    fn app_received(&mut self, now: Time, from: NodeId, header: &AppHeader, _payload: &[u8]) {
        self.delivered += 1;
        let ts = header.ts.clone();
        self.log.push((now, LogKind::Delivered { from, ts }));
    }

    fn app_discarded(&mut self, _now: Time, _from: NodeId, _header: &AppHeader) {
        // Not delivered after all: the entry just logged by `app_received` goes.
        self.delivered -= 1;
        self.log.pop();
    }

    fn node_call(&mut self, now: Time, _process: &P, events: &[SnapshotEvent]) {
        for ev in events {
            if let SnapshotEvent::LocalCut { id, .. } = ev {
                self.log.push((now, LogKind::Cut(*id)));
            }
        }
    }
}

/// Whether a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Up,
    /// Crashed until then.
    Down(Time),
}

/// One simulated node.
pub(crate) struct SimNode<P: Process, E: SimEngine>
where
    E::Control: Serialize + DeserializeOwned,
{
    pub(crate) id: NodeId,
    pub(crate) stack: Stack<P, E, Tracer>,
    pub(crate) status: Status,
    /// The checkpoint store, oldest first (survives crashes unless the disk is lost).
    pub(crate) disk: Vec<Checkpoint>,
    /// The other members' parts of the snapshot this node just completed as its
    /// initiator, stored with its own part (the replicas a removal needs).
    pub(crate) pending_replicas: Option<(SnapshotId, Vec<(NodeId, LocalReport)>)>,
    /// Counters of earlier lives.
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    nodes: Vec<NodeId>,
    channels: Channels,
    ordered: bool,
    timeout: Duration,
}

impl<P: Process, E: SimEngine> SimNode<P, E>
where
    E::Control: Serialize + DeserializeOwned,
{
    pub(crate) fn new(
        id: NodeId,
        nodes: &[NodeId],
        channels: Channels,
        process: P,
        ordered: bool,
        timeout: Duration,
    ) -> Self {
        let mut node = SimNode {
            id,
            stack: build(
                id,
                nodes,
                &channels,
                process,
                Time::ZERO,
                1,
                ordered,
                timeout,
            ),
            status: Status::Up,
            disk: Vec::new(),
            pending_replicas: None,
            sent: 0,
            delivered: 0,
            nodes: nodes.to_vec(),
            channels,
            ordered,
            timeout,
        };
        // The opening checkpoint, written before the process first runs.
        let genesis = node.stack.genesis(Time::ZERO);
        node.commit(genesis);
        node
    }

    /// Writes a committed part to disk (pruned as the real store does) and tells the
    /// stack what the disk holds.
    pub(crate) fn commit(&mut self, part: LocalReport) {
        let replicas = match self.pending_replicas.take() {
            Some((id, replicas)) if id == part.id => replicas,
            _ => Vec::new(),
        };
        self.disk.push(Checkpoint {
            node: self.id,
            members: self.nodes.clone(),
            seq: self.disk.last().map_or(0, |c| c.seq + 1),
            part,
            inherited: Vec::new(),
            replicas,
        });
        if self.disk.len() > 1 {
            let ids: Vec<SnapshotId> = self.disk[1..].iter().map(Checkpoint::id).collect();
            for i in checkpoint::prunable(&ids, DISK_KEEP).into_iter().rev() {
                self.disk.remove(i + 1);
            }
        }
        self.sync_disk();
    }

    fn sync_disk(&mut self) {
        self.stack
            .set_durable(self.disk.iter().map(Checkpoint::id).collect());
        self.stack
            .set_replicas(checkpoint::replica_index(&self.disk));
    }

    /// The disk's checkpoint of `id`.
    pub(crate) fn stored(&self, id: SnapshotId) -> Option<&Checkpoint> {
        self.disk.iter().rev().find(|c| c.id() == id)
    }

    /// A new process in place of the crashed one: process, engine (a new life, its
    /// clock above every earlier one) and transport (the next incarnation) are new;
    /// only the disk and the counters survive. The caller starts it.
    pub(crate) fn replace(&mut self, now: Time, process: P) {
        let t: &Tracer = self.stack.observer();
        self.sent += t.sent;
        self.delivered += t.delivered;
        let incarnation = self.stack.core().incarnation() + 1;
        self.stack = build(
            self.id,
            &self.nodes,
            &self.channels,
            process,
            now,
            incarnation,
            self.ordered,
            self.timeout,
        );
        self.sync_disk();
    }

    /// Messages sent and delivered over all lives.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let t: &Tracer = self.stack.observer();
        (self.sent + t.sent, self.delivered + t.delivered)
    }

    /// True if nothing is in progress: nothing unacknowledged, no snapshot, no round.
    pub(crate) fn quiet(&self) -> bool {
        self.status == Status::Up
            && self.stack.is_quiet()
            && self.stack.node().engine().idle()
            && !self.stack.is_halted()
    }
}

/// The transport of a simulated node: sealed as in production (a key fixed for the
/// simulation), the production timer floors (`Config::default`: the RTO floor and
/// timer granularity are 100 us), short idle and keepalive times so runs stay short.
fn transport_config(me: NodeId, incarnation: u64, ordered: bool) -> Config {
    Config {
        auth: Auth::Keys(KeyRing::single(1, *b"shutter simulator cluster key 01")),
        local: me,
        incarnation,
        ordered,
        max_rto: Duration::from_millis(400),
        idle_timeout: Duration::from_secs(2),
        keepalive: Duration::from_millis(500),
        max_in_flight: 64,
        dedup_window: 1024,
        max_reassembly_bytes: 4 << 20,
        max_message: 1 << 20,
        seed: u64::from(me.0) ^ incarnation.rotate_left(17),
        ..Config::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn build<P: Process, E: SimEngine>(
    me: NodeId,
    nodes: &[NodeId],
    channels: &Channels,
    process: P,
    start: Time,
    incarnation: u64,
    ordered: bool,
    timeout: Duration,
) -> Stack<P, E, Tracer>
where
    E::Control: Serialize + DeserializeOwned,
{
    // Lives and clock floors from the start time, as the runtime derives them.
    let cfg = EngineConfig {
        timeout,
        max_active: 4,
        life: start.as_micros(),
        clock_floor: life::clock_floor(start),
        channels: Some(channels.clone()),
        ..EngineConfig::new(me, nodes.to_vec())
    };
    let node = Node::new(process, E::build(cfg), nodes);
    let tracer = Tracer {
        log: Vec::new(),
        sent: 0,
        delivered: 0,
    };
    let mut stack = Stack::with_observer(transport_config(me, incarnation, ordered), node, tracer)
        .expect("the simulator's transport config is valid");
    for &p in nodes {
        stack.add_peer(start, p);
    }
    stack
}
