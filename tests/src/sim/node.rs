//! One simulated node: the real transport [`Core`], the real [`Node`] glue with a bank
//! process, and the bit of driver logic between them (a send backlog for full windows).
//!
//! The bank is wrapped in [`SimApp`], which counts its sends and deliveries and, every time
//! the engine asks for the local state, remembers those counts: that is the ground truth
//! of where the cut lies in the process's own history, independent of any vector clock.
//! The counts are the observer's, not the application's: they run on across a real crash
//! ([`SimNode::crash_restart`]), which rebuilds the bank, the engine and the transport.

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_snapshot::SnapshotEngine;
use shutter_snapshot::bank::{Bank, BankConfig, BankState};
use shutter_snapshot::chandy_lamport;
use shutter_snapshot::life;
use shutter_snapshot::mattern::{self, EngineConfig};
use shutter_snapshot::process::{Context, Node, Process};
use shutter_transport::Time;
use shutter_transport::auth::{Auth, KeyRing};
use shutter_transport::core::{Config, Core, MessageId};
use shutter_vclock::NodeId;

use super::oracle::MsgKey;

/// Opening balance of every bank node.
pub const INITIAL_BALANCE: u64 = 1_000;

/// Where a local cut lies in the process's history: the state it recorded and how many
/// messages the process had sent and received at that moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Application messages sent before the cut.
    pub sent: u64,
    /// Application messages delivered before the cut.
    pub delivered: u64,
    /// The encoded state handed to the engine.
    pub state: Vec<u8>,
}

/// The bank process, instrumented for the oracle.
#[derive(Debug)]
pub struct SimApp {
    bank: Bank,
    sent: u64,
    delivered: u64,
    /// Set by `snapshot()`, taken by the simulator after each call into the node.
    mark: RefCell<Option<Mark>>,
}

impl SimApp {
    /// A bank node `me` seeded from `seed`.
    pub fn new(me: NodeId, seed: u64) -> SimApp {
        Self::continuing(me, seed, 0, 0)
    }

    /// A fresh bank `me` (opening balance) whose observer counts continue from `sent`
    /// and `delivered`: the next life of a crashed node.
    pub fn continuing(me: NodeId, seed: u64, sent: u64, delivered: u64) -> SimApp {
        let cfg = BankConfig {
            seed,
            initial: INITIAL_BALANCE,
            transfer_probability: 0.5,
            max_transfer: 50,
        };
        SimApp {
            bank: Bank::new(me, cfg),
            sent,
            delivered,
            mark: RefCell::new(None),
        }
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Messages delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Current balance.
    pub fn balance(&self) -> u64 {
        self.bank.balance()
    }

    /// The mark left by the last state capture, if any since the last call.
    pub fn take_mark(&self) -> Option<Mark> {
        self.mark.borrow_mut().take()
    }
}

impl Process for SimApp {
    type State = BankState;

    fn on_message(&mut self, ctx: &mut Context, from: NodeId, payload: &[u8]) {
        self.delivered += 1;
        self.bank.on_message(ctx, from, payload);
    }

    fn on_tick(&mut self, ctx: &mut Context) {
        self.bank.on_tick(ctx);
        // Count the sends in order; the node stamps them in the same order afterwards.
        for (to, payload) in ctx.take_outgoing() {
            self.sent += 1;
            ctx.send(to, payload);
        }
    }

    fn snapshot(&self) -> BankState {
        let state = self.bank.snapshot();
        let bytes = postcard::to_allocvec(&state).expect("encoding into a Vec cannot fail");
        *self.mark.borrow_mut() = Some(Mark {
            sent: self.sent,
            delivered: self.delivered,
            state: bytes,
        });
        state
    }

