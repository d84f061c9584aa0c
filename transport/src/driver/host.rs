//! [`Host`]: one node's transport driven inside the application's own task.
//!
//! [`super::Endpoint`] runs the core in a task of its own, so every message crosses two
//! task boundaries (the application's send to the endpoint task, the endpoint task's
//! event to the application) and, on a busy runtime, waits for each task to be
//! scheduled. A `Host` is the same [`UdpIo`] and [`Core`] with no task in between, the
//! shape the snapshot runtime's node task has: the application calls
//! [`Host::send`] (the datagram leaves before it returns) and awaits
//! [`Host::next_event`], which receives, runs timers and sends what the core has due
//! (acknowledgements, retransmissions) while it waits. `shutter-bench netlat` measures
//! both against TCP.
//!
//! The price is the loop's discipline: the transport only makes progress inside
//! `next_event`, so an application that stops calling it for longer than a probe
//! timeout draws retransmissions and spurious probes from its peers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shutter_transport::driver::DriverError> {
//! use shutter_transport::driver::{EndpointConfig, Host};
//! use shutter_transport::{Config, Event};
//! use shutter_vclock::NodeId;
//!
//! let me = EndpointConfig::new(Config { local: NodeId(0), ..Config::default() }, "127.0.0.1:9000".parse().unwrap());
//! let mut host = Host::bind(me, vec![(NodeId(1), "127.0.0.1:9001".parse().unwrap())]).await?;
//! host.send(NodeId(1), b"hello".to_vec()).await?;
//! loop {
//!     if let Event::Delivered { from, bytes, .. } = host.next_event().await {
//!         println!("{from} says {bytes:?}");
//!     }
//! }
//! # }
//! ```

use std::net::SocketAddr;

use shutter_vclock::NodeId;

use super::alarm::Alarm;
use super::clock::Clock;
use super::io::{RECV_BUFFER, UdpIo};
use super::task::{fire_due, min_time};
use super::{DriverError, EndpointConfig, EndpointStats};
use crate::{Core, Event, MessageId, Time};

/// A node's transport over a real UDP socket, driven by the caller's task; see the
/// module docs.
#[derive(Debug)]
pub struct Host {
    io: UdpIo,
    core: Core,
    clock: Clock,
    alarm: Alarm,
    buf: Vec<u8>,
}

impl Host {
    /// Binds the socket on `config.listen` and registers `peers` with the core. Nothing
    /// is spawned.
    pub async fn bind(
        config: EndpointConfig,
        peers: Vec<(NodeId, SocketAddr)>,
    ) -> Result<Host, DriverError> {
        let (io, core, clock) = super::bind_parts(&config, &peers)?;
        Ok(Host {
            io,
            core,
            clock,
            alarm: Alarm::new(),
            buf: vec![0u8; RECV_BUFFER],
        })
    }

    /// The bound address (with the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.io.local_addr()
    }

    /// Adds a peer after start-up.
    pub fn add_peer(&mut self, peer: NodeId, addr: SocketAddr) -> Result<(), DriverError> {
        self.io.add_peer(peer, addr)?;
        self.core.add_peer(peer);
        Ok(())
    }

    /// True if a message to `to` would be taken now (its window has room); otherwise
    /// wait for [`Event::Writable`] from [`Host::next_event`].
    pub fn can_send(&self, to: NodeId) -> bool {
        self.core.can_send(to)
    }

    /// Sends `message` to `to` reliably (see [`Core::send`]); its datagram is on the
    /// socket when this returns. [`crate::SendError::WindowFull`] while too many
    /// messages to `to` are unacknowledged: wait for [`Event::Writable`].
    pub async fn send(&mut self, to: NodeId, message: Vec<u8>) -> Result<MessageId, DriverError> {
        self.send_with(to, message, false).await
    }

    /// Like [`Host::send`] with [`Core::send_urgent`].
    pub async fn send_urgent(
        &mut self,
        to: NodeId,
        message: Vec<u8>,
    ) -> Result<MessageId, DriverError> {
        self.send_with(to, message, true).await
    }

    async fn send_with(
        &mut self,
        to: NodeId,
        message: Vec<u8>,
        urgent: bool,
    ) -> Result<MessageId, DriverError> {
        // A peer unknown here is unknown to the core too (both learn peers together),
        // which refuses it with `UnknownPeer`.
        let now = self.clock.now();
        let id = if urgent {
            self.core.send_urgent(now, to, message)
        } else {
            self.core.send(now, to, message)
        }
        .map_err(DriverError::Send)?;
        self.io.transmit_all(now, &mut self.core).await;
        Ok(id)
    }

    /// The next event (a delivery, an acknowledgement, a peer's restart, ...). While
    /// none is ready it receives datagrams, fires the core's timers and sends what the
    /// core has due. Cancel-safe: it is only ever dropped while waiting for input, and
    /// everything due was sent before it waits.
    pub async fn next_event(&mut self) -> Event {
        loop {
            // Deliveries first, as in the endpoint task: what the last input made the
            // core send (acknowledgements, mostly) goes out once the application has
            // taken its events, at the latest before this waits for more input.
            if let Some(event) = self.core.poll_event() {
                return event;
            }
            let now = self.clock.now();
            self.io.transmit_all(now, &mut self.core).await;
            if let Some(event) = self.core.poll_event() {
                return event;
            }
            let deadline = min_time(self.core.poll_timeout(), self.io.poll_timeout());
            let at = self.clock.instant(deadline.unwrap_or(Time::MAX));
            tokio::select! {
                got = self.io.recv(&mut self.buf) => {
                    self.io.feed(self.clock.now(), &mut self.core, &mut self.buf, got);
                }
                () = self.alarm.sleep_until(at), if deadline.is_some() => {
                    fire_due(self.clock.now(), &mut self.core);
                }
            }
        }
    }

    /// See [`Core::expedite`].
    pub fn expedite(&mut self) {
        let now = self.clock.now();
        self.core.expedite(now);
    }

    /// Statistics so far.
    pub fn stats(&self) -> EndpointStats {
        EndpointStats::of(&self.io, &self.core)
    }
}
