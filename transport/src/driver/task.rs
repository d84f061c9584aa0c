//! The endpoint task: one loop owning a [`UdpIo`] and a bare [`Core`].

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use shutter_vclock::NodeId;
use tokio::sync::{mpsc, oneshot};

use super::alarm::Alarm;
use super::clock::Clock;
use super::io::{RECV_BATCH, RECV_BUFFER, UdpIo};
use super::{DriverError, EndpointStats};
use crate::{Core, Event, MessageId, SendError, Time};

/// Requests from [`super::Endpoint`] handles.
#[derive(Debug)]
pub(crate) enum Request {
    /// Send a message once the peer's window has room.
    Send {
        peer: NodeId,
        message: Vec<u8>,
        /// `Core::send_urgent` instead of `Core::send`.
        urgent: bool,
        reply: oneshot::Sender<Result<MessageId, DriverError>>,
    },
    /// Send every message of a batch, in order, as their peer's window gives room;
    /// one reply for the whole batch.
    SendBatch {
        peer: NodeId,
        messages: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<Vec<MessageId>, DriverError>>,
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

/// Sends waiting for window space.
enum PendingSend {
    /// One message: bytes, urgent, and where to answer.
    One(
        Vec<u8>,
        bool,
        oneshot::Sender<Result<MessageId, DriverError>>,
    ),
    /// The rest of a batch (already checked: every message fits and the peer exists),
    /// the ids of its messages admitted so far, and where to answer once all are.
    Batch {
        rest: std::vec::IntoIter<Vec<u8>>,
        ids: Vec<MessageId>,
        reply: oneshot::Sender<Result<Vec<MessageId>, DriverError>>,
    },
}

/// State of the endpoint task.
pub(crate) struct Driver {
    io: UdpIo,
    core: Core,
    clock: Clock,
    /// The core's next deadline (precise: see `Alarm`).
    alarm: Alarm,
    events: mpsc::UnboundedSender<Event>,
    /// Sends waiting for window space, per peer, in arrival order.
    pending: BTreeMap<NodeId, VecDeque<PendingSend>>,
}

impl Driver {
    pub(crate) fn new(
        io: UdpIo,
        core: Core,
        clock: Clock,
        events: mpsc::UnboundedSender<Event>,
    ) -> Driver {
        Driver {
            io,
            core,
            clock,
            alarm: Alarm::new(),
            events,
            pending: BTreeMap::new(),
        }
    }

    /// Runs until `Close` or until every handle is gone; returns the final statistics.
    pub(crate) async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
    ) -> EndpointStats {
        let mut buf = vec![0u8; RECV_BUFFER];
        'run: loop {
            let deadline = min_time(self.core.poll_timeout(), self.io.poll_timeout());
            let at = self.clock.instant(deadline.unwrap_or(Time::MAX));
            tokio::select! {
                // Requests first: a full window is relieved by acks that arrive on the
                // socket, but the stats/close requests must not starve behind traffic.
                biased;
                request = requests.recv() => {
                    // Take what else is queued too, so that sends coalesce into shared
                    // datagrams and one drain serves them all.
                    let Some(request) = request else { break 'run };
                    if !self.on_request(request) {
                        break 'run;
                    }
                    for _ in 1..RECV_BATCH {
                        let Ok(request) = requests.try_recv() else { break };
                        if !self.on_request(request) {
                            break 'run;
                        }
                    }
                }
                got = self.io.recv(&mut buf) => {
                    self.io.feed(self.clock.now(), &mut self.core, &mut buf, got);
                }
                () = self.alarm.sleep_until(at), if deadline.is_some() => {
                    fire_due(self.clock.now(), &mut self.core);
                    // Released delayed copies are sent by `drain`.
                }
            }
            self.drain().await;
        }
        self.stats()
    }

    /// Takes one request; false for `Close` (or every handle gone).
    fn on_request(&mut self, request: Request) -> bool {
        match request {
            Request::Send {
                peer,
                message,
                urgent,
                reply,
            } => {
                self.pending
                    .entry(peer)
                    .or_default()
                    .push_back(PendingSend::One(message, urgent, reply));
            }
            Request::SendBatch {
                peer,
                messages,
                reply,
            } => {
                // Refused whole or taken whole: once admission starts nothing can fail,
                // so the caller never has to learn which part of a batch went out.
                let refused = if !self.io.has_peer(peer) {
                    Some(SendError::UnknownPeer)
                } else {
                    let max = self.core.config().max_message;
                    messages
                        .iter()
                        .any(|m| m.len() > max)
                        .then_some(SendError::TooLarge)
                };
                if let Some(e) = refused {
                    let _ = reply.send(Err(DriverError::Send(e)));
                } else {
                    self.pending
                        .entry(peer)
                        .or_default()
                        .push_back(PendingSend::Batch {
                            ids: Vec::with_capacity(messages.len()),
                            rest: messages.into_iter(),
                            reply,
                        });
                }
            }
            Request::AddPeer { peer, addr, reply } => {
                let result = self.io.add_peer(peer, addr);
                if result.is_ok() {
                    self.core.add_peer(peer);
                }
                let _ = reply.send(result);
            }
            Request::Expedite => {
                let now = self.clock.now();
                self.core.expedite(now);
            }
            Request::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Request::Close => return false,
        }
        true
    }

    /// Feeds waiting sends into the core, then sends everything the core and the delay
    /// queue have due, then forwards events: the drain the core requires after an input.
    async fn drain(&mut self) {
        let now = self.clock.now();
        self.admit_pending(now);
        // Deliveries first: the application's task can run on the other worker while
        // this one makes the send syscalls (ACKs, mostly), which used to delay every
        // delivery by the time they took.
        self.forward_events();
        self.io.transmit_all(now, &mut self.core).await;
        self.forward_events();
    }

    fn forward_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            // A closed receiver means the endpoint handle is gone; the loop ends at the
            // next request poll, so events can be discarded meanwhile.
            let _ = self.events.send(event);
        }
    }

    /// Hands waiting messages to the core while their peer's window has room.
    fn admit_pending(&mut self, now: Time) {
        for (&peer, queue) in &mut self.pending {
            while let Some(pending) = queue.pop_front() {
                match pending {
                    PendingSend::One(_, _, reply) if reply.is_closed() => {} // gave up waiting
                    PendingSend::Batch { reply, .. } if reply.is_closed() => {} // withdrawn
                    blocked @ PendingSend::One(..)
                        if !self.core.can_send(peer) && self.io.has_peer(peer) =>
                    {
                        queue.push_front(blocked);
                        break;
                    }
                    PendingSend::One(message, urgent, reply) => {
                        let sent = if urgent {
                            self.core.send_urgent(now, peer, message)
                        } else {
                            self.core.send(now, peer, message)
                        };
                        // `WindowFull` cannot happen after `can_send`; anything else
                        // (too large, unknown peer) is the caller's to handle.
                        let _ = reply.send(sent.map_err(DriverError::Send));
                    }
                    PendingSend::Batch {
                        mut rest,
                        mut ids,
                        reply,
                    } => {
                        let mut failed = None;
                        while self.core.can_send(peer) {
                            let Some(message) = rest.next() else { break };
                            match self.core.send(now, peer, message) {
                                Ok(id) => ids.push(id),
                                Err(e) => {
                                    failed = Some(e);
                                    break;
                                }
                            }
                        }
                        if failed.is_none() && rest.len() > 0 {
                            // The window is full; more room comes with acks.
                            queue.push_front(PendingSend::Batch { rest, ids, reply });
                            break;
                        }
                        // Checked on arrival, so `failed` means the peer went away.
                        let _ = reply.send(match failed {
                            None => Ok(ids),
                            Some(e) => Err(DriverError::Send(e)),
                        });
                    }
                }
            }
        }
        self.pending.retain(|_, q| !q.is_empty());
    }

    fn stats(&self) -> EndpointStats {
        EndpointStats::of(&self.io, &self.core)
    }
}

/// Fires the core's timer if it is due at `now` (an alarm that woke a host loop may
/// have been for a delayed outgoing copy instead).
pub(crate) fn fire_due(now: Time, core: &mut Core) {
    if core.poll_timeout().is_some_and(|t| t <= now) {
        core.handle_timeout(now);
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn min_time(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
