//! The node task: one loop owning the node's [`UdpIo`] and its sans-IO [`Stack`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_transport::Time;
use shutter_transport::driver::{Alarm, Clock, EndpointStats, RECV_BUFFER, UdpIo};
use shutter_vclock::NodeId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use super::{NodeEvent, NodeStats, RuntimeError};
use crate::checkpoint::CheckpointStore;
use crate::engine::SnapshotEngine;
use crate::global::{InitiateError, SnapshotEvent};
use crate::process::{Process, encode_state};
use crate::recovery::{Epoch, Removal};
use crate::stack::{Stack, StackEvent};
use crate::wire::{LocalReport, SnapshotId};

/// Requests from a [`super::NodeHandle`].
#[derive(Debug)]
pub(crate) enum Request {
    /// Register a member's (or any peer's) address.
    AddPeer {
        id: NodeId,
        addr: SocketAddr,
        reply: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Move an existing peer to a new address (its DNS name re-resolved elsewhere).
    SetPeerAddr {
        id: NodeId,
        addr: SocketAddr,
        reply: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Start a snapshot here.
    Initiate {
        reply: oneshot::Sender<Result<SnapshotId, RuntimeError>>,
    },
    /// An operator command for the process.
    Operator {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Report statistics.
    Stats {
        reply: oneshot::Sender<Result<NodeStats, RuntimeError>>,
    },
    /// The process's current state, postcard-encoded.
    AppState { reply: oneshot::Sender<Vec<u8>> },
    /// Statistics and the process's state (postcard) taken at the same instant.
    StatsAndState {
        reply: oneshot::Sender<Result<(NodeStats, Vec<u8>), RuntimeError>>,
    },
    /// Roll the cluster back (see `Stack::request_rollback`).
    RollBack {
        to: Option<SnapshotId>,
        reply: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Add a member that started to join (see `Stack::request_addition`).
    Add {
        node: NodeId,
        addr: SocketAddr,
        reply: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Remove a member for good (see `Stack::request_removal`).
    Remove {
        node: NodeId,
        reply: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Stop and report final statistics.
    Shutdown {
        reply: oneshot::Sender<Result<NodeStats, RuntimeError>>,
    },
}

/// State of one node's task.
pub(crate) struct NodeTask<P: Process, E: SnapshotEngine> {
    id: NodeId,
    stack: Stack<P, E>,
    io: UdpIo,
    clock: Clock,
    /// The stack's next deadline (precise: see `Alarm`).
    alarm: Alarm,
    /// The other members.
    members: BTreeSet<NodeId>,
    /// Other members whose address is still unknown; the node starts when it empties.
    missing: BTreeSet<NodeId>,
    started: bool,
    /// False for restored nodes: their process already ran before the snapshot.
    call_on_start: bool,
    tick_interval: Duration,
    events: mpsc::UnboundedSender<NodeEvent>,
    /// The checkpoint store, if configured.
    store: Option<CheckpointStore>,
    /// See `NodeConfig::roll_back_on_restart`.
    roll_back_on_restart: bool,
    /// See `NodeConfig::join`.
    join: bool,
    checkpoints_written: u64,
    /// The other members' parts of the snapshot this node just completed as initiator,
    /// written with its own part when that commits (right after).
    pending_replicas: Option<(SnapshotId, Vec<(NodeId, LocalReport)>)>,
}

impl<P, E> NodeTask<P, E>
where
    P: Process,
    E: SnapshotEngine,
    E::Control: Serialize + DeserializeOwned,
{
    #[allow(clippy::too_many_arguments)] // internal constructor, called from one place
    pub(crate) fn new(
        id: NodeId,
        stack: Stack<P, E>,
        io: UdpIo,
        clock: Clock,
        members: BTreeSet<NodeId>,
        missing: BTreeSet<NodeId>,
        call_on_start: bool,
        tick_interval: Duration,
        events: mpsc::UnboundedSender<NodeEvent>,
        store: Option<CheckpointStore>,
        roll_back_on_restart: bool,
        join: bool,
    ) -> Self {
        Self {
            id,
            stack,
            io,
            clock,
            alarm: Alarm::new(),
            members,
            missing,
            started: false,
            call_on_start,
            tick_interval,
            events,
            store,
            roll_back_on_restart,
            join,
            checkpoints_written: 0,
            pending_replicas: None,
        }
    }

    /// Runs until shut down or until every handle is gone.
    pub(crate) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let mut ticker = tokio::time::interval(self.tick_interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut buf = vec![0u8; RECV_BUFFER];
        self.maybe_start();
        self.drain().await;
        let shutdown = loop {
            let deadline = match (self.stack.poll_timeout(), self.io.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let at = self.clock.instant(deadline.unwrap_or(Time::MAX));
            tokio::select! {
                // Requests first so stats and shutdown never starve behind traffic.
                biased;
                request = requests.recv() => match request {
                    Some(Request::Shutdown { reply }) => break Some(reply),
                    Some(request) => self.on_request(request),
                    None => break None,
                },
                (peer, len) = self.io.recv(&mut buf), if self.started => {
                    // What else already arrived is taken before the one drain below.
                    let now = self.clock.now();
                    self.stack.handle_datagram(now, peer, &buf[..len]);
                    let stack = &mut self.stack;
                    self.io.take_queued(&mut buf, |peer, bytes| stack.handle_datagram(now, peer, bytes));
                }
                // Delayed datagram copies are released by `drain`.
                () = self.alarm.sleep_until(at), if deadline.is_some() => {
                    self.stack.handle_timeout(self.clock.now());
                }
                _ = ticker.tick(), if self.started => self.stack.handle_tick(self.clock.now()),
            }
            self.drain().await;
        };
        if let Some(reply) = shutdown {
            let _ = reply.send(Ok(self.stats()));
        }
    }

    /// Starts the process once every member's address is known.
    fn maybe_start(&mut self) {
        if self.started || !self.missing.is_empty() {
            return;
        }
        self.started = true;
        tracing::debug!(node = %self.id, "all member addresses known: starting");
        let now = self.clock.now();
        self.stack
            .set_roll_back_on_peer_restart(self.store.is_some() && self.roll_back_on_restart);
        let durable = self.durable();
        // Checkpoints from an earlier life mean this is a restart.
        let restarted = !durable.is_empty();
        if self.join && !restarted {
            // Its part comes with the round that adds it.
            tracing::info!(node = %self.id, "waiting to be added to the cluster");
            self.refresh_durable();
            self.stack.await_join();
            return;
        }
        if !restarted && self.call_on_start && self.store.is_some() {
            let genesis = self.stack.genesis(now);
            self.commit(&genesis);
        }
        let recover = restarted && self.roll_back_on_restart;
        if restarted && !self.roll_back_on_restart {
            tracing::warn!(
                node = %self.id,
                newest = ?durable.last(),
                "rejoining with a fresh application state: what the previous life held is lost (no rollback)"
            );
        }
        self.refresh_durable();
        if self.call_on_start && recover {
            // Back after a crash with checkpoints on disk: the cluster rolls back.
            tracing::info!(node = %self.id, "checkpoints found: rolling the cluster back");
            self.stack.recover(now);
        } else if self.call_on_start {
            self.stack.start(now);
        }
    }

    fn on_request(&mut self, request: Request) {
        let now = self.clock.now();
        match request {
            Request::AddPeer { id, addr, reply } => {
                let result = self.io.add_peer(id, addr).map_err(RuntimeError::from);
                if result.is_ok() {
                    if !self.members.contains(&id) {
                        tracing::warn!(node = %self.id, peer = %id, "peer is not a member: it takes no part in snapshots");
                    }
                    self.stack.add_peer(now, id);
                    self.missing.remove(&id);
                    self.maybe_start();
                }
                let _ = reply.send(result);
            }
            Request::SetPeerAddr { id, addr, reply } => {
                let _ = reply.send(self.io.set_peer_addr(id, addr).map_err(RuntimeError::from));
            }
            Request::Initiate { reply } => {
                let result = if self.started {
                    self.stack
                        .initiate(now)
                        .map_err(|e: InitiateError| RuntimeError::Initiate(e))
                } else {
                    Err(RuntimeError::NotStarted(self.id))
                };
                let _ = reply.send(result);
            }
            Request::Operator { bytes, reply } => {
                let result = if self.started {
                    self.stack.handle_command(now, &bytes);
                    Ok(())
                } else {
                    Err(RuntimeError::NotStarted(self.id))
                };
                let _ = reply.send(result);
            }
            Request::Stats { reply } => {
                let _ = reply.send(Ok(self.stats()));
            }
            Request::AppState { reply } => {
                let _ = reply.send(encode_state(self.stack.node().process()));
            }
            Request::StatsAndState { reply } => {
                let state = encode_state(self.stack.node().process());
                let _ = reply.send(Ok((self.stats(), state)));
            }
            Request::RollBack { to, reply } => {
                let result = if !self.started {
                    Err(RuntimeError::NotStarted(self.id))
                } else if self.store.is_none() {
                    Err(RuntimeError::Config(
                        "no checkpoint store: nothing to roll back to".into(),
                    ))
                } else {
                    self.stack
                        .request_rollback(now, to)
                        .map_err(RuntimeError::Initiate)
                };
                let _ = reply.send(result);
            }
            Request::Add { node, addr, reply } => {
                let result = if !self.started {
                    Err(RuntimeError::NotStarted(self.id))
                } else if self.store.is_none() {
                    Err(RuntimeError::Config(
                        "no checkpoint store: a member can only join at a snapshot".into(),
                    ))
                } else {
                    self.register_joining(node, &addr.to_string());
                    self.stack
                        .request_addition(now, node, addr.to_string())
                        .map_err(|e| RuntimeError::Config(e.to_string()))
                };
                let _ = reply.send(result);
            }
            Request::Remove { node, reply } => {
                let result = if !self.started {
                    Err(RuntimeError::NotStarted(self.id))
                } else if self.store.is_none() {
                    Err(RuntimeError::Config(
                        "no checkpoint store: no replica to inherit the removed part from".into(),
                    ))
                } else {
                    self.stack
                        .request_removal(now, node)
                        .map_err(|e| RuntimeError::Config(e.to_string()))
                };
                let _ = reply.send(result);
            }
            Request::Shutdown { .. } => unreachable!("handled by the loop"),
        }
    }

    /// The snapshot ids the store holds, oldest first (none without a store).
    fn durable(&self) -> Vec<SnapshotId> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        store.ids().unwrap_or_else(|e| {
            tracing::error!(node = %self.id, error = %e, "cannot read the checkpoint store");
            Vec::new()
        })
    }

    /// A round adds `node` at `addr`: the socket and the transport must reach it.
    fn register_joining(&mut self, node: NodeId, addr: &str) {
        match addr.parse::<SocketAddr>() {
            Ok(a) => {
                if let Err(e) = self.io.add_peer(node, a) {
                    tracing::error!(node = %self.id, joining = %node, error = %e, "cannot register the joining member");
                    return;
                }
                self.stack.add_peer(self.clock.now(), node);
            }
            Err(e) => {
                tracing::error!(node = %self.id, joining = %node, addr, error = %e, "bad address of the joining member")
            }
        }
    }

    /// Tells the stack what the store holds: own parts and replicas.
    fn refresh_durable(&mut self) {
        let durable = self.durable();
        self.stack.set_durable(durable);
        let replicas = self
            .store
            .as_ref()
            .map(|s| s.replica_ids())
            .transpose()
            .unwrap_or_else(|e| {
                tracing::error!(node = %self.id, error = %e, "cannot read the checkpoint store");
                None
            })
            .unwrap_or_default();
        self.stack.set_replicas(replicas);
    }

    fn commit(&mut self, part: &LocalReport) {
        let replicas = match self.pending_replicas.take() {
            Some((id, replicas)) if id == part.id => replicas,
            _ => Vec::new(),
        };
        self.write_checkpoint(part, &[], &replicas);
    }

    fn write_checkpoint(
        &mut self,
        part: &LocalReport,
        inherited: &[(NodeId, LocalReport)],
        replicas: &[(NodeId, LocalReport)],
    ) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        match store.write_with(part, inherited, replicas) {
            Ok(path) => {
                self.checkpoints_written += 1;
                tracing::debug!(node = %self.id, path = %path.display(), "checkpoint written");
            }
            // A failed write loses one checkpoint, not the node.
            Err(e) => {
                tracing::error!(node = %self.id, id = %part.id, error = %e, "cannot write checkpoint")
            }
        }
        self.refresh_durable();
    }

    fn restore(&mut self, epoch: Epoch, id: SnapshotId, removal: Option<Removal>) {
        let checkpoint = match self.store.as_ref().map(|s| s.find(id)) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                tracing::error!(node = %self.id, error = %e, "cannot read the checkpoint store");
                None
            }
            None => None,
        };
        tracing::info!(node = %self.id, %id, found = checkpoint.is_some(), "rolling back");
        let now = self.clock.now();
        let members_before = self.stack.members();
        self.stack.supply(now, epoch, checkpoint.as_ref());
        let (part, inherited, replicas) = match &checkpoint {
            Some(c) => (
                Some(&c.part),
                c.inherited_for(self.id, removal),
                c.replicas.clone(),
            ),
            None => (None, Vec::new(), Vec::new()),
        };
        let Some(restored) = self.stack.roll_back(now, epoch, part, &inherited) else {
            return;
        };
        let members = self.stack.members();
        if members == members_before && checkpoint.is_some() {
            return;
        }
        // The membership changed (or this node joined with a fresh part, or restored a
        // part a supplier sent): re-base the store on the new membership. This snapshot,
        // as restored (with what was inherited), is what a later rollback goes back to.
        self.members = members.iter().copied().filter(|n| *n != self.id).collect();
        let replicas: Vec<_> = replicas
            .into_iter()
            .filter(|(n, _)| members.contains(n))
            .collect();
        if let Some(store) = self.store.as_mut() {
            store.change_members(&members);
        }
        self.write_checkpoint(&restored, &inherited, &replicas);
        if let Some(store) = &self.store {
            match store.drop_other_memberships() {
                Ok(n) => {
                    tracing::info!(node = %self.id, dropped = n, "checkpoints of the old membership deleted")
                }
                Err(e) => {
                    tracing::error!(node = %self.id, error = %e, "cannot delete old checkpoints")
                }
            }
        }
        self.refresh_durable();
    }

    fn stats(&self) -> NodeStats {
        let s = self.stack.stats();
        NodeStats {
            id: self.id,
            transport: EndpointStats::of(&self.io, self.stack.core()),
            snapshots: self.stack.metrics().clone(),
            app_delivery_latency: self.stack.app_delivery_latency().clone(),
            members: self.stack.members(),
            app_messages_sent: s.app_sent,
            app_messages_returned: s.app_returned,
            app_messages_delivered: s.app_delivered,
            stale_discarded: s.stale_discarded,
            malformed_envelopes: s.malformed_envelopes,
            lean_undecodable: s.lean_undecodable,
            non_member_dropped: s.non_member_dropped,
            send_errors: s.send_errors,
            rolled_back_dropped: s.rolled_back_dropped,
            halted_released: s.halted_released,
            rollbacks: s.rollbacks,
            checkpoints_written: self.checkpoints_written,
        }
    }

    /// After an input: datagrams to the socket, events to the handle.
    async fn drain(&mut self) {
        loop {
            let now = self.clock.now();
            while let Some(t) = self.stack.poll_transmit(now) {
                self.io.transmit(now, t.to, &t.bytes).await;
            }
            self.io.flush_delayed(now).await;
            if !self.drain_events() {
                break;
            }
        }
    }

    /// Forwards the stack's events; returns true if one of them was an input back into
    /// the stack (a restore), whose outputs must be drained too.
    fn drain_events(&mut self) -> bool {
        let mut fed = false;
        while let Some(event) = self.stack.poll_event() {
            let event = match event {
                StackEvent::Snapshot(SnapshotEvent::LocalCut { id, at, .. }) => {
                    NodeEvent::LocalCut { id, at }
                }
                StackEvent::Snapshot(SnapshotEvent::Completed(snap)) => {
                    if self.store.is_some() && snap.id.initiator == self.id {
                        self.pending_replicas = Some((snap.id, snap.parts_except(self.id)));
                    }
                    NodeEvent::Completed(*snap)
                }
                StackEvent::Snapshot(SnapshotEvent::Aborted { id, reason }) => {
                    NodeEvent::Aborted { id, reason }
                }
                StackEvent::Snapshot(SnapshotEvent::Committed(part)) => {
                    self.commit(&part);
                    NodeEvent::Committed(part)
                }
                StackEvent::RestoreRequested {
                    epoch, id, removal, ..
                } => {
                    self.restore(epoch, id, removal);
                    fed = true;
                    continue;
                }
                StackEvent::Resumed { rolled_back_to } => {
                    tracing::info!(node = %self.id, to = ?rolled_back_to, "rollback ended; running");
                    NodeEvent::Resumed { to: rolled_back_to }
                }
                StackEvent::PeerUnreachable(peer) => {
                    tracing::info!(node = %self.id, %peer, "peer unreachable");
                    continue;
                }
                StackEvent::Joining { node, addr } => {
                    self.register_joining(node, &addr);
                    fed = true;
                    continue;
                }
                StackEvent::PeerRestarted { peer, incarnation } => {
                    tracing::info!(node = %self.id, %peer, incarnation, "peer restarted");
                    continue;
                }
            };
            // A dropped handle receiver only means nobody listens any more.
            let _ = self.events.send(event);
        }
        fed
    }
}
