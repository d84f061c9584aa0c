//! [`UdpIo`]: the socket side of one node, shared by every tokio host of a sans-IO core.
//!
//! It owns the UDP socket, the peer address table (node id to address and back), the
//! optional fault injector with its queue of delayed datagram copies, and the counters
//! of all that. It knows nothing of the protocol: a host loop reads datagrams with
//! [`UdpIo::recv`], hands them to its core (the transport [`crate::Core`], or a whole
//! node stack built on it), and writes what the core transmits with
//! [`UdpIo::transmit`]. [`super::Endpoint`]'s task is one such loop; the snapshot
//! runtime's node task is another.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};

use shutter_vclock::NodeId;
use tokio::net::UdpSocket;

use super::{DriverCounters, DriverError, EndpointConfig, canonical, check_peer, socket};
use crate::faults::{DatagramCopy, FaultStats, Faults};
use crate::{Core, Time};

/// Largest UDP payload; the receive buffer must hold any datagram so that oversized ones
/// reach the core (which drops and counts them) instead of being silently truncated.
pub const RECV_BUFFER: usize = 65_536;

/// Most inputs (datagrams, or requests) a host loop takes per wake before it drains its
/// core: enough to share the per-wake cost and let replies coalesce, few enough that
/// timers and requests are never held back long.
pub const RECV_BATCH: usize = 64;

/// A datagram copy held back by the faults, ordered by release time then insertion.
type Delayed = Reverse<(Time, u64, NodeId, Vec<u8>)>;

/// One node's UDP socket, peer table and fault injector; see the module docs.
#[derive(Debug)]
pub struct UdpIo {
    /// The requested bind address (its family decides which peers are reachable).
    listen: SocketAddr,
    local: NodeId,
    local_addr: SocketAddr,
    socket: UdpSocket,
    faults: Option<Faults>,
    /// Destination address per peer, in the socket's address family.
    peer_addrs: HashMap<NodeId, SocketAddr>,
    /// Peer per canonical source address.
    sources: HashMap<SocketAddr, NodeId>,
    delayed: BinaryHeap<Delayed>,
    delayed_seq: u64,
    fault_out: Vec<DatagramCopy>,
    counters: DriverCounters,
}

impl UdpIo {
    /// Binds `config.listen` (socket2: buffer sizes, no `SO_REUSEADDR`, nonblocking) with
    /// `peers` as the address table; `epoch` is the fault plan's time zero. Needs a tokio
    /// runtime. The core is not touched: register the same peers with it.
    pub fn bind(
        config: &EndpointConfig,
        peers: &[(NodeId, SocketAddr)],
        epoch: Time,
    ) -> Result<UdpIo, DriverError> {
        let faults = match config.faults.clone() {
            Some(plan) => Some(Faults::with_epoch(plan, epoch)?),
            None => None,
        };
        let sources = peer_table(config, peers)?;
        let socket = socket::bind(config.listen, config.recv_buffer, config.send_buffer)?;
        let local_addr = socket.local_addr().map_err(|source| DriverError::Bind {
            addr: config.listen,
            source,
        })?;
        let v6 = local_addr.is_ipv6();
        Ok(UdpIo {
            listen: config.listen,
            local: config.core.local,
            local_addr,
            socket,
            faults,
            peer_addrs: peers
                .iter()
                .map(|&(peer, addr)| (peer, sendable(addr, v6)))
                .collect(),
            sources,
            delayed: BinaryHeap::new(),
            delayed_seq: 0,
            fault_out: Vec::new(),
            counters: DriverCounters::default(),
        })
    }

    /// The bound address (with the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True if `peer` has an address.
    pub fn has_peer(&self, peer: NodeId) -> bool {
        self.peer_addrs.contains_key(&peer)
    }

    /// Adds `peer` at `addr` to the address table (register it with the core too).
    /// Fails if the id or the address is already in use or the address is unusable.
    pub fn add_peer(&mut self, peer: NodeId, addr: SocketAddr) -> Result<(), DriverError> {
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
        self.peer_addrs
            .insert(peer, sendable(addr, self.local_addr.is_ipv6()));
        self.sources.insert(canonical(addr), peer);
        Ok(())
    }

