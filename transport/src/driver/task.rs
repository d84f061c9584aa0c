//! The endpoint task: one loop owning the socket, the core and the fault injector.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use shutter_vclock::NodeId;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::clock::Clock;
use super::{DriverCounters, DriverError, EndpointStats, canonical, check_peer};
use crate::faults::{Delivery, Faults};
use crate::{Core, Event, MessageId, Time};

/// Largest UDP payload; the receive buffer must hold any datagram so that oversized ones
/// reach the core (which drops and counts them) instead of being silently truncated.
const RECV_BUFFER: usize = 65_536;

/// Requests from [`super::Endpoint`] handles.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a message once the peer's window has room.
    Send {
        peer: NodeId,
        message: Vec<u8>,
        /// `Core::send_urgent` instead of `Core::send`.
        urgent: bool,
        reply: oneshot::Sender<Result<MessageId, DriverError>>,
    },
    /// Register a peer at an address.
    AddPeer {
        peer: NodeId,
        addr: SocketAddr,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    /// `Core::expedite`.
    Expedite,
    /// Report statistics.
    Stats {
        reply: oneshot::Sender<EndpointStats>,
    },
    /// Stop the loop.
    Close,
}

/// A send waiting for window space.
/// A message waiting for window space: bytes, urgent, and where to answer.
type PendingSend = (
    Vec<u8>,
    bool,
    oneshot::Sender<Result<MessageId, DriverError>>,
);

/// A datagram copy held back by the faults, ordered by release time then insertion.
type Delayed = Reverse<(Time, u64, NodeId, Vec<u8>)>;

/// State of the endpoint task.
pub(crate) struct Driver {
    /// The requested bind address (its family decides which peers are reachable).
    listen: SocketAddr,
    local: NodeId,
    socket: UdpSocket,
    core: Core,
    faults: Option<Faults>,
    clock: Clock,
    /// Destination address per peer, in the socket's address family.
    peer_addrs: HashMap<NodeId, SocketAddr>,
    /// Peer per canonical source address.
    sources: HashMap<SocketAddr, NodeId>,
    events: mpsc::UnboundedSender<Event>,
    /// Sends waiting for window space, per peer, in arrival order.
    pending: BTreeMap<NodeId, VecDeque<PendingSend>>,
    delayed: BinaryHeap<Delayed>,
    delayed_seq: u64,
    fault_out: Vec<Delivery>,
    counters: DriverCounters,
}

