//! The node task: one loop owning the transport endpoint and the sans-IO node.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_transport::driver::Endpoint;
use shutter_transport::{Event, Time};
use shutter_vclock::NodeId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::outbox::Outbox;
use super::{NodeEvent, NodeStats, RuntimeError};
use crate::engine::SnapshotEngine;
use crate::global::{AbortWhy, InitiateError, SnapshotEvent};
use crate::metrics::SnapshotMetrics;
use crate::process::{Node, Process, encode_state};
use crate::wire::{Envelope, SnapshotId};

/// Requests from a [`super::NodeHandle`].
#[derive(Debug)]
pub(crate) enum Command {
    /// Register a member's (or any peer's) address.
    AddPeer {
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
    /// Stop and report final statistics.
    Shutdown {
        reply: oneshot::Sender<Result<NodeStats, RuntimeError>>,
    },
}

/// Protocol time for the engine: wall clock at start plus monotonic elapsed time, so it
/// never goes backwards and stays roughly comparable across nodes of one host.
#[derive(Clone, Copy, Debug)]
struct Clock {
    base: Time,
    start: Instant,
}

impl Clock {
    fn start() -> Self {
        Self {
            base: Time::wall_clock_now(),
            start: Instant::now(),
        }
    }

    fn now(&self) -> Time {
        self.base + self.start.elapsed()
    }

    fn instant(&self, t: Time) -> Instant {
        // Clamped: `Instant + Duration` overflows for `Time::MAX`.
        self.start + (t - self.base).min(Duration::from_secs(86_400 * 365))
    }
}

/// Plain counters of the loop.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    app_sent: u64,
    app_delivered: u64,
    malformed: u64,
    non_member: u64,
}

