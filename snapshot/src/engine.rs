//! The interface both snapshot engines implement, so the [`crate::process::Node`] glue,
//! the [`crate::stack::Stack`] and the simulator can run either, and the configuration
//! they share.
//!
//! # Call order
//!
//! Every method that takes `now` is an input that may queue outputs. After any input:
//!
//! 1. drain [`SnapshotEngine::poll_transmit`] until `None` and hand each
//!    `(to, control)` to the transport;
//! 2. drain [`SnapshotEngine::poll_event`] until `None`;
//! 3. re-arm the single timer from [`SnapshotEngine::poll_timeout`] and call
//!    [`SnapshotEngine::handle_timeout`] when it fires.
//!
//! Application traffic goes through the engine in both directions: stamp every outgoing
//! message with [`SnapshotEngine::on_app_send`] and pass every incoming one to
//! [`SnapshotEngine::handle_app_receive`] *before* giving it to the application. That call
//! takes the local state through the callback when the message forces a join, so by the
//! time it returns the state is recorded and the message may be delivered.

use std::time::Duration;

use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use crate::global::{Delivery, InitiateError, SnapshotEvent};
use crate::topology::Channels;
use crate::wire::{AppHeader, SnapshotId};

/// A sans-IO snapshot engine: no clock reads, no sockets, no unseeded randomness.
pub trait SnapshotEngine {
    /// The engine's control message type.
    type Control: Clone + std::fmt::Debug;

    /// This node.
    fn me(&self) -> NodeId;

    /// This node's vector clock.
    fn clock(&self) -> &VClock;

    /// The engine's configuration.
    fn config(&self) -> &EngineConfig;

    /// The application is about to send one message to `to`: count it, tick, and return
    /// the header to put in front of the payload.
    fn on_app_send(&mut self, now: Time, to: NodeId) -> AppHeader;

    /// An application message from `from` arrived. Joins announced snapshots first,
    /// calling `state` (at most once) for the local application state, records the
    /// message in channel states where it belongs, and returns: deliver it now.
    fn handle_app_receive(
        &mut self,
        now: Time,
        from: NodeId,
        header: &AppHeader,
        payload: &[u8],
        state: &mut dyn FnMut() -> Vec<u8>,
    ) -> Delivery;

    /// Starts a snapshot here; `state` is the local application state at this instant.
    fn initiate(&mut self, now: Time, state: Vec<u8>) -> Result<SnapshotId, InitiateError>;

    /// A control message from `from` arrived. `state` is called (at most once) if it
    /// makes this node take its local cut.
    fn handle_control(
        &mut self,
        now: Time,
        from: NodeId,
        control: Self::Control,
        state: &mut dyn FnMut() -> Vec<u8>,
    );

    /// The transport gave up on `peer`: abort every snapshot still waiting for it.
    fn handle_peer_unreachable(&mut self, now: Time, peer: NodeId);

    /// The transport session with `peer` ended: the peer restarted (the transport's
    /// `PeerRestarted`), or this node's own transport did (then call it for every peer).
    /// Messages to `peer` the old session had not delivered never will be. Engines that
    /// count messages tell the peer so; the default does nothing.
    fn handle_link_reset(&mut self, _now: Time, _peer: NodeId) {}

    /// Merges the timestamp of a message delivered again from a restored channel state
    /// (it belongs to the run before the restore and is not counted). The default does
    /// nothing.
    fn absorb(&mut self, _ts: &VClock) {}

    /// A fresh engine of the same configuration resuming from a restored cut `clock`
    /// with a new `life` and own-entry `floor` (a cluster-wide rollback), ignoring
    /// snapshots whose `s` is below `ids_from` (they ran before the rollback), among
    /// `nodes` (the membership after the rollback), or `None` if this engine cannot
    /// resume from a cut (Chandy-Lamport).
    fn rebuild(
        &self,
        _clock: VClock,
        _life: u64,
        _floor: u64,
        _ids_from: u64,
        _nodes: &[NodeId],
    ) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// The deadline from [`SnapshotEngine::poll_timeout`] passed.
    fn handle_timeout(&mut self, now: Time);

