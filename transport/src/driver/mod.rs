//! The tokio driver: one UDP socket and one [`Core`] per node, over real sockets.
//!
//! Three pieces:
//!
//! * [`UdpIo`]: the socket side of one node (socket2: 4 MiB buffers requested, no
//!   `SO_REUSEADDR`, nonblocking; IPv4 or IPv6), its peer address table and the optional
//!   fault injector. Any tokio loop around a sans-IO core uses it: the [`Endpoint`] task
//!   below, and the snapshot runtime's node task around a whole node stack.
//! * [`Host`]: a `UdpIo` and a bare [`Core`] driven inside the application's own task
//!   ([`Host::send`], [`Host::next_event`]): no task boundary on a message's path, the
//!   shape of the snapshot runtime's node task (see the `host` module docs).
//! * [`Endpoint::bind`] spawns one task that owns a `UdpIo` and a bare [`Core`]: a thin
//!   loop over three inputs (datagrams from the socket, the earliest timer: the core's or
//!   a delayed outgoing datagram's, and requests from the [`Endpoint`] handle). After
//!   every input it drains the core (`poll_transmit` until `None`, then `poll_event`) as
//!   the core's docs require.
//!
//! With a [`FaultPlan`] every outgoing datagram passes through [`Faults`](crate::faults::Faults): lost copies
//! are never sent, delayed copies wait in a timer queue, duplicated ones are sent twice.
//! Faults are applied on the sending side only, so a plan on both endpoints of a pair
//! covers both directions.
//!
//! Events are queued without bound until the application reads them with
//! [`Endpoint::next_event`], [`Endpoint::next_events`] or [`Endpoint::recv`]; an
//! application that never reads them grows that queue (acknowledgements arrive for every
//! message sent).
//!
//! Every [`Endpoint::send`] is one request to the task and one reply. An application
//! with many messages at hand sends them with [`Endpoint::send_batch`] (one request and
//! one reply per batch) and reads with [`Endpoint::next_events`] (one wake-up per batch):
//! that is what reaches raw UDP's rate (`shutter-bench rate`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), shutter_transport::driver::DriverError> {
//! use shutter_transport::driver::{Endpoint, EndpointConfig};
//! use shutter_transport::Config;
//! use shutter_vclock::NodeId;
//!
//! let me = EndpointConfig::new(Config { local: NodeId(0), ..Config::default() }, "127.0.0.1:9000".parse().unwrap());
//! let mut ep = Endpoint::bind(me, vec![(NodeId(1), "127.0.0.1:9001".parse().unwrap())]).await?;
//! ep.send(NodeId(1), b"hello".to_vec()).await?;
//! while let Some(msg) = ep.recv().await {
//!     println!("{} says {:?}", msg.from, msg.bytes);
//! }
//! # Ok(()) }
//! ```

mod alarm;
mod clock;
mod host;
mod io;
pub mod runtime;
mod socket;
mod task;

use std::net::SocketAddr;

use serde::Serialize;
use shutter_vclock::NodeId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::faults::{FaultConfigError, FaultPlan, FaultStats};
use crate::{Config, ConfigError, Core, Event, MessageId, SendError, Stats, Time};
pub use alarm::Alarm;
pub use clock::Clock;
pub use host::Host;
pub use io::{RECV_BATCH, RECV_BUFFER, UdpIo};
use task::{Driver, Request};

/// Socket buffer size requested by default (Linux caps it at `net.core.rmem_max`).
pub const DEFAULT_SOCKET_BUFFER: usize = 4 << 20;

/// Everything [`Endpoint::bind`] needs besides the peer table.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// The protocol core's configuration (`core.local` is this node's id).
    pub core: Config,
    /// Address to bind; port 0 picks an ephemeral port (see [`Endpoint::local_addr`]).
    pub listen: SocketAddr,
    /// Faults applied to outgoing datagrams, if any.
    pub faults: Option<FaultPlan>,
    /// Requested `SO_RCVBUF` in bytes (0 keeps the system default).
    pub recv_buffer: usize,
    /// Requested `SO_SNDBUF` in bytes (0 keeps the system default).
    pub send_buffer: usize,
}

impl EndpointConfig {
    /// No faults and [`DEFAULT_SOCKET_BUFFER`]-sized socket buffers.
    pub fn new(core: Config, listen: SocketAddr) -> EndpointConfig {
        EndpointConfig {
            core,
            listen,
            faults: None,
            recv_buffer: DEFAULT_SOCKET_BUFFER,
            send_buffer: DEFAULT_SOCKET_BUFFER,
        }
    }
}