    fn restore(&mut self, state: BankState) {
        self.bank.restore(state);
    }
}

/// A snapshot engine the simulator can build and inspect.
pub trait SimEngine: SnapshotEngine + Sized
where
    Self::Control: Serialize + DeserializeOwned,
{
    /// Short name for reports.
    const NAME: &'static str;
    /// Builds the engine for one node.
    fn build(cfg: EngineConfig) -> Self;
    /// True if the engine holds no per-snapshot state.
    fn idle(&self) -> bool;
}

impl SimEngine for mattern::Engine {
    const NAME: &'static str = "mattern";
    fn build(cfg: EngineConfig) -> Self {
        mattern::Engine::new(cfg)
    }
    fn idle(&self) -> bool {
        self.is_idle()
    }
}

impl SimEngine for chandy_lamport::Engine {
    const NAME: &'static str = "chandy-lamport";
    fn build(cfg: EngineConfig) -> Self {
        chandy_lamport::Engine::new(cfg)
    }
    fn idle(&self) -> bool {
        // Every piece of per-snapshot state carries a deadline, so none means none left.
        self.poll_timeout().is_none()
    }
}

/// Whether a node is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Running.
    Up,
    /// Paused until the given time (state kept).
    Paused(Time),
    /// Transport down until the given time; it restarts with a new incarnation.
    Down(Time),
    /// Crashed (all memory lost) until the given time; it comes back as a new process.
    Crashed(Time),
}

/// Transport settings of the simulation (short timers so runs stay short). Datagrams
/// are sealed as in production, with a cluster key fixed for the simulation.
pub fn transport_config(me: NodeId, incarnation: u64, ordered: bool) -> Config {
    Config {
        auth: Auth::Keys(KeyRing::single(1, *b"shutter simulator cluster key 01")),
        local: me,
        incarnation,
        ordered,
        min_rto: Duration::from_millis(5),
        max_rto: Duration::from_millis(400),
        idle_timeout: Duration::from_secs(2),
        keepalive: Duration::from_millis(500),
        max_in_flight: 64,
        dedup_window: 1024,
        max_reassembly_bytes: 4 << 20,
        max_message: 1 << 20,
        seed: u64::from(me.0),
        ..Config::default()
    }
}

/// Snapshot engine settings of the simulation for a life started at `start` (virtual
/// time; the first life starts at zero): the life number and the clock floor come from
/// the start time as in the runtime (`shutter_snapshot::life`).
/// Without `floors` every life's clock starts at zero, as before lives had floors.
pub fn engine_config(me: NodeId, nodes: Vec<NodeId>, start: Time, floors: bool) -> EngineConfig {
    EngineConfig {
        timeout: Duration::from_millis(1500),
        max_active: 4,
        life: start.as_micros(),
        clock_floor: if floors { life::clock_floor(start) } else { 0 },
        ..EngineConfig::new(me, nodes)
    }
}

/// One simulated node.
pub struct SimNode<E: SimEngine>
where
    E::Control: Serialize + DeserializeOwned,
{
    /// Its id.
    pub id: NodeId,
    /// The transport (rebuilt on restart).
    pub core: Core,
    /// Process + engine.
    pub node: Node<SimApp, E>,
    /// Encoded envelopes waiting for window space, in send order, with the identity of
    /// application messages.
    pub backlog: VecDeque<(NodeId, Vec<u8>, Option<MsgKey>)>,
    /// Running, paused or down.
    pub status: Status,
    /// Next bank tick.
    pub next_tick: Time,
    /// Largest backlog seen (memory bound check).
    pub max_backlog: usize,
    ordered: bool,
    peers: Vec<NodeId>,
    nodes: Vec<NodeId>,
    seed: u64,
    floors: bool,
    /// Real crashes so far (the number of this node's current life, from 0).
    pub lives: u32,
}