    /// Moves `peer`, already in the table, to `addr` (a peer behind a DNS name that came
    /// back on another address, e.g. a rescheduled container). Datagrams from its old
    /// address count as unknown from now on. The core keeps the peer's state: a
    /// restarted peer announces its new life as usual.
    pub fn set_peer_addr(&mut self, peer: NodeId, addr: SocketAddr) -> Result<(), DriverError> {
        check_peer(self.listen, self.local, peer, addr)?;
        if !self.peer_addrs.contains_key(&peer) {
            return Err(DriverError::DuplicatePeer(format!(
                "{peer} is not a peer yet (add it first)"
            )));
        }
        match self.sources.get(&canonical(addr)) {
            Some(&other) if other != peer => {
                return Err(DriverError::DuplicatePeer(format!(
                    "{other} already uses address {addr}"
                )));
            }
            _ => {}
        }
        self.sources.retain(|_, p| *p != peer);
        self.peer_addrs
            .insert(peer, sendable(addr, self.local_addr.is_ipv6()));
        self.sources.insert(canonical(addr), peer);
        Ok(())
    }

    /// The address datagrams to `peer` go to.
    pub fn peer_addr(&self, peer: NodeId) -> Option<SocketAddr> {
        self.peer_addrs.get(&peer).copied()
    }

    /// Waits for the next datagram from a known peer; returns its sender and length in
    /// `buf` (which should hold [`RECV_BUFFER`] bytes). Datagrams from unknown addresses
    /// and receive errors are counted and skipped. Cancel-safe: the only await point is
    /// the socket's `recv_from`.
    pub async fn recv(&mut self, buf: &mut [u8]) -> (NodeId, usize) {
        loop {
            let got = self.socket.recv_from(buf).await;
            if let Some(datagram) = self.admit(got) {
                return datagram;
            }
        }
    }

    /// Feeds `core` the datagram [`UdpIo::recv`] returned (`got`, its bytes in `buf`)
    /// and those already queued behind it ([`UdpIo::take_queued`]), all at `now`.
    pub fn feed(&mut self, now: Time, core: &mut Core, buf: &mut [u8], got: (NodeId, usize)) {
        let (peer, len) = got;
        core.handle_datagram(now, peer, &buf[..len]);
        self.take_queued(buf, |peer, bytes| core.handle_datagram(now, peer, bytes));
    }

    /// Hands `handle` the datagrams from known peers that are already queued on the
    /// socket, without waiting, at most [`RECV_BATCH`] - 1 of them: a host loop woken by
    /// [`UdpIo::recv`] takes what else arrived with it before draining its core once, so
    /// that replies coalesce into fewer datagrams and the loop's per-wake cost is shared.
    pub fn take_queued(&mut self, buf: &mut [u8], mut handle: impl FnMut(NodeId, &[u8])) {
        for _ in 1..RECV_BATCH {
            let Some((peer, len)) = self.try_recv(buf) else {
                return;
            };
            handle(peer, &buf[..len]);
        }
    }

