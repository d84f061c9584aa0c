//! The interface both snapshot engines implement, so drivers, the [`crate::process::Node`]
//! glue and the simulator can run either.
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
//! [`SnapshotEngine::on_app_receive`] *before* giving it to the application. That call
//! takes the local state through the callback when the message forces a join, so by the
//! time it returns the state is recorded and the message may be delivered.

use shutter_transport::Time;
use shutter_vclock::{NodeId, VClock};

use crate::global::{Delivery, InitiateError, SnapshotEvent};
use crate::wire::{AppHeader, SnapshotId};

/// A sans-IO snapshot engine: no clock reads, no sockets, no unseeded randomness.
pub trait SnapshotEngine {
    /// The engine's control message type.
    type Control: Clone + std::fmt::Debug;

    /// This node.
    fn me(&self) -> NodeId;

    /// This node's vector clock.
    fn clock(&self) -> &VClock;

    /// The application is about to send one message to `to`: count it, tick, and return
    /// the header to put in front of the payload.
    fn on_app_send(&mut self, now: Time, to: NodeId) -> AppHeader;

    /// An application message from `from` arrived. Joins announced snapshots first,
    /// calling `state` (at most once) for the local application state, records the
    /// message in channel states where it belongs, and returns: deliver it now.
    fn on_app_receive(
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
    fn peer_unreachable(&mut self, now: Time, peer: NodeId);

    /// The transport session with `peer` ended: the peer restarted (the transport's
    /// `PeerRestarted`), or this node's own transport did (then call it for every peer).
    /// Messages to `peer` the old session had not delivered never will be. Engines that
    /// count messages tell the peer so; the default does nothing.
    fn link_reset(&mut self, _now: Time, _peer: NodeId) {}

    /// The deadline from [`SnapshotEngine::poll_timeout`] passed.
    fn handle_timeout(&mut self, now: Time);

    /// Next control message to send.
    fn poll_transmit(&mut self) -> Option<(NodeId, Self::Control)>;

    /// Next event for the application or runtime.
    fn poll_event(&mut self) -> Option<SnapshotEvent>;

    /// Earliest deadline, if any snapshot is in progress here.
    fn poll_timeout(&self) -> Option<Time>;
}