impl<E: SimEngine> SimNode<E>
where
    E::Control: Serialize + DeserializeOwned,
{
    /// Node `me` of `nodes`, transport incarnation 1; `floors`: see [`engine_config`].
    pub fn new(me: NodeId, nodes: &[NodeId], seed: u64, ordered: bool, floors: bool) -> Self {
        let engine = E::build(engine_config(me, nodes.to_vec(), Time::ZERO, floors));
        let node = Node::new(SimApp::new(me, seed), engine, nodes);
        let peers: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != me).collect();
        SimNode {
            id: me,
            core: Self::fresh_core(me, 1, &peers, ordered),
            node,
            backlog: VecDeque::new(),
            status: Status::Up,
            next_tick: Time::ZERO,
            max_backlog: 0,
            ordered,
            peers,
            nodes: nodes.to_vec(),
            seed,
            floors,
            lives: 0,
        }
    }

    /// A real crash and restart at `now`: the bank, the engine (vector clock included),
    /// the transport and the backlog are replaced by new ones, as a process started
    /// again after `kill -9` would build them. Only the observer's counts carry over.
    /// The caller starts the new process (`Node::start`).
    pub fn crash_restart(&mut self, now: Time) {
        self.lives += 1;
        let (sent, delivered) = {
            let app = self.node.process();
            (app.sent(), app.delivered())
        };
        // A new process draws new transfers.
        let seed = self.seed ^ u64::from(self.lives).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let app = SimApp::continuing(self.id, seed, sent, delivered);
        let engine = E::build(engine_config(self.id, self.nodes.clone(), now, self.floors));
        self.node = Node::new(app, engine, &self.nodes);
        self.restart_transport();
    }

    fn fresh_core(me: NodeId, incarnation: u64, peers: &[NodeId], ordered: bool) -> Core {
        let mut core =
            Core::new(transport_config(me, incarnation, ordered)).expect("valid transport config");
        for &p in peers {
            core.add_peer(p);
        }
        core
    }

    /// Replaces the transport with a fresh one of the next incarnation and drops the
    /// backlog (both lived in the crashed network stack).
    pub fn restart_transport(&mut self) {
        let inc = self.core.incarnation() + 1;
        self.core = Self::fresh_core(self.id, inc, &self.peers, self.ordered);
        self.backlog.clear();
    }

    /// Drops the application messages in the backlog to `peer` (its session ended, and
    /// the engine's `Lost` will cover their numbers); returns them. Control messages
    /// stay: they are not numbered and still matter to the new session.
    pub fn drop_backlog_to(&mut self, peer: NodeId) -> Vec<MsgKey> {
        let mut dropped = Vec::new();
        self.backlog.retain(|(to, _, key)| match key {
            Some(k) if *to == peer => {
                dropped.push(*k);
                false
            }
            _ => true,
        });
        dropped
    }

    /// Moves backlog into the core while windows allow, keeping per-destination order;
    /// returns the transport ids given to application messages.
    pub fn pump(&mut self, now: Time) -> Vec<(NodeId, MessageId, MsgKey)> {
        self.max_backlog = self.max_backlog.max(self.backlog.len());
        let mut ids = Vec::new();
        if self.backlog.is_empty() {
            return ids;
        }
        let mut blocked = BTreeSet::new();
        let mut keep = VecDeque::new();
        while let Some((to, bytes, key)) = self.backlog.pop_front() {
            if blocked.contains(&to) || !self.core.can_send(to) {
                blocked.insert(to);
                keep.push_back((to, bytes, key));
                continue;
            }
            // Like the runtime: control messages (no oracle key) go out urgent.
            let sent = if key.is_some() {
                self.core.send(now, to, bytes)
            } else {
                self.core.send_urgent(now, to, bytes)
            };
            match sent {
                Ok(id) => ids.extend(key.map(|k| (to, id, k))),
                Err(e) => panic!("transport refused a message it said it could take: {e}"),
            }
        }
        self.backlog = keep;
        ids
    }

    /// True if the transport holds nothing unacknowledged and the backlog is empty.
    pub fn transport_quiet(&self) -> bool {
        self.backlog.is_empty() && self.peers.iter().all(|&p| self.core.unacked(p) == 0)
    }
}