    /// The next datagram from a known peer if one is already queued on the socket.
    fn try_recv(&mut self, buf: &mut [u8]) -> Option<(NodeId, usize)> {
        loop {
            let got = self.socket.try_recv_from(buf);
            if matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                return None;
            }
            if let Some(datagram) = self.admit(got) {
                return Some(datagram);
            }
        }
    }

    /// Counts one `recv_from` result; the sender and length if it came from a peer.
    fn admit(&mut self, got: std::io::Result<(usize, SocketAddr)>) -> Option<(NodeId, usize)> {
        match got {
            Ok((len, from)) => {
                self.counters.datagrams_received += 1;
                let peer = self.sources.get(&canonical(from)).copied();
                if peer.is_none() {
                    self.counters.unknown_source_dropped += 1;
                    tracing::debug!(%from, len, "datagram from unknown address dropped");
                }
                peer.map(|p| (p, len))
            }
            Err(e) => {
                // Unconnected UDP sockets report little here (ICMP errors on some
                // platforms); nothing to do but count and keep going.
                self.counters.recv_errors += 1;
                tracing::debug!(error = %e, "recv_from failed");
                None
            }
        }
    }

    /// Sends one datagram to `to` through the fault injector: lost copies are never
    /// sent, delayed ones wait for [`UdpIo::flush_delayed`].
    pub async fn transmit(&mut self, now: Time, to: NodeId, bytes: &[u8]) {
        let Some(faults) = self.faults.as_mut() else {
            self.send_now(to, bytes).await;
            return;
        };
        faults.apply(now, self.local, to, bytes, &mut self.fault_out);
        for copy in std::mem::take(&mut self.fault_out) {
            if copy.at <= now {
                self.send_now(to, &copy.bytes).await;
            } else {
                self.delayed_seq += 1;
                self.delayed
                    .push(Reverse((copy.at, self.delayed_seq, to, copy.bytes)));
            }
        }
    }

    /// Drains `core`'s transmissions onto the socket (the host loop's last step after an
    /// input), then sends the delayed copies that are due.
    pub async fn transmit_all(&mut self, now: Time, core: &mut Core) {
        while let Some(t) = core.poll_transmit(now) {
            self.transmit(now, t.to, &t.bytes).await;
        }
        self.flush_delayed(now).await;
    }

    /// When the first delayed copy is due, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.delayed.peek().map(|Reverse((at, ..))| *at)
    }

    /// Sends every delayed copy due by `now`.
    pub async fn flush_delayed(&mut self, now: Time) {
        while self
            .delayed
            .peek()
            .is_some_and(|Reverse((at, ..))| *at <= now)
        {
            if let Some(Reverse((_, _, to, bytes))) = self.delayed.pop() {
                self.send_now(to, &bytes).await;
            }
        }
    }

    async fn send_now(&mut self, to: NodeId, bytes: &[u8]) {
        let Some(&addr) = self.peer_addrs.get(&to) else {
            // Cores only transmit to registered peers, all of which have an address.
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

    /// The socket loop's counters (with the current delayed-queue length).
    pub fn counters(&self) -> DriverCounters {
        let mut c = self.counters.clone();
        c.delayed_queued = self.delayed.len() as u64;
        c
    }

    /// What the fault injector did (all zero without a plan).
    pub fn fault_stats(&self) -> FaultStats {
        self.faults
            .as_ref()
            .map(|f| f.stats().clone())
            .unwrap_or_default()
    }
}

/// Checks the peer table and builds the source-address lookup.
fn peer_table(
    config: &EndpointConfig,
    peers: &[(NodeId, SocketAddr)],
) -> Result<HashMap<SocketAddr, NodeId>, DriverError> {
    let mut addrs = HashMap::new();
    for &(peer, addr) in peers {
        check_peer(config.listen, config.core.local, peer, addr)?;
        if peers.iter().filter(|(p, _)| *p == peer).count() > 1 {
            return Err(DriverError::DuplicatePeer(format!(
                "{peer} is listed twice"
            )));
        }
        if let Some(other) = addrs.insert(canonical(addr), peer) {
            return Err(DriverError::DuplicatePeer(format!(
                "{other} and {peer} share address {addr}"
            )));
        }
    }
    Ok(addrs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    /// A peer behind a DNS name moves: datagrams go to and are accepted from the new
    /// address only, and another peer's address or an unknown peer is refused.
    #[tokio::test]
    async fn a_peer_moves_to_a_new_address() {
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let config = EndpointConfig::new(
            Config {
                local: NodeId(0),
                ..Config::default()
            },
            at(0),
        );
        let mut io = UdpIo::bind(
            &config,
            &[(NodeId(1), at(4001)), (NodeId(2), at(4002))],
            Time::ZERO,
        )
        .unwrap();
        io.set_peer_addr(NodeId(1), at(5001)).unwrap();
        assert_eq!(io.peer_addr(NodeId(1)), Some(at(5001)));
        assert_eq!(io.sources.get(&at(5001)), Some(&NodeId(1)));
        assert!(
            !io.sources.contains_key(&at(4001)),
            "the old address is forgotten"
        );
        let e = io.set_peer_addr(NodeId(1), at(4002)).unwrap_err();
        assert!(e.to_string().contains("n2 already uses"), "{e}");
        assert!(io.set_peer_addr(NodeId(7), at(4007)).is_err());
        // Moving to the address it has is a no-op, not a conflict with itself.
        io.set_peer_addr(NodeId(1), at(5001)).unwrap();
    }
}
