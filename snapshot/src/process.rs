//! The application interface: a single-threaded [`Process`] (actor) that sends through a
//! [`Context`], and [`Node`], the sans-IO glue of one process and one snapshot engine.
//!
//! Because the driver calls `on_message`, `on_tick`, `on_command` and `snapshot` on one
//! thread, one at a time, "record the state, then deliver the message" is atomic by
//! construction: [`Node::handle_envelope`] lets the engine join any announced snapshot (taking
//! [`Process::snapshot`]) *before* it calls [`Process::on_message`].
//!
//! # Using an engine directly from another event loop
//!
//! Without `Node`, keep the same discipline by hand:
//!
//! 1. stamp every outgoing message: `let header = engine.on_app_send(now, to);` and send
//!    `Envelope::App { header, payload }`;
//! 2. for every incoming `Envelope::App { header, payload }`, call
//!    `engine.handle_app_receive(now, from, &header, &payload, &mut || my_state_bytes())`
//!    *first* — it calls back for your state if the message forces a snapshot — and only
//!    when it returns deliver the payload to your application (the returned
//!    [`crate::Delivery`] is `#[must_use]` as a reminder);
//! 3. pass `Envelope::Control(c)` to `engine.handle_control(now, from, c, &mut || ...)`;
//! 4. after each of these, drain `poll_transmit` and `poll_event`, and re-arm your timer
//!    from `poll_timeout`.
//!
//! For the Chandy-Lamport baseline the transport must be in ordered (FIFO) mode and the
//! engine's control messages must be sent in the same per-peer order as application
//! messages; `Node` keeps one outbox for both for that reason.

use std::collections::VecDeque;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use crate::engine::SnapshotEngine;
use crate::global::{InitiateError, SnapshotEvent};
use crate::mattern;
use crate::wire::{AppHeader, Envelope, LeanHead, LocalReport, RecordedMessage, SnapshotId};

/// What a process may do while it handles an input: learn who it is and send.
#[derive(Debug)]
pub struct Context {
    me: NodeId,
    now: Time,
    peers: Vec<NodeId>,
    outgoing: Vec<(NodeId, Vec<u8>)>,
}

impl Context {
    /// A context for node `me` at `now`; `peers` are the nodes it may send to.
    pub fn new(me: NodeId, now: Time, peers: Vec<NodeId>) -> Self {
        Self {
            me,
            now,
            peers,
            outgoing: Vec::new(),
        }
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The current time (the driver's).
    pub fn now(&self) -> Time {
        self.now
    }

    /// The nodes this one may send to, sorted: every other member, or with a
    /// [`crate::topology`] this node's outgoing channels.
    pub fn peers(&self) -> &[NodeId] {
        &self.peers
    }

    /// Queues an application message; the driver stamps and sends it after the call.
    pub fn send(&mut self, to: NodeId, payload: Vec<u8>) {
        self.outgoing.push((to, payload));
    }

    /// Takes the queued messages (for drivers).
    pub fn take_outgoing(&mut self) -> Vec<(NodeId, Vec<u8>)> {
        std::mem::take(&mut self.outgoing)
    }
}

/// Why [`Process::on_undeliverable`] gave a message back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Undeliverable {
    /// It never left this node (it waited for window space when the receiver's session
    /// ended): certainly not delivered.
    NeverSent,
    /// It was sent to the receiver's previous life, which restarted before acknowledging
    /// it: never delivered to the new life, and whatever the previous life did with it
    /// died with that life's memory.
    Unacknowledged,
}

/// A single-threaded application whose state can be snapshotted and restored.
pub trait Process {
    /// The serialisable local state.
    type State: Serialize + DeserializeOwned;

    /// Called once before anything else.
    fn on_start(&mut self, _ctx: &mut Context) {}

    /// An application message arrived (after any snapshot it forced was taken).
    fn on_message(&mut self, ctx: &mut Context, from: NodeId, payload: &[u8]);

    /// Periodic tick from the driver.
    fn on_tick(&mut self, _ctx: &mut Context) {}

    /// An operator command (opaque bytes).
    fn on_command(&mut self, _ctx: &mut Context, _command: &[u8]) {}