/// Why an endpoint could not be created or used.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The socket could not be created, configured or bound.
    #[error("cannot bind UDP socket on {addr}: {source}")]
    Bind {
        /// The address that was requested.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A peer's address cannot be sent to from this socket.
    #[error("peer {peer} has an unusable address {addr}: {reason}")]
    BadPeerAddress {
        /// The peer.
        peer: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same node id or address appears twice in the peer table, or is our own.
    #[error("peer table: {0}")]
    DuplicatePeer(String),
    /// The core configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The fault plan is invalid.
    #[error(transparent)]
    Faults(#[from] FaultConfigError),
    /// The core refused the message (too large, unknown peer).
    #[error("send refused: {0}")]
    Send(#[from] SendError),
    /// The endpoint's task has stopped (closed, or failed: see the logs).
    #[error("endpoint is closed")]
    Closed,
}

/// A message delivered to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sending node.
    pub from: NodeId,
    /// Its id, unique per sender and destination (what duplicates would repeat).
    pub id: MessageId,
    /// The message.
    pub bytes: Vec<u8>,
    /// When the sender sent it (sender's clock).
    pub sent_at: Time,
}

/// Counters of the driver loop itself (the core and the faults count the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DriverCounters {
    /// Datagrams read from the socket.
    pub datagrams_received: u64,
    /// Datagrams written to the socket (after faults: duplicates count twice).
    pub datagrams_sent: u64,
    /// Datagrams from addresses not in the peer table, dropped before the core.
    pub unknown_source_dropped: u64,
    /// `send_to` failures (logged; the protocol retransmits).
    pub send_errors: u64,
    /// `recv_from` failures (logged).
    pub recv_errors: u64,
    /// Delayed datagram copies waiting in the fault timer queue right now.
    pub delayed_queued: u64,
}

/// A snapshot of an endpoint's statistics.
#[derive(Clone, Debug)]
pub struct EndpointStats {
    /// The protocol core's counters and delivery-latency histogram.
    pub core: Stats,
    /// What the fault injector did to outgoing datagrams (all zero without a plan).
    pub faults: FaultStats,
    /// The driver loop's own counters.
    pub driver: DriverCounters,
}

impl EndpointStats {
    /// The statistics of a host loop's socket side and the core it drives.
    pub fn of(io: &UdpIo, core: &Core) -> EndpointStats {
        EndpointStats {
            core: core.stats().clone(),
            faults: io.fault_stats(),
            driver: io.counters(),
        }
    }
}

/// A cloneable handle that sends through an [`Endpoint`] (for sending from another task
/// while one task reads events).
#[derive(Clone, Debug)]
pub struct EndpointSender {
    requests: mpsc::UnboundedSender<Request>,
}

impl EndpointSender {
    /// Queues `message` for reliable delivery to `peer`, waiting while the peer's
    /// in-flight window is full. Returns the message's id once the core has accepted it.
    ///
    /// Cancel-safe in the sense that dropping the future before it completes withdraws
    /// the message if the core has not accepted it yet.
    pub async fn send(&self, peer: NodeId, message: Vec<u8>) -> Result<MessageId, DriverError> {
        self.send_with(peer, message, false).await
    }

    /// Like [`EndpointSender::send`] with [`crate::core::Core::send_urgent`]: on a lossy
    /// link every fragment is copied into the next packets, so a lost datagram rarely
    /// costs a retransmission timeout.
    pub async fn send_urgent(
        &self,
        peer: NodeId,
        message: Vec<u8>,
    ) -> Result<MessageId, DriverError> {
        self.send_with(peer, message, true).await
    }

    /// Queues every message of `messages` for reliable delivery to `peer`, in order, with
    /// one request to the endpoint's task for the whole batch (where [`EndpointSender::send`]
    /// costs one per message), and waits until the core has accepted the last one. Returns
    /// their ids in order.
    ///
    /// The batch is refused whole, before any of it is sent, if the peer is unknown or any
    /// message exceeds `max_message`. Dropping the future withdraws what the core has not
    /// accepted yet.
    pub async fn send_batch(
        &self,
        peer: NodeId,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<MessageId>, DriverError> {
        self.call(|reply| Request::SendBatch {
            peer,
            messages,
            reply,
        })
        .await?
    }

    /// See [`crate::core::Core::expedite`]; takes effect in the endpoint's task.
    pub fn expedite(&self) {
        // A closed endpoint has nothing in flight to hurry.
        let _ = self.requests.send(Request::Expedite);
    }

    async fn send_with(
        &self,
        peer: NodeId,
        message: Vec<u8>,
        urgent: bool,
    ) -> Result<MessageId, DriverError> {
        self.call(|reply| Request::Send {
            peer,
            message,
            urgent,
            reply,
        })
        .await?
    }

    /// Sends the request `make` builds around a reply channel and waits for the answer;
    /// `Closed` if the endpoint's task has stopped (before or while answering).
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(make(reply))
            .map_err(|_| DriverError::Closed)?;
        rx.await.map_err(|_| DriverError::Closed)
    }
}

/// The socket, the core with `peers` added, and the clock they share: what an
/// [`Endpoint`]'s task and a [`Host`] run on.
fn bind_parts(
    config: &EndpointConfig,
    peers: &[(NodeId, SocketAddr)],
) -> Result<(UdpIo, Core, Clock), DriverError> {
    config.core.validate()?;
    let clock = Clock::start();
    let io = UdpIo::bind(config, peers, clock.base())?;
    let mut core = Core::new(config.core.clone())?;
    for (peer, _) in peers {
        core.add_peer(*peer);
    }
    Ok((io, core, clock))
}

/// A node's transport over a real UDP socket; see the module docs.
#[derive(Debug)]
pub struct Endpoint {
    sender: EndpointSender,
    events: mpsc::UnboundedReceiver<Event>,
    local_addr: SocketAddr,
    task: Option<JoinHandle<EndpointStats>>,
}

impl Endpoint {
    /// Binds the socket on `config.listen`, registers `peers` with the core and starts the
    /// endpoint's task on the current tokio runtime.
    pub async fn bind(
        config: EndpointConfig,
        peers: Vec<(NodeId, SocketAddr)>,
    ) -> Result<Endpoint, DriverError> {
        let (io, core, clock) = bind_parts(&config, &peers)?;
        let local_addr = io.local_addr();
        let (requests, request_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(Driver::new(io, core, clock, event_tx).run(request_rx));
        Ok(Endpoint {
            sender: EndpointSender { requests },
            events,
            local_addr,
            task: Some(task),
        })
    }

    /// The bound address (with the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds a peer after start-up (for example once its ephemeral port is known).
    /// Fails if the id or the address is already in use or the address is unusable.
    pub async fn add_peer(&self, peer: NodeId, addr: SocketAddr) -> Result<(), DriverError> {
        self.sender
            .call(|reply| Request::AddPeer { peer, addr, reply })
            .await?
    }

    /// A cloneable sending handle.
    pub fn sender(&self) -> EndpointSender {
        self.sender.clone()
    }

    /// See [`EndpointSender::send`].
    pub async fn send(&self, peer: NodeId, message: Vec<u8>) -> Result<MessageId, DriverError> {
        self.sender.send(peer, message).await
    }

    /// See [`EndpointSender::send_urgent`].
    pub async fn send_urgent(
        &self,
        peer: NodeId,
        message: Vec<u8>,
    ) -> Result<MessageId, DriverError> {
        self.sender.send_urgent(peer, message).await
    }

    /// See [`EndpointSender::send_batch`].
    pub async fn send_batch(
        &self,
        peer: NodeId,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<MessageId>, DriverError> {
        self.sender.send_batch(peer, messages).await
    }

    /// The next event of any kind; `None` once the endpoint is closed and drained.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next delivered message, discarding other events; `None` once closed.
    pub async fn recv(&mut self) -> Option<Message> {
        while let Some(event) = self.events.recv().await {
            if let Event::Delivered {
                from,
                id,
                bytes,
                sent_at,
            } = event
            {
                return Some(Message {
                    from,
                    id,
                    bytes,
                    sent_at,
                });
            }
        }
        None
    }

    /// Waits for at least one event, then appends to `into` every event already queued,
    /// up to `limit`, and returns how many it appended; 0 once the endpoint is closed and
    /// drained. One wake-up then serves a whole batch, where [`Endpoint::next_event`]
    /// costs one per event.
    pub async fn next_events(&mut self, into: &mut Vec<Event>, limit: usize) -> usize {
        self.events.recv_many(into, limit).await
    }

    /// A snapshot of the core, fault and driver statistics.
    pub async fn stats(&self) -> Result<EndpointStats, DriverError> {
        self.sender.call(|reply| Request::Stats { reply }).await
    }

    /// Stops the task (datagrams still delayed by faults are discarded, unacknowledged
    /// messages are abandoned) and returns the final statistics.
    pub async fn close(mut self) -> Result<EndpointStats, DriverError> {
        // A send error means the task already stopped; joining it still yields its stats.
        let _ = self.sender.requests.send(Request::Close);
        let task = self.task.take().ok_or(DriverError::Closed)?;
        task.await.map_err(|_| DriverError::Closed)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Without this the task would live on while `EndpointSender` clones exist.
        let _ = self.sender.requests.send(Request::Close);
    }
}

/// Checks that `addr` can be sent to from a socket bound on `listen`.
pub(crate) fn check_peer(
    listen: SocketAddr,
    local: NodeId,
    peer: NodeId,
    addr: SocketAddr,
) -> Result<(), DriverError> {
    let bad = |reason| DriverError::BadPeerAddress { peer, addr, reason };
    if addr.ip().is_unspecified() {
        return Err(bad("unspecified IP (0.0.0.0 or ::) cannot be sent to"));
    }
    if addr.port() == 0 {
        return Err(bad("port 0 cannot be sent to"));
    }
    if listen.is_ipv4() && canonical(addr).is_ipv6() {
        return Err(bad("IPv6 peer but the endpoint listens on IPv4"));
    }
    if peer == local {
        return Err(DriverError::DuplicatePeer(format!(
            "{peer} is this endpoint's own id"
        )));
    }
    Ok(())
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4
/// sources) to plain IPv4 so lookups match however the peer was configured.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
