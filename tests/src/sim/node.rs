//! One simulated node: the production [`Stack`] (transport core, snapshot engine, the
//! glue between them) with a bank process and a [`Recorder`] as its observer.
//!
//! The bank is wrapped in [`SimApp`], which counts its sends and deliveries and, every time
//! the engine asks for the local state, remembers those counts: that is the ground truth
//! of where the cut lies in the process's own history, independent of any vector clock.
//! The counts are the observer's, not the application's: they run on across a real crash
//! ([`SimNode::crash_restart`]), which rebuilds the bank, the engine and the transport.

use std::cell::RefCell;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_snapshot::SnapshotEngine;
use shutter_snapshot::bank::{Bank, BankConfig, BankState};
use shutter_snapshot::chandy_lamport;
use shutter_snapshot::checkpoint::{self, Checkpoint};
use shutter_snapshot::life;
use shutter_snapshot::mattern::{self, EngineConfig};
use shutter_snapshot::process::{Context, Node, Process, Undeliverable};
use shutter_snapshot::stack::{Observer, Stack};
use shutter_snapshot::{AppHeader, LocalReport, SnapshotEvent, SnapshotId};
use shutter_transport::Time;
use shutter_transport::auth::{Auth, KeyRing};
use shutter_transport::core::{Config, Event, MessageId};
use shutter_vclock::NodeId;

use super::oracle::MsgKey;

/// Opening balance of every bank node.
pub const INITIAL_BALANCE: u64 = 1_000;

/// Checkpoints a simulated disk keeps (`shutter node`'s default).
pub const DISK_KEEP: usize = 8;

/// Where a local cut lies in the process's history: the state it recorded and how many
/// messages the process had sent and received at that moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Application messages sent before the cut.
    pub sent: u64,
    /// Application messages delivered before the cut.
    pub delivered: u64,
    /// Application messages handed back (refunded) before the cut.
    pub returned: u64,
    /// The encoded state handed to the engine.
    pub state: Vec<u8>,
}

/// The bank process, instrumented for the oracle.
#[derive(Debug)]
pub struct SimApp {
    bank: Bank,
    sent: u64,
    delivered: u64,
    returned: u64,
    /// Set by `snapshot()`, taken by the simulator after each call into the node.
    mark: RefCell<Option<Mark>>,
}

impl SimApp {
    /// A bank node `me` seeded from `seed`.
    pub fn new(me: NodeId, seed: u64) -> SimApp {
        Self::continuing(me, seed, [0; 3])
    }

    /// A bank `me` that joins a running cluster: it opens with no money.
    pub fn joining(me: NodeId, seed: u64) -> SimApp {
        let mut app = Self::new(me, seed);
        app.bank.restore(BankState { balance: 0 });
        app
    }