    /// An application message this process sent to `to` will never be delivered: its
    /// receiver restarted (see [`Undeliverable`] for what is certain), so the process can
    /// compensate (the bank refunds the transfer). Messages sent before the last
    /// rollback are not reported: the rollback already undid them. Not called while the
    /// cluster is halted for a rollback (whose restore replaces the state anyway).
    fn on_undeliverable(
        &mut self,
        _ctx: &mut Context,
        _to: NodeId,
        _payload: &[u8],
        _why: Undeliverable,
    ) {
    }

    /// `removed` left the cluster for good and this process inherits its part of the
    /// snapshot the cluster went back to: `state` is what `removed` had at its cut and
    /// `in_flight` the messages sent to it before their senders' cuts that it had not
    /// received, by sender (they will never reach anybody else). Called right after
    /// this process was restored from the same snapshot. The default drops them, so a
    /// process that must conserve something (the bank's money) takes them over here.
    fn on_inherit(
        &mut self,
        _ctx: &mut Context,
        _removed: NodeId,
        _state: Self::State,
        _in_flight: &[(NodeId, Vec<u8>)],
    ) {
    }

    /// The current local state.
    fn snapshot(&self) -> Self::State;

    /// Replaces the local state with a restored one.
    fn restore(&mut self, state: Self::State);
}

/// The process's state as snapshot bytes (postcard).
pub fn encode_state<P: Process>(process: &P) -> Vec<u8> {
    postcard::to_allocvec(&process.snapshot()).expect("postcard encoding into a Vec cannot fail")
}

/// Decodes snapshot bytes into a process state.
pub fn decode_state<P: Process>(bytes: &[u8]) -> Result<P::State, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// One process plus one engine, sans-IO. Call order: an input (`start`, `handle_tick`,
/// `handle_command`, `handle_envelope`, `handle_app`, `handle_control`,
/// `handle_undeliverable`, `initiate`,
/// `handle_peer_unreachable`, `handle_link_reset`, `handle_timeout`), then drain
/// [`Node::poll_transmit`] and [`Node::poll_event`] until `None`, then re-arm the timer
/// from [`Node::poll_timeout`].
#[derive(Debug)]
pub struct Node<P: Process, E: SnapshotEngine = mattern::Engine> {
    process: P,
    engine: E,
    peers: Vec<NodeId>,
    /// Where the process may send: `peers`, or the outgoing channels of a topology.
    outgoing: Vec<NodeId>,
    /// Control and application messages in the order they were produced.
    outbox: VecDeque<(NodeId, Envelope<E::Control>)>,
    /// Application messages the engine ruled stale (declared lost after a restart).
    discarded: u64,
    /// Sends refused because the topology has no such channel: count and the last one.
    off_topology: (u64, Option<NodeId>),
}

impl<P: Process, E: SnapshotEngine> Node<P, E> {
    /// Glues `process` to `engine`; `nodes` is the membership (this node may be in it).
    pub fn new(process: P, engine: E, nodes: &[NodeId]) -> Self {
        let me = engine.me();
        let mut peers: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != me).collect();
        peers.sort_unstable();
        peers.dedup();
        let outgoing = Self::outgoing_of(&engine, &peers);
        Self {
            process,
            engine,
            peers,
            outgoing,
            outbox: VecDeque::new(),
            discarded: 0,
            off_topology: (0, None),
        }
    }