    /// Next control message to send.
    #[must_use]
    fn poll_transmit(&mut self) -> Option<(NodeId, Self::Control)>;

    /// Next event for the application or runtime.
    #[must_use]
    fn poll_event(&mut self) -> Option<SnapshotEvent>;

    /// Earliest deadline, if any snapshot is in progress here.
    #[must_use]
    fn poll_timeout(&self) -> Option<Time>;
}

/// Configuration of a snapshot engine (both engines take it).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This node.
    pub me: NodeId,
    /// Every node of the system (this one included; order irrelevant).
    pub nodes: Vec<NodeId>,
    /// A snapshot not finished this long after it started is aborted by its initiator;
    /// a participant gives up on its own after twice this long from joining.
    pub timeout: Duration,
    /// Most snapshots initiated by this node that may run at once.
    pub max_active: usize,
    /// How many finished ids to remember for ignoring late control messages.
    pub remember_finished: usize,
    /// Most bytes of recorded channel payload per snapshot on this node.
    pub max_channel_bytes: usize,
    /// This engine's life: the wall-clock microsecond it started at (made unique per
    /// node, see `shutter_snapshot::life`). It must grow every time a node's engine is
    /// created anew (a process restart or a restore), because sequence numbers restart
    /// with it, and an initiator refuses parts from lives that started after its
    /// snapshot did. A single run that starts at time 0 may keep the default 0.
    pub life: u64,
    /// This node's own clock entry starts at least here. It must exceed every value of
    /// that entry that any earlier life of this node used, so that vector times and
    /// snapshot ids (`s` is the initiator's entry) never repeat across crashes: see
    /// ARCHITECTURE.md, "Lives never reuse vector time". The runtime derives it from
    /// the wall clock and the node's persisted reservation ([`crate::life`]); 0 for a
    /// node's first life.
    pub clock_floor: u64,
    /// Snapshot ids with `s` below this are ignored: after a cluster-wide rollback
    /// every member's own clock entry starts above it, so they belong to the run that
    /// was rolled back (see `shutter_snapshot::recovery`). 0 otherwise.
    pub ids_from: u64,
    /// This node's application channels, or `None` for a channel to and from every
    /// other node (see [`crate::topology`]).
    pub channels: Option<Channels>,
}

impl EngineConfig {
    /// Defaults: 10 s timeout, 16 concurrent own snapshots, 4096 remembered ids,
    /// 64 MiB of channel state per snapshot.
    pub fn new(me: NodeId, nodes: Vec<NodeId>) -> Self {
        Self {
            me,
            nodes,
            timeout: Duration::from_secs(10),
            max_active: 16,
            remember_finished: 4096,
            max_channel_bytes: 64 << 20,
            life: 0,
            clock_floor: 0,
            ids_from: 0,
            channels: None,
        }
    }

    /// Nodes this node may send application messages to (every other node without a
    /// topology), sorted.
    pub fn outgoing(&self) -> Vec<NodeId> {
        match &self.channels {
            Some(c) => c.outgoing.clone(),
            None => self.others(),
        }
    }

    /// Nodes that may send application messages to this node, sorted.
    pub fn incoming(&self) -> Vec<NodeId> {
        match &self.channels {
            Some(c) => c.incoming.clone(),
            None => self.others(),
        }
    }

    fn others(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .nodes
            .iter()
            .copied()
            .filter(|n| *n != self.me)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The same configuration among `nodes` (after a membership change): channels to
    /// and from nodes that left are gone.
    pub fn among(&self, nodes: &[NodeId]) -> EngineConfig {
        EngineConfig {
            nodes: nodes.to_vec(),
            channels: self.channels.as_ref().map(|c| c.restricted_to(nodes)),
            ..self.clone()
        }
    }
}