impl Driver {
    #[allow(clippy::too_many_arguments)] // internal constructor, called once
    pub(crate) fn new(
        listen: SocketAddr,
        local: NodeId,
        socket: UdpSocket,
        core: Core,
        faults: Option<Faults>,
        clock: Clock,
        peers: Vec<(NodeId, SocketAddr)>,
        sources: HashMap<SocketAddr, NodeId>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Driver {
        let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        let peer_addrs = peers
            .into_iter()
            .map(|(peer, addr)| (peer, sendable(addr, v6)))
            .collect();
        Driver {
            listen,
            local,
            socket,
            core,
            faults,
            clock,
            peer_addrs,
            sources,
            events,
            pending: BTreeMap::new(),
            delayed: BinaryHeap::new(),
            delayed_seq: 0,
            fault_out: Vec::new(),
            counters: DriverCounters::default(),
        }
    }

    /// Runs until `Close` or until every handle is gone; returns the final statistics.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> EndpointStats {
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(self.clock.instant(deadline.unwrap_or(Time::MAX)));
            tokio::select! {
                // Commands first: a full window is relieved by acks that arrive on the
                // socket, but the stats/close requests must not starve behind traffic.
                biased;
                command = commands.recv() => match command {
                    Some(Command::Send { peer, message, urgent, reply }) => {
                        self.pending.entry(peer).or_default().push_back((message, urgent, reply));
                    }
                    Some(Command::AddPeer { peer, addr, reply }) => {
                        let _ = reply.send(self.add_peer(peer, addr));
                    }
                    Some(Command::Expedite) => {
                        let now = self.clock.now();
                        self.core.expedite(now);
                    }
                    Some(Command::Stats { reply }) => {
                        let _ = reply.send(self.stats());
                    }
                    Some(Command::Close) | None => break,
                },
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.on_datagram(&buf[..len], from),
                    Err(e) => {
                        // Unconnected UDP sockets report little here (ICMP errors on some
                        // platforms); nothing to do but count and keep going.
                        self.counters.recv_errors += 1;
                        tracing::debug!(error = %e, "recv_from failed");
                    }
                },
                () = sleep, if deadline.is_some() => self.on_timer(),
            }
            self.drain().await;
        }
        self.stats()
    }

    fn add_peer(&mut self, peer: NodeId, addr: SocketAddr) -> Result<(), DriverError> {
        check_peer(self.listen, self.local, peer, addr)?;
        if self.peer_addrs.contains_key(&peer) {
            return Err(DriverError::DuplicatePeer(format!(
                "{peer} is already a peer"
            )));
        }
        if let Some(other) = self.sources.get(&canonical(addr)) {
            return Err(DriverError::DuplicatePeer(format!(
                "{other} already uses address {addr}"
            )));
        }
        let v6 = self.socket.local_addr().is_ok_and(|a| a.is_ipv6());
        self.peer_addrs.insert(peer, sendable(addr, v6));
        self.sources.insert(canonical(addr), peer);
        self.core.add_peer(peer);
        Ok(())
    }

    /// The earliest of the core's timer and the first delayed datagram.
    fn next_deadline(&self) -> Option<Time> {
        let delayed = self.delayed.peek().map(|Reverse((at, ..))| *at);
        match (self.core.poll_timeout(), delayed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        self.counters.datagrams_received += 1;
        match self.sources.get(&canonical(from)) {
            Some(&peer) => {
                let now = self.clock.now();
                self.core.handle_datagram(now, peer, bytes);
            }
            None => {
                self.counters.unknown_source_dropped += 1;
                tracing::debug!(%from, len = bytes.len(), "datagram from unknown address dropped");
            }
        }
    }

    fn on_timer(&mut self) {
        let now = self.clock.now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        // Released delayed copies are sent by `drain`.
    }

    /// Feeds waiting sends into the core, then sends everything the core and the delay
    /// queue have due, then forwards events: the drain the core requires after an input.
    async fn drain(&mut self) {
        let now = self.clock.now();
        self.admit_pending(now);
        while let Some(transmit) = self.core.poll_transmit(now) {
            match self.faults.as_mut() {
                None => self.send_now(transmit.to, &transmit.bytes).await,
                Some(faults) => {
                    faults.apply(
                        now,
                        self.local,
                        transmit.to,
                        &transmit.bytes,
                        &mut self.fault_out,
                    );
                    for copy in std::mem::take(&mut self.fault_out) {
                        self.delayed_seq += 1;
                        self.delayed.push(Reverse((
                            copy.at,
                            self.delayed_seq,
                            transmit.to,
                            copy.bytes,
                        )));
                    }
                }
            }
        }
        let now = self.clock.now();
        while self
            .delayed
            .peek()
            .is_some_and(|Reverse((at, ..))| *at <= now)
        {
            if let Some(Reverse((_, _, to, bytes))) = self.delayed.pop() {
                self.send_now(to, &bytes).await;
            }
        }
        while let Some(event) = self.core.poll_event() {
            // A closed receiver means the endpoint handle is gone; the loop ends at the
            // next command poll, so events can be discarded meanwhile.
            let _ = self.events.send(event);
        }
    }

    /// Hands waiting messages to the core while their peer's window has room.
    fn admit_pending(&mut self, now: Time) {
        for (&peer, queue) in &mut self.pending {
            while let Some((message, urgent, reply)) = queue.pop_front() {
                if reply.is_closed() {
                    continue; // the caller gave up waiting
                }
                if !self.core.can_send(peer) && self.peer_addrs.contains_key(&peer) {
                    queue.push_front((message, urgent, reply));
                    break;
                }
                let sent = if urgent {
                    self.core.send_urgent(now, peer, message)
                } else {
                    self.core.send(now, peer, message)
                };
                match sent {
                    Ok(id) => {
                        let _ = reply.send(Ok(id));
                    }
                    Err(e) => {
                        // `WindowFull` cannot happen after `can_send`; anything else
                        // (too large, unknown peer) is the caller's to handle.
                        let _ = reply.send(Err(DriverError::Send(e)));
                    }
                }
            }
        }
        self.pending.retain(|_, q| !q.is_empty());
    }

    async fn send_now(&mut self, to: NodeId, bytes: &[u8]) {
        let Some(&addr) = self.peer_addrs.get(&to) else {
            // The core only transmits to registered peers, all of which have an address.
            self.counters.send_errors += 1;
            return;
        };
        match self.socket.send_to(bytes, addr).await {
            Ok(_) => self.counters.datagrams_sent += 1,
            Err(e) => {
                self.counters.send_errors += 1;
                tracing::debug!(%addr, error = %e, "send_to failed; the protocol will retransmit");
            }
        }
    }

    fn stats(&self) -> EndpointStats {
        let mut driver = self.counters.clone();
        driver.delayed_queued = self.delayed.len() as u64;
        EndpointStats {
            core: self.core.stats().clone(),
            faults: self
                .faults
                .as_ref()
                .map(|f| f.stats().clone())
                .unwrap_or_default(),
            driver,
        }
    }
}

/// The address to send to from a socket of the given family: IPv4 peers are reached from
/// an IPv6 socket through their IPv4-mapped address.
fn sendable(addr: SocketAddr, socket_is_v6: bool) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) if socket_is_v6 => {
            SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port())
        }
        _ => addr,
    }
}