    fn outgoing_of(engine: &E, peers: &[NodeId]) -> Vec<NodeId> {
        let mut out = match &engine.config().channels {
            Some(c) => c.outgoing.clone(),
            None => peers.to_vec(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Application messages the process addressed to a node it has no channel to (see
    /// [`crate::topology`]), refused instead of sent, and the receiver of the last
    /// one. Always 0 without a topology.
    pub fn off_topology(&self) -> (u64, Option<NodeId>) {
        self.off_topology
    }

    /// The application.
    pub fn process(&self) -> &P {
        &self.process
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The other members, sorted.
    pub fn peers(&self) -> &[NodeId] {
        &self.peers
    }

    /// Application messages discarded instead of delivered because their sender had
    /// already declared them lost (see [`crate::Delivery::stale`]).
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    fn drain_engine(&mut self) {
        while let Some((to, c)) = self.engine.poll_transmit() {
            self.outbox.push_back((to, Envelope::Control(c)));
        }
    }

    fn run(&mut self, now: Time, f: impl FnOnce(&mut P, &mut Context)) {
        let mut ctx = Context::new(self.engine.me(), now, self.outgoing.clone());
        f(&mut self.process, &mut ctx);
        let topology = self.engine.config().channels.is_some();
        for (to, payload) in ctx.take_outgoing() {
            if topology && self.outgoing.binary_search(&to).is_err() {
                self.off_topology.0 += 1;
                self.off_topology.1 = Some(to);
                continue;
            }
            let header = self.engine.on_app_send(now, to);
            self.outbox
                .push_back((to, Envelope::App { header, payload }));
        }
    }

    /// Starts the process.
    pub fn start(&mut self, now: Time) {
        self.run(now, |p, ctx| p.on_start(ctx));
    }

    /// Driver tick.
    pub fn handle_tick(&mut self, now: Time) {
        self.run(now, |p, ctx| p.on_tick(ctx));
    }

    /// Operator command.
    pub fn handle_command(&mut self, now: Time, command: &[u8]) {
        self.run(now, |p, ctx| p.on_command(ctx, command));
    }

    /// The stack gave up on an application message this node sent (see
    /// [`Process::on_undeliverable`]).
    pub fn handle_undeliverable(
        &mut self,
        now: Time,
        to: NodeId,
        payload: &[u8],
        why: Undeliverable,
    ) {
        self.run(now, |p, ctx| p.on_undeliverable(ctx, to, payload, why));
    }

    /// An application message from the transport: snapshot first (if announced), then
    /// deliver. Returns false if it was discarded as stale instead.
    pub fn handle_app(
        &mut self,
        now: Time,
        from: NodeId,
        header: &AppHeader,
        payload: &[u8],
    ) -> bool {
        let process = &self.process;
        let delivery = self
            .engine
            .handle_app_receive(now, from, header, payload, &mut || encode_state(process));
        self.drain_engine();
        if delivery.stale {
            self.discarded += 1;
            return false;
        }
        // Joined and recorded: now deliver.
        self.run(now, |p, ctx| p.on_message(ctx, from, payload));
        true
    }

    /// A control message from the transport.
    pub fn handle_control(&mut self, now: Time, from: NodeId, control: E::Control) {
        let process = &self.process;
        self.engine
            .handle_control(now, from, control, &mut || encode_state(process));
        self.drain_engine();
    }

    /// A message from the transport (either kind; see [`Node::handle_app`] and
    /// [`Node::handle_control`]). Returns false for an application message that was
    /// discarded as stale.
    pub fn handle_envelope(
        &mut self,
        now: Time,
        from: NodeId,
        envelope: Envelope<E::Control>,
    ) -> bool {
        match envelope {
            Envelope::App { header, payload } => self.handle_app(now, from, &header, &payload),
            Envelope::Control(c) => {
                self.handle_control(now, from, c);
                true
            }
            // The stack's business, not the node's.
            Envelope::Recovery(_) => true,
            // A lean header diffed against a baseline needs the channel's baselines,
            // which only the stack keeps; a whole one is all here.
            Envelope::Lean(app) => match app.head {
                LeanHead::Whole { life, seq, ts } => {
                    let header = AppHeader {
                        ts,
                        joined: app.joined,
                        life,
                        seq,
                    };
                    self.handle_app(now, from, &header, &app.payload)
                }
                LeanHead::Diff { .. } => false,
            },
        }
    }

    /// Rolls this node back to its `part` of a snapshot: the process gets its state, the
    /// engine is rebuilt from its cut clock with a new `life` (own entry at least
    /// `floor`, snapshot ids below `ids_from` ignored) among `nodes` (the membership
    /// from now on, this node included), anything queued is dropped (it belongs to the
    /// abandoned run), and the recorded incoming messages are delivered again.
    pub fn roll_back(
        &mut self,
        now: Time,
        part: &LocalReport,
        life: u64,
        floor: u64,
        ids_from: u64,
        nodes: &[NodeId],
    ) -> Result<(), RollBackError> {
        let state = decode_state::<P>(&part.state).map_err(RollBackError::State)?;
        let clock = part.cut.clone();
        let incoming: Vec<(NodeId, RecordedMessage)> = part
            .channels
            .iter()
            .flat_map(|(from, msgs)| msgs.iter().map(move |m| (*from, m.clone())))
            .collect();
        let engine = self
            .engine
            .rebuild(clock, life, floor, ids_from, nodes)
            .ok_or(RollBackError::Unsupported)?;
        self.process.restore(state);
        self.engine = engine;
        let me = self.engine.me();
        self.peers = nodes.iter().copied().filter(|n| *n != me).collect();
        self.peers.sort_unstable();
        self.peers.dedup();
        self.outgoing = Self::outgoing_of(&self.engine, &self.peers);
        self.outbox.clear();
        for (from, m) in incoming {
            self.engine.absorb(&m.ts);
            self.run(now, |p, ctx| p.on_message(ctx, from, &m.payload));
        }
        Ok(())
    }

    /// Hands the part of a removed member (`removed`'s state and the messages that
    /// were in flight to it, by sender) to this node's process: see
    /// [`Process::on_inherit`]. Call right after [`Node::roll_back`] to the same
    /// snapshot.
    pub fn inherit(
        &mut self,
        now: Time,
        removed: NodeId,
        part: &LocalReport,
    ) -> Result<(), RollBackError> {
        let state = decode_state::<P>(&part.state).map_err(RollBackError::State)?;
        let in_flight: Vec<(NodeId, Vec<u8>)> = part
            .channels
            .iter()
            .flat_map(|(from, msgs)| msgs.iter().map(move |m| (*from, m.payload.clone())))
            .collect();
        self.run(now, |p, ctx| p.on_inherit(ctx, removed, state, &in_flight));
        Ok(())
    }

    /// Starts a snapshot here.
    pub fn initiate(&mut self, now: Time) -> Result<SnapshotId, InitiateError> {
        let state = encode_state(&self.process);
        let id = self.engine.initiate(now, state)?;
        self.drain_engine();
        Ok(id)
    }

    /// The transport gave up on `peer`.
    pub fn handle_peer_unreachable(&mut self, now: Time, peer: NodeId) {
        self.engine.handle_peer_unreachable(now, peer);
        self.drain_engine();
    }

    /// The transport session with `peer` ended (see [`SnapshotEngine::handle_link_reset`]).
    pub fn handle_link_reset(&mut self, now: Time, peer: NodeId) {
        self.engine.handle_link_reset(now, peer);
        self.drain_engine();
    }

    /// The timer from [`Node::poll_timeout`] fired.
    pub fn handle_timeout(&mut self, now: Time) {
        self.engine.handle_timeout(now);
        self.drain_engine();
    }

    /// Next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Envelope<E::Control>)> {
        self.outbox.pop_front()
    }

    /// Next snapshot event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SnapshotEvent> {
        self.engine.poll_event()
    }

    /// Earliest engine deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.engine.poll_timeout()
    }
}

/// Why [`Node::roll_back`] could not.
#[derive(Debug, thiserror::Error)]
pub enum RollBackError {
    /// The stored state does not decode as the process's state.
    #[error("stored state does not decode: {0}")]
    State(postcard::Error),
    /// The engine cannot resume from a cut (Chandy-Lamport).
    #[error("this snapshot engine cannot resume from a cut")]
    Unsupported,
}

impl<P: Process> Node<P, mattern::Engine> {
    /// Rebuilds a node from a restored snapshot (see [`crate::persist::restore_for`]):
    /// the process gets its state, the engine resumes from the cut clock, and the
    /// recorded incoming channel messages are delivered again, before any new traffic.
    pub fn restored(
        mut process: P,
        cfg: mattern::EngineConfig,
        state: P::State,
        clock: VClock,
        incoming: Vec<(NodeId, RecordedMessage)>,
        now: Time,
    ) -> Self {
        let nodes = cfg.nodes.clone();
        process.restore(state);
        let engine = mattern::Engine::restored(cfg, clock);
        let mut node = Self::new(process, engine, &nodes);
        for (from, m) in incoming {
            node.engine.absorb(&m.ts);
            node.run(now, |p, ctx| p.on_message(ctx, from, &m.payload));
        }
        node
    }
}