    /// A fresh bank `me` (opening balance) whose observer counts (sent, delivered,
    /// returned) continue from `counts`: the next life of a crashed node.
    pub fn continuing(me: NodeId, seed: u64, counts: [u64; 3]) -> SimApp {
        let [sent, delivered, returned] = counts;
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
            returned,
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

    /// Messages handed back as undeliverable so far.
    pub fn returned(&self) -> u64 {
        self.returned
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

    fn on_undeliverable(
        &mut self,
        ctx: &mut Context,
        to: NodeId,
        payload: &[u8],
        why: Undeliverable,
    ) {
        self.returned += 1;
        self.bank.on_undeliverable(ctx, to, payload, why);
    }

    fn on_inherit(
        &mut self,
        ctx: &mut Context,
        removed: NodeId,
        state: BankState,
        in_flight: &[(NodeId, Vec<u8>)],
    ) {
        self.bank.on_inherit(ctx, removed, state, in_flight);
    }

    fn snapshot(&self) -> BankState {
        let state = self.bank.snapshot();
        let bytes = postcard::to_allocvec(&state).expect("encoding into a Vec cannot fail");
        *self.mark.borrow_mut() = Some(Mark {
            sent: self.sent,
            delivered: self.delivered,
            returned: self.returned,
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
    /// Dead for good and removed from the cluster (`Scenario::changes`).
    Removed,
}

/// Transport settings of the simulation: the production timer floors
/// (`Config::default`), short idle and keepalive times so runs stay short. Datagrams
/// are sealed as in production, with a cluster key fixed for the simulation.
pub fn transport_config(me: NodeId, incarnation: u64, ordered: bool) -> Config {
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

/// What the simulator's observer saw inside one stack, in order; the world turns it
/// into oracle entries after every call into the stack.
#[derive(Debug)]
pub enum Seen {
    /// The process sent an application message.
    Sent {
        /// When.
        at: Time,
        /// Receiver.
        to: NodeId,
        /// `ts[sender]` of the message: all the oracle needs of its timestamp (a
        /// whole clock is a 2 KB copy per message at 256 nodes).
        seq: u64,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// The transport took application message `key` under `id`.
    Handed {
        /// Receiver.
        to: NodeId,
        /// The transport's id.
        id: MessageId,
        /// Which message.
        key: MsgKey,
    },
    /// A queued application message was dropped: its session ended.
    Dropped(MsgKey),
    /// An application message arrived.
    Received {
        /// When.
        at: Time,
        /// Sender.
        from: NodeId,
        /// `ts[from]` of the message.
        seq: u64,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// The engine discarded the message just received as stale.
    Discarded {
        /// Sender.
        from: NodeId,
        /// `ts[from]` of the message.
        seq: u64,
    },
    /// The stack handed an application message back to the process (refunded).
    Returned(MsgKey),
    /// Something that does not decode as an envelope reached the stack.
    Malformed {
        /// Sender.
        from: NodeId,
        /// The decoder's complaint.
        error: String,
    },
    /// The transport gave up on (`abandoned`) or acknowledged a message.
    Settled {
        /// Receiver.
        to: NodeId,
        /// The transport's id.
        id: MessageId,
        /// True if abandoned, false if acknowledged.
        abandoned: bool,
    },
    /// One call into the node: the state capture it made (if any) and its events.
    NodeCall {
        /// The mark left by the state capture.
        mark: Option<Mark>,
        /// The snapshot events of the call.
        events: Vec<SnapshotEvent>,
    },
}

/// The observer of one simulated stack: logs what it sees as [`Seen`] entries.
#[derive(Debug)]
pub struct Recorder {
    me: NodeId,
    /// Entries since the world last took them.
    pub seen: Vec<Seen>,
}

impl Observer<SimApp> for Recorder {
    fn app_sent(&mut self, now: Time, to: NodeId, header: &AppHeader, payload: &[u8]) {
        self.seen.push(Seen::Sent {
            at: now,
            to,
            seq: header.ts.get(self.me),
            payload: payload.to_vec(),
        });
    }

    fn app_handed(&mut self, to: NodeId, stamp: u64, id: MessageId) {
        let key = MsgKey {
            from: self.me,
            seq: stamp,
        };
        self.seen.push(Seen::Handed { to, id, key });
    }

    fn app_dropped(&mut self, _to: NodeId, stamp: u64) {
        self.seen.push(Seen::Dropped(MsgKey {
            from: self.me,
            seq: stamp,
        }));
    }

    fn app_received(&mut self, now: Time, from: NodeId, header: &AppHeader, payload: &[u8]) {
        self.seen.push(Seen::Received {
            at: now,
            from,
            seq: header.ts.get(from),
            payload: payload.to_vec(),
        });
    }

    fn app_discarded(&mut self, _now: Time, from: NodeId, header: &AppHeader) {
        self.seen.push(Seen::Discarded {
            from,
            seq: header.ts.get(from),
        });
    }

    fn app_returned(
        &mut self,
        _now: Time,
        _to: NodeId,
        stamp: u64,
        _payload: &[u8],
        _why: Undeliverable,
    ) {
        self.seen.push(Seen::Returned(MsgKey {
            from: self.me,
            seq: stamp,
        }));
    }

    fn malformed(&mut self, from: NodeId, error: &postcard::Error) {
        self.seen.push(Seen::Malformed {
            from,
            error: error.to_string(),
        });
    }

    fn transport_event(&mut self, event: &Event) {
        match *event {
            Event::Abandoned { to, id, .. } => self.seen.push(Seen::Settled {
                to,
                id,
                abandoned: true,
            }),
            Event::Acked { to, id } => self.seen.push(Seen::Settled {
                to,
                id,
                abandoned: false,
            }),
            _ => {}
        }
    }

    fn node_call(&mut self, _now: Time, process: &SimApp, events: &[SnapshotEvent]) {
        self.seen.push(Seen::NodeCall {
            mark: process.take_mark(),
            events: events.to_vec(),
        });
    }
}

/// The production stack with the simulator's bank and observer.
pub type SimStack<E> = Stack<SimApp, E, Recorder>;

/// One simulated node.
pub struct SimNode<E: SimEngine>
where
    E::Control: Serialize + DeserializeOwned,
{
    /// Its id.
    pub id: NodeId,
    /// The node's whole sans-IO stack, exactly as production runs it (rebuilt on a
    /// real crash).
    pub stack: SimStack<E>,
    /// Running, paused or down.
    pub status: Status,
    /// Next bank tick.
    pub next_tick: Time,
    /// Largest backlog of any of this node's lives.
    pub max_backlog: u64,
    /// Envelopes the transport refused, over all lives (must stay 0).
    pub send_errors: u64,
    /// Lean headers of earlier lives: `[whole, diffed, undecodable]`.
    lean: [u64; 3],
    ordered: bool,
    nodes: Vec<NodeId>,
    seed: u64,
    floors: bool,
    /// Real crashes so far (the number of this node's current life, from 0).
    pub lives: u32,
    /// The checkpoint store: parts of committed snapshots (with the replicas an
    /// initiator keeps and what a heir inherited), oldest first; the first is the genesis
    /// one, or after a membership change the snapshot the cluster went back to. Survives
    /// crashes (it is the node's disk).
    pub disk: Vec<Checkpoint>,
    /// The other members' parts of the snapshot this node just completed as initiator,
    /// committed with its own part right after.
    pub pending_replicas: Option<(SnapshotId, Vec<(NodeId, LocalReport)>)>,
}

impl<E: SimEngine> SimNode<E>
where
    E::Control: Serialize + DeserializeOwned,
{
    /// Node `me` of `nodes`, transport incarnation 1; `floors`: see [`engine_config`].
    pub fn new(me: NodeId, nodes: &[NodeId], seed: u64, ordered: bool, floors: bool) -> Self {
        Self::with_app(me, nodes, SimApp::new(me, seed), seed, ordered, floors)
    }

    /// A node that joins a running cluster (`nodes` includes it and every member): it
    /// waits halted, with no money and an empty disk, until a member adds it.
    pub fn joining(me: NodeId, nodes: &[NodeId], seed: u64, ordered: bool, floors: bool) -> Self {
        let app = SimApp::joining(me, seed);
        let mut node = Self::with_app(me, nodes, app, seed, ordered, floors);
        node.disk.clear();
        node.sync_disk();
        node.stack.await_join();
        node
    }

    fn with_app(
        me: NodeId,
        nodes: &[NodeId],
        app: SimApp,
        seed: u64,
        ordered: bool,
        floors: bool,
    ) -> Self {
        let mut stack = Self::build(me, nodes, app, Time::ZERO, 1, ordered, floors);
        // The opening checkpoint, written before the process first runs.
        let genesis = stack.genesis(Time::ZERO);
        stack.set_durable(vec![genesis.id]);
        let disk = vec![Checkpoint {
            node: me,
            members: nodes.to_vec(),
            seq: 0,
            part: genesis,
            inherited: Vec::new(),
            replicas: Vec::new(),
        }];
        SimNode {
            id: me,
            stack,
            status: Status::Up,
            next_tick: Time::ZERO,
            max_backlog: 0,
            send_errors: 0,
            lean: [0; 3],
            ordered,
            nodes: nodes.to_vec(),
            seed,
            floors,
            lives: 0,
            disk,
            pending_replicas: None,
        }
    }

    /// Writes a committed part to the node's disk (the genesis checkpoint and the newest
    /// [`DISK_KEEP`] others are kept, as `shutter node` does) and tells the stack what it
    /// holds.
    pub fn commit(&mut self, part: LocalReport) {
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
        // Like the real store: disk[0] (the genesis checkpoint, or the re-based one)
        // stays, and the rest is pruned by the store's rule.
        let ids: Vec<SnapshotId> = self.disk[1..].iter().map(Checkpoint::id).collect();
        for i in checkpoint::prunable(&ids, DISK_KEEP).into_iter().rev() {
            self.disk.remove(i + 1);
        }
        self.sync_disk();
    }

    /// Tells the stack what the disk holds.
    pub fn sync_disk(&mut self) {
        let ids = self.disk.iter().map(|c| c.id()).collect();
        self.stack.set_durable(ids);
        self.stack
            .set_replicas(checkpoint::replica_index(&self.disk));
    }

    /// After a restore that changed the membership (or let this node join): the disk
    /// holds only the snapshot gone back to, as restored, for the new membership.
    pub fn rebase(
        &mut self,
        part: LocalReport,
        inherited: Vec<(NodeId, LocalReport)>,
        replicas: Vec<(NodeId, LocalReport)>,
    ) {
        self.nodes = self.stack.members();
        let replicas = replicas
            .into_iter()
            .filter(|(n, _)| self.nodes.contains(n))
            .collect();
        let seq = self.disk.last().map_or(0, |c| c.seq + 1);
        self.disk = vec![Checkpoint {
            node: self.id,
            members: self.nodes.clone(),
            seq,
            part,
            inherited,
            replicas,
        }];
        self.sync_disk();
    }

    /// After a crash that lost the disk: the new process writes its genesis checkpoint
    /// and starts as on a first start.
    pub fn first_start(&mut self, now: Time) {
        let genesis = self.stack.genesis(now);
        self.commit(genesis);
        self.stack.start(now);
    }

    /// The disk's checkpoint of snapshot `id`.
    pub fn stored(&self, id: SnapshotId) -> Option<Checkpoint> {
        self.disk.iter().rev().find(|c| c.id() == id).cloned()
    }

    fn build(
        me: NodeId,
        nodes: &[NodeId],
        app: SimApp,
        start: Time,
        incarnation: u64,
        ordered: bool,
        floors: bool,
    ) -> SimStack<E> {
        let engine = E::build(engine_config(me, nodes.to_vec(), start, floors));
        let node = Node::new(app, engine, nodes);
        let recorder = Recorder {
            me,
            seen: Vec::new(),
        };
        let mut stack =
            Stack::with_observer(transport_config(me, incarnation, ordered), node, recorder)
                .expect("valid transport config");
        for &p in nodes {
            stack.add_peer(start, p);
        }
        stack
    }

    /// The bank process.
    pub fn app(&self) -> &SimApp {
        self.stack.node().process()
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        self.stack.node().engine()
    }

    /// Takes what the observer logged since the last call.
    pub fn take_seen(&mut self) -> Vec<Seen> {
        std::mem::take(&mut self.stack.observer_mut().seen)
    }

    /// Keeps the counters that must outlive a life.
    fn account(&mut self) {
        let s = self.stack.stats();
        self.max_backlog = self.max_backlog.max(s.backlog_peak);
    }

    /// Envelopes refused by the transport in the current life plus earlier ones.
    pub fn refused(&self) -> u64 {
        self.send_errors + self.stack.stats().send_errors
    }

    /// Application headers over all lives: `[shipped whole, shipped diffed, received
    /// undecodable]` (the last must stay 0).
    pub fn lean_headers(&self) -> [u64; 3] {
        let s = self.stack.stats();
        let now = [s.headers_whole, s.headers_diff, s.lean_undecodable];
        std::array::from_fn(|i| self.lean[i] + now[i])
    }

    /// A real crash and restart at `now`: the bank, the engine (vector clock included),
    /// the transport and the backlog are replaced by new ones, as a process started
    /// again after `kill -9` would build them. Only the observer's counts carry over.
    /// The caller starts the new process (`Stack::start`).
    pub fn crash_restart(&mut self, now: Time) {
        self.account();
        self.send_errors += self.stack.stats().send_errors;
        self.lean = self.lean_headers();
        self.lives += 1;
        let counts = [
            self.app().sent(),
            self.app().delivered(),
            self.app().returned(),
        ];
        // A new process draws new transfers.
        let seed = self.seed ^ u64::from(self.lives).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let app = SimApp::continuing(self.id, seed, counts);
        let incarnation = self.stack.core().incarnation() + 1;
        self.stack = Self::build(
            self.id,
            &self.nodes,
            app,
            now,
            incarnation,
            self.ordered,
            self.floors,
        );
        // The disk survived.
        self.sync_disk();
    }

    /// Replaces the transport with a fresh one of the next incarnation (the process and
    /// engine live on); the stack drops its backlog and resets every link.
    pub fn restart_transport(&mut self, now: Time) {
        let incarnation = self.stack.core().incarnation() + 1;
        self.stack
            .restart_transport(now, incarnation)
            .expect("valid transport config");
    }

    /// True if the transport holds nothing unacknowledged and the backlog is empty.
    pub fn transport_quiet(&self) -> bool {
        self.stack.is_quiet()
    }

    /// The largest backlog so far.
    pub fn backlog_peak(&self) -> u64 {
        self.max_backlog.max(self.stack.stats().backlog_peak)
    }
}