/// State of one node's task.
pub(crate) struct NodeTask<P: Process, E: SnapshotEngine> {
    id: NodeId,
    node: Node<P, E>,
    endpoint: Endpoint,
    outbox: Outbox,
    clock: Clock,
    /// The other members.
    members: BTreeSet<NodeId>,
    /// Other members whose address is still unknown; the node starts when it empties.
    missing: BTreeSet<NodeId>,
    started: bool,
    /// False for restored nodes: their process already ran before the snapshot.
    call_on_start: bool,
    tick_interval: Duration,
    events: mpsc::UnboundedSender<NodeEvent>,
    metrics: SnapshotMetrics,
    counters: Counters,
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
        node: Node<P, E>,
        endpoint: Endpoint,
        members: BTreeSet<NodeId>,
        missing: BTreeSet<NodeId>,
        call_on_start: bool,
        tick_interval: Duration,
        events: mpsc::UnboundedSender<NodeEvent>,
    ) -> Self {
        let outbox = Outbox::new(endpoint.sender());
        Self {
            id,
            node,
            endpoint,
            outbox,
            clock: Clock::start(),
            members,
            missing,
            started: false,
            call_on_start,
            tick_interval,
            events,
            metrics: SnapshotMetrics::new(),
            counters: Counters::default(),
        }
    }

    /// Runs until shut down or until every handle is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut ticker = tokio::time::interval(self.tick_interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.maybe_start();
        self.drain();
        let shutdown = loop {
            let deadline = self.node.poll_timeout();
            let timer = tokio::time::sleep_until(self.clock.instant(deadline.unwrap_or(Time::MAX)));
            tokio::select! {
                // Commands first so stats and shutdown never starve behind traffic.
                biased;
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command).await,
                    None => break None,
                },
                event = self.endpoint.next_event(), if self.started => match event {
                    Some(event) => self.on_transport(event),
                    None => {
                        tracing::warn!(node = %self.id, "transport endpoint stopped");
                        break None;
                    }
                },
                () = timer, if deadline.is_some() => self.node.handle_timeout(self.clock.now()),
                _ = ticker.tick(), if self.started => self.node.tick(self.clock.now()),
            }
            self.drain();
        };
        self.outbox.stop();
        let Self {
            id,
            endpoint,
            metrics,
            counters,
            outbox,
            node,
            ..
        } = self;
        let send_errors = outbox.errors();
        let result = endpoint
            .close()
            .await
            .map(|transport| NodeStats {
                id,
                transport,
                snapshots: metrics,
                app_messages_sent: counters.app_sent,
                app_messages_delivered: counters.app_delivered,
                stale_discarded: node.discarded(),
                malformed_envelopes: counters.malformed,
                non_member_dropped: counters.non_member,
                send_errors,
            })
            .map_err(RuntimeError::from);
        if let Some(reply) = shutdown {
            let _ = reply.send(result);
        }
    }

    /// Starts the process once every member's address is known.
    fn maybe_start(&mut self) {
        if self.started || !self.missing.is_empty() {
            return;
        }
        self.started = true;
        tracing::debug!(node = %self.id, "all member addresses known: starting");
        if self.call_on_start {
            self.node.start(self.clock.now());
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::AddPeer { id, addr, reply } => {
                let result = self
                    .endpoint
                    .add_peer(id, addr)
                    .await
                    .map_err(RuntimeError::from);
                if result.is_ok() {
                    if !self.members.contains(&id) {
                        tracing::warn!(node = %self.id, peer = %id, "peer is not a member: it takes no part in snapshots");
                    }
                    self.missing.remove(&id);
                    self.maybe_start();
                }
                let _ = reply.send(result);
            }
            Command::Initiate { reply } => {
                let result = if self.started {
                    self.node
                        .initiate(self.clock.now())
                        .map_err(|e: InitiateError| RuntimeError::Initiate(e))
                } else {
                    Err(RuntimeError::NotStarted(self.id))
                };
                let _ = reply.send(result);
            }
            Command::Operator { bytes, reply } => {
                let result = if self.started {
                    self.node.command(self.clock.now(), &bytes);
                    Ok(())
                } else {
                    Err(RuntimeError::NotStarted(self.id))
                };
                let _ = reply.send(result);
            }
            Command::Stats { reply } => {
                let result = self.endpoint.stats().await.map(|transport| NodeStats {
                    id: self.id,
                    transport,
                    snapshots: self.metrics.clone(),
                    app_messages_sent: self.counters.app_sent,
                    app_messages_delivered: self.counters.app_delivered,
                    stale_discarded: self.node.discarded(),
                    malformed_envelopes: self.counters.malformed,
                    non_member_dropped: self.counters.non_member,
                    send_errors: self.outbox.errors(),
                });
                let _ = reply.send(result.map_err(RuntimeError::from));
            }
            Command::AppState { reply } => {
                let _ = reply.send(encode_state(self.node.process()));
            }
            Command::Shutdown { .. } => unreachable!("handled by the loop"),
        }
    }

    fn on_transport(&mut self, event: Event) {
        match event {
            Event::Delivered { from, bytes, .. } => {
                if !self.members.contains(&from) {
                    self.counters.non_member += 1;
                    return;
                }
                match Envelope::<E::Control>::from_bytes(&bytes) {
                    Ok(envelope) => {
                        let app = matches!(envelope, Envelope::App { .. });
                        let delivered = self.node.handle(self.clock.now(), from, envelope);
                        if app && delivered {
                            self.counters.app_delivered += 1;
                        }
                    }
                    Err(e) => {
                        self.counters.malformed += 1;
                        tracing::debug!(node = %self.id, %from, error = %e, "malformed envelope dropped");
                    }
                }
            }
            Event::Unreachable { peer } => {
                tracing::info!(node = %self.id, %peer, "peer unreachable");
                self.node.peer_unreachable(self.clock.now(), peer);
            }
            Event::PeerRestarted { peer, incarnation } => {
                tracing::info!(node = %self.id, %peer, incarnation, "peer restarted");
                // The restarted process lost its part in running snapshots, and what the
                // old session had not delivered is gone: abort those, and tell the peer
                // which sequence numbers to stop waiting for.
                let now = self.clock.now();
                self.node.peer_unreachable(now, peer);
                self.node.link_reset(now, peer);
            }
            // Acks, window space and abandoned messages need nothing more from the node:
            // `link_reset` above covers everything a restart abandons.
            _ => {}
        }
    }

    /// Drains the node after an input: transmissions to the outbox, events to the handle.
    fn drain(&mut self) {
        // Before start nothing can be addressed; the node keeps its outputs until then
        // (only a restored node has any: the outputs of re-delivered messages).
        if self.started {
            while let Some((to, envelope)) = self.node.poll_transmit() {
                if matches!(envelope, Envelope::App { .. }) {
                    self.counters.app_sent += 1;
                }
                // Control messages are few and every snapshot round waits for the slowest
                // of them: send them twice rather than wait out a retransmission timeout.
                let urgent = matches!(envelope, Envelope::Control(_));
                self.outbox.push(to, envelope.to_bytes(), urgent);
            }
        }
        while let Some(event) = self.node.poll_event() {
            self.metrics.observe(&event);
            if let SnapshotEvent::Aborted { id, reason } = &event
                && reason.why == AbortWhy::FailedCheck
                && id.initiator == self.id
            {
                self.metrics.record_failed_check();
            }
            if matches!(event, SnapshotEvent::LocalCut { .. }) {
                // Our channels to every peer close only once our pre-cut messages arrive:
                // resend what is in flight now rather than wait for loss detection.
                self.endpoint.sender().expedite();
            }
            let event = match event {
                SnapshotEvent::LocalCut { id, at, .. } => NodeEvent::LocalCut { id, at },
                SnapshotEvent::Completed(snap) => NodeEvent::Completed(*snap),
                SnapshotEvent::Aborted { id, reason } => NodeEvent::Aborted { id, reason },
            };
            // A dropped handle receiver only means nobody listens any more.
            let _ = self.events.send(event);
        }
    }
}
