//! The sans-IO protocol core: reliable, exactly-once, unordered message delivery over
//! lossy datagrams. No clock reads, no sockets, no async: the driver feeds inputs with a
//! `now` and drains outputs (see [`Core`] for the call order).
//!
//! # Protocol in brief
//! Messages get per-destination ids from 0 and are cut into balanced fragments carried
//! in DATA frames; several frames share a datagram up to `max_datagram`. Every datagram
//! has a fresh packet number (never reused, QUIC style) and receivers acknowledge packet
//! numbers with SACK ranges, so RTT samples are unambiguous. Loss is detected by packet
//! threshold 3, time threshold 9/8 RTT, and an RTO with exponential backoff; the lost
//! fragments go into new packets. Receivers deliver each message once, whole, as soon
//! as it is complete (or in id order in [`Config::ordered`] mode).
//!
//! # Incarnations
//! Every header carries the sender's incarnation and the receiver's incarnation as the
//! sender knows it. A larger incarnation from a peer means it restarted: receive state
//! for it is reset, [`Event::PeerRestarted`] is emitted, then [`Event::Abandoned`] for
//! every unacknowledged message sent to its old life, and message ids towards it start
//! again at 0 (ids are per (peer, peer incarnation)). Datagrams from a smaller
//! incarnation, or addressed to an older incarnation of ours, are dropped; in the latter
//! case we answer with a PING so the peer learns our new incarnation.
//!
//! # Memory bounds (per peer unless noted)
//! * send: `max_in_flight` messages of at most `max_message` bytes; `max_packets_in_flight`
//!   tracked packets; a retransmit queue of at most one entry per unacked fragment;
//! * receive: a dedup set of at most `dedup_window` ids, `max_reassembly_bytes` of partial
//!   messages, an ordered-mode reorder buffer of at most `dedup_window` messages;
//! * acks: 256 ranges of received packet numbers and 256 sent-ACK records; 1024
//!   records of packets declared lost (to detect spurious losses);
//! * the event queue grows only by what one call produces; drain it after every call.
//!   Outgoing datagrams are built lazily in [`Core::poll_transmit`], never queued.

mod ack;
mod config;
mod peer;
mod recv;
mod rtt;
mod schedule;
mod send;
mod stats;

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shutter_vclock::NodeId;
use thiserror::Error;

use crate::auth::{Auth, Sealer};
use crate::time::Time;
use crate::wire::{self, AckFrame, DecodeError, Frame, Header, Writer};

pub use config::{Config, ConfigError, MAX_DATAGRAM, MIN_DATAGRAM};
pub use stats::{LATENCY_MAX_US, RttStats, Stats};

use config::ACK_BUDGET;
use peer::{Peers, Timer};
use recv::DataOutcome;
use schedule::Schedule;
use send::{FragmentKind, LossPrior};

/// Identifier of a message, per destination peer (and peer incarnation), from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u64);

/// A datagram for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination node.
    pub to: NodeId,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// Why [`Core::send`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SendError {
    /// Too many unacknowledged messages to this peer; wait for [`Event::Writable`].
    #[error("send window full")]
    WindowFull,
    /// The message exceeds `max_message`.
    #[error("message too large")]
    TooLarge,
    /// The destination was not added with [`Core::add_peer`] (or is this node).
    #[error("unknown peer")]
    UnknownPeer,
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message arrived; each message is delivered exactly once per incarnation
    /// pair, not in order unless [`Config::ordered`].
    Delivered {
        /// The sender.
        from: NodeId,
        /// Its id at the sender.
        id: MessageId,
        /// The message.
        bytes: Vec<u8>,
        /// The sender's clock at the first transmission.
        sent_at: Time,
    },
    /// The peer has received the whole message.
    Acked {
        /// The receiver.
        to: NodeId,
        /// The message.
        id: MessageId,
    },
    /// Window space freed after a `WindowFull` refusal.
    Writable {
        /// The peer that can be sent to again.
        to: NodeId,
    },
    /// Nothing heard for `idle_timeout` while waiting for the peer. Emitted once; again
    /// only after the peer is heard from and then lost again. Retransmission continues.
    Unreachable {
        /// The silent peer.
        peer: NodeId,
    },
    /// The peer came back with a new incarnation (emitted before its `Abandoned` events).
    PeerRestarted {
        /// The peer.
        peer: NodeId,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// The message will never be acknowledged: its receiver restarted before
    /// acknowledging it. It may or may not have been delivered to the old incarnation,
    /// and it will never be delivered to the new one.
    Abandoned {
        /// The receiver.
        to: NodeId,
        /// The message.
        id: MessageId,
        /// Its bytes, as given to [`Core::send`], so the sender can tell its
        /// application what did not arrive.
        bytes: Vec<u8>,
    },
}

/// The protocol state machine of one node.
///
/// # Call order
/// After every input ([`Core::send`], [`Core::handle_datagram`], [`Core::handle_timeout`],
/// [`Core::add_peer`], [`Core::monitor`]): drain [`Core::poll_transmit`] until `None`,
/// drain [`Core::poll_event`] until `None`, then re-arm the timer from
/// [`Core::poll_timeout`] and call `handle_timeout` when it expires (calling it early or
/// late is harmless). `now` must never go backwards.
#[derive(Debug)]
pub struct Core {
    config: Config,
    max_fragment: usize,
    peers: Peers,
    events: VecDeque<Event>,
    stats: Stats,
    /// Round-robin start for `poll_transmit`, so no peer starves the others.
    next_peer: u32,
    /// Which peers have timers armed and which may have something to send.
    schedule: Schedule,
    /// Seals and opens datagrams (`None`: plain mode).
    sealer: Option<Sealer>,
    /// Plaintext of the datagram being processed (reused).
    scratch: Vec<u8>,
    /// Loss on any link, for links too young to judge (see `LossPrior`).
    loss_prior: LossPrior,
}

impl Core {
    /// Creates a core after validating `config`.
    pub fn new(config: Config) -> Result<Core, ConfigError> {
        config.validate()?;
        let sealer = match &config.auth {
            Auth::Insecure => None,
            Auth::Keys(ring) => Some(Sealer::new(ring.clone())),
        };
        Ok(Core {
            max_fragment: config.max_fragment(),
            peers: Peers::new(&config),
            config,
            events: VecDeque::new(),
            stats: Stats::default(),
            next_peer: 0,
            schedule: Schedule::default(),
            sealer,
            scratch: Vec::new(),
            loss_prior: LossPrior::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's id.
    pub fn local(&self) -> NodeId {
        self.config.local
    }

    /// This node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.config.incarnation
    }

    /// Counters and estimates.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Adds a member; datagrams from non-members are dropped. Adding oneself or an
    /// existing peer does nothing.
    pub fn add_peer(&mut self, peer: NodeId) {
        if peer != self.config.local {
            self.peers.insert(peer);
        }
    }

    /// Forgets a member for good (it left the cluster): whatever was in flight to it is
    /// dropped without events, and its datagrams count as from an unknown peer from now
    /// on. Returns how many messages were unacknowledged.
    pub fn remove_peer(&mut self, peer: NodeId) -> usize {
        self.schedule.remove(peer);
        match self.peers.remove(&peer) {
            Some(Some(mut p)) => p.send.reset().len(),
            // Never changed: nothing was sent to it.
            _ => 0,
        }
    }

    /// Whether `peer` is a member.
    pub fn has_peer(&self, peer: NodeId) -> bool {
        self.peers.contains_key(&peer)
    }

    /// Watches `peer`'s liveness even with nothing outstanding: keepalive pings every
    /// `keepalive`, and `Unreachable` after `idle_timeout` of silence.
    pub fn monitor(&mut self, now: Time, peer: NodeId, on: bool) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.monitor = on;
        }
        self.touch(now, peer);
        self.check_schedule();
    }

    /// The peer's incarnation as last seen (`None` if not a member, 0 if never heard).
    pub fn peer_incarnation(&self, peer: NodeId) -> Option<u64> {
        self.peers.get(&peer).map(|p| p.incarnation)
    }

    /// Every message from `peer` (its current incarnation) with an id below this was
    /// delivered, in [`Event::Delivered`]s already queued or taken: what a receiver may
    /// forget about them once it drained [`Core::poll_event`]. 0 for an unknown peer.
    pub fn received_below(&self, peer: NodeId) -> u64 {
        self.peers
            .get(&peer)
            .map_or(0, |p| p.recv.delivered_below(&self.config))
    }

    /// Unacknowledged messages to `peer`.
    pub fn unacked(&self, peer: NodeId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.send.unacked())
    }

    /// The peers holding unacknowledged messages, ascending. Visits only peers whose
    /// state was ever built, so it costs one pointer check per idle peer instead of a
    /// lookup (see `Peers`): what lets an application ask "is everything acknowledged?"
    /// every step in a large cluster.
    pub fn unacked_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers
            .built_by_id()
            .filter(|(_, p)| p.send.unacked() > 0)
            .map(|(id, _)| id)
    }

    /// Whether [`Core::send`] to `to` would currently succeed (for a small enough message).
    pub fn can_send(&self, to: NodeId) -> bool {
        self.peers
            .get(&to)
            .is_some_and(|p| !p.send.window_full(&self.config))
    }

    /// The id the next successful send to `to` gets.
    pub fn next_message_id(&self, to: NodeId) -> MessageId {
        MessageId(self.peers.get(&to).map_or(0, |p| p.send.next_id))
    }

    /// Queues a message for reliable delivery to `to`.
    pub fn send(
        &mut self,
        now: Time,
        to: NodeId,
        message: Vec<u8>,
    ) -> Result<MessageId, SendError> {
        self.send_with(now, to, message, false)
    }

    /// Like [`Core::send`], and on a lossy link every fragment goes out again in each
    /// of the next 1-4 packets (more copies the lossier the link's measured loss),
    /// without waiting for a loss to be detected: a lost datagram then rarely costs a
    /// retransmission timeout. For small latency-critical messages (a
    /// snapshot's control messages), at the price of their bytes twice. A link counts as
    /// lossy while it lost a packet within [`Config::urgent_echo_window`].
    pub fn send_urgent(
        &mut self,
        now: Time,
        to: NodeId,
        message: Vec<u8>,
    ) -> Result<MessageId, SendError> {
        self.send_with(now, to, message, true)
    }

    /// To every peer on a lossy link (one that lost a packet within
    /// [`Config::urgent_echo_window`], or a young link, with too few packets to judge,
    /// while another link of this node lost one), sends one more copy of everything in
    /// flight in the next packet, without waiting for loss detection: for the moment the
    /// application starts waiting for what it sent (a snapshot's local cut: channels close
    /// only once those messages arrive). Clean links and idle peers are left alone.
    pub fn expedite(&mut self, now: Time) {
        let window = self.config.urgent_echo_window;
        let prior = self.loss_prior;
        // Then every built peer is touched. Nothing was ever sent to a fresh peer, so
        // expediting leaves it as it is, deadline-free (see `Peers`), and touching it
        // would only make `poll_transmit` find nothing to send it, with no side effect:
        // so fresh peers are left out, which at 256 nodes spared ~200 of 255 re-indexings
        // per local cut.
        let touched = self.peers.for_each_built(&self.config, |p| {
            p.send.expedite(now, window, &prior);
            p.refresh_expect(now);
        });
        for (id, next) in touched {
            self.schedule.touch(id, next);
        }
        self.check_schedule();
    }

    fn send_with(
        &mut self,
        now: Time,
        to: NodeId,
        message: Vec<u8>,
        urgent: bool,
    ) -> Result<MessageId, SendError> {
        let p = self.peers.get_mut(&to).ok_or(SendError::UnknownPeer)?;
        if message.len() > self.config.max_message {
            return Err(SendError::TooLarge);
        }
        if p.send.window_full(&self.config) {
            p.send.blocked = true;
            return Err(SendError::WindowFull);
        }
        let urgent = urgent || (self.config.lone_urgent && p.send.unacked() == 0);
        let id = p.send.push(message, self.max_fragment, urgent);
        self.stats.messages_sent += 1;
        self.touch(now, to);
        self.check_schedule();
        Ok(MessageId(id))
    }

    /// Processes one received datagram. `from` is the node the driver resolved from the
    /// source address; the header must agree. Invalid input is dropped and counted.
    pub fn handle_datagram(&mut self, now: Time, from: NodeId, bytes: &[u8]) {
        self.datagram(now, from, bytes);
        self.touch(now, from);
        self.check_schedule();
    }

    fn datagram(&mut self, now: Time, from: NodeId, bytes: &[u8]) {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if self.sealer.is_some() {
            return self.handle_sealed(now, from, bytes);
        }
        let (header, frames) = match wire::decode(bytes) {
            Ok(d) => d,
            Err(DecodeError::BadChecksum) => return self.stats.corrupt_dropped += 1,
            Err(DecodeError::WrongProtection(_)) => {
                return self.stats.wrong_protection_dropped += 1;
            }
            Err(_) => return self.stats.malformed_dropped += 1,
        };
        if !self.admit_header(from, &header) {
            return;
        }
        self.handle_frames(now, from, &header, &frames);
    }

    /// Sealed mode: nothing but the clear header is looked at before the datagram is
    /// authenticated, and nothing about the peer changes before it is (nor for a replay).
    fn handle_sealed(&mut self, now: Time, from: NodeId, bytes: &[u8]) {
        let (header, key_id, header_len) = match wire::decode_sealed_header(bytes) {
            Ok(h) => h,
            Err(DecodeError::WrongProtection(_)) => {
                return self.stats.wrong_protection_dropped += 1;
            }
            Err(_) => return self.stats.malformed_dropped += 1,
        };
        if !self.admit_header(from, &header) {
            return;
        }
        let dir = (
            key_id,
            header.sender,
            self.config.local,
            header.sender_incarnation,
        );
        let mut plain = std::mem::take(&mut self.scratch);
        let sealer = self.sealer.as_mut().expect("sealed mode");
        if !sealer.open(dir, header.packet_number, bytes, header_len, &mut plain) {
            self.scratch = plain;
            return self.stats.auth_failed_dropped += 1;
        }
        let p = self.peers.get_mut(&from).expect("admitted");
        if header.sender_incarnation > p.replay_incarnation {
            p.replay = Default::default();
            p.replay_incarnation = header.sender_incarnation;
        }
        if header.sender_incarnation == p.replay_incarnation
            && !p.replay.accept(header.packet_number)
        {
            self.scratch = plain;
            return self.stats.replayed_dropped += 1;
        }
        match wire::decode_frames(&plain) {
            Ok(frames) => self.handle_frames(now, from, &header, &frames),
            // Authentic but unparsable: a peer with another protocol version or a bug.
            Err(_) => self.stats.malformed_dropped += 1,
        }
        self.scratch = plain;
    }

    /// Checks of the header alone that touch no state; counts and refuses what fails.
    fn admit_header(&mut self, from: NodeId, header: &Header) -> bool {
        if header.sender != from {
            self.stats.sender_mismatch_dropped += 1;
            return false;
        }
        if from == self.config.local || !self.peers.contains_key(&from) {
            self.stats.unknown_peer_dropped += 1;
            return false;
        }
        if header.sender_incarnation == 0 {
            self.stats.malformed_dropped += 1;
            return false;
        }
        true
    }

    /// A datagram that passed every check of its protection: incarnations, duplicates,
    /// then its frames.
    fn handle_frames(&mut self, now: Time, from: NodeId, header: &Header, frames: &[Frame<'_>]) {
        let known = self.peers[&from].incarnation;
        if header.sender_incarnation < known {
            return self.stats.stale_incarnation_dropped += 1;
        }
        if known != 0 && header.sender_incarnation > known {
            self.peer_restarted(now, from, header.sender_incarnation);
        }
        let p = self.peers.get_mut(&from).expect("member");
        p.incarnation = header.sender_incarnation;
        p.last_heard = Some(now);
        p.unreachable = false;
        if header.dest_incarnation != 0 && header.dest_incarnation != self.config.incarnation {
            p.announce = true;
            return self.stats.stale_incarnation_dropped += 1;
        }
        if p.ack.is_duplicate(header.packet_number) {
            return self.stats.duplicate_packets += 1;
        }
        if header.dest_incarnation == 0 && frames.iter().any(|f| matches!(f, Frame::Data(_))) {
            // The sender has not yet heard which life of ours it talks to. Accepting its data
            // could deliver a message twice: once to our previous life (which crashed before
            // its ack got out) and again to this one when the sender retransmits. So take its
            // acks, refuse the data unacknowledged, and announce our incarnation with a PING;
            // the retransmission will name this life. Costs one round trip on first contact.
            p.announce = true;
            self.stats.refused_packets += 1;
            for frame in frames {
                if let Frame::Ack(ack) = frame {
                    self.on_ack(now, from, ack);
                }
            }
            return;
        }
        self.process_frames(now, from, header, frames);
    }

    fn process_frames(&mut self, now: Time, from: NodeId, header: &Header, frames: &[Frame<'_>]) {
        let mut wholes = Vec::new();
        let mut accept = true;
        for frame in frames {
            match frame {
                Frame::Ack(ack) => self.on_ack(now, from, ack),
                Frame::Ping => {}
                Frame::Data(d) => {
                    let p = self.peers.get_mut(&from).expect("member");
                    match p.recv.on_data(d, &self.config, &mut wholes) {
                        DataOutcome::Accepted => {}
                        DataOutcome::Duplicate => self.stats.duplicates_dropped += 1,
                        DataOutcome::Refused => accept = false,
                        DataOutcome::Invalid => {
                            self.stats.malformed_dropped += 1;
                            accept = false;
                            break;
                        }
                    }
                }
            }
        }
        for w in wholes {
            let latency = now.saturating_since(w.sent_at).as_micros() as u64;
            self.stats.record_delivery_latency(latency);
            self.stats.messages_delivered += 1;
            let ev = Event::Delivered {
                from,
                id: MessageId(w.id),
                bytes: w.bytes,
                sent_at: w.sent_at,
            };
            self.events.push_back(ev);
        }
        let p = self.peers.get_mut(&from).expect("member");
        if accept {
            let eliciting = frames.iter().any(|f| !matches!(f, Frame::Ack(_)));
            let ping = frames.iter().any(|f| matches!(f, Frame::Ping));
            p.ack.on_packet(
                now,
                header.packet_number,
                eliciting,
                ping,
                self.config.max_ack_delay,
            );
            // A PING from a peer we have no RTT sample for (its first contact with us)
            // gets a PING back with the ACK: its immediate ACK gives this direction a
            // sample too, so our first messages to it are not timed by `initial_rtt`.
            if ping && !p.rtt.has_sample() && p.send.packets_in_flight() == 0 {
                p.announce = true;
            }
        } else {
            self.stats.refused_packets += 1;
        }
        p.refresh_expect(now);
    }

    fn on_ack(&mut self, now: Time, from: NodeId, ack: &AckFrame) {
        let p = self.peers.get_mut(&from).expect("member");
        for &(lo, hi) in &ack.ranges {
            p.ack.on_peer_acked(lo, hi);
        }
        let spurious_before = p.send.spurious;
        let out = p.send.on_ack(ack, now);
        let withdrawn = p.send.spurious - spurious_before;
        self.stats.spurious_losses += withdrawn;
        if withdrawn > 0 && self.loss_prior.last_loss.is_some() {
            // Those losses were not: the node's record is what its links' standing
            // losses say (rare: only late ACKs pay this scan over the peers).
            self.loss_prior = LossPrior::default();
            // Fresh peers are skipped: they sent nothing, so lost nothing.
            for (_, q) in self.peers.built_by_id() {
                if let Some(at) = q.send.last_loss()
                    && self.loss_prior.last_loss.is_none_or(|l| at > l)
                {
                    self.loss_prior.note(at, q.send.loss_rate());
                }
            }
        }
        let p = self.peers.get_mut(&from).expect("member");
        if let Some(sent_at) = out.rtt_sent_at {
            let delay = Duration::from_micros(ack.ack_delay_micros);
            p.rtt.update(
                now.saturating_since(sent_at),
                delay,
                self.config.max_ack_delay,
            );
            let rtt = RttStats {
                srtt: p.rtt.srtt,
                rttvar: p.rtt.rttvar,
                min_rtt: p.rtt.min_rtt.unwrap_or(p.rtt.srtt),
                rto: p.rtt.rto(&self.config),
            };
            self.stats.rtt.insert(from, rtt);
        }
        let lost = p
            .send
            .detect_lost(now, p.send.loss_delay(p.rtt.loss_delay()));
        if lost > 0 {
            self.loss_prior.note(now, p.send.loss_rate());
        }
        self.stats.packets_lost += lost as u64;
        for id in out.completed {
            self.stats.messages_acked += 1;
            self.events.push_back(Event::Acked {
                to: from,
                id: MessageId(id),
            });
        }
        self.check_writable(from);
        if let Some(p) = self.peers.get_mut(&from) {
            p.refresh_expect(now);
        }
    }

    fn check_writable(&mut self, to: NodeId) {
        if let Some(p) = self.peers.get_mut(&to)
            && p.send.blocked
            && !p.send.window_full(&self.config)
        {
            p.send.blocked = false;
            self.events.push_back(Event::Writable { to });
        }
    }

    fn peer_restarted(&mut self, now: Time, peer: NodeId, incarnation: u64) {
        let p = self.peers.get_mut(&peer).expect("member");
        let abandoned = p.send.reset();
        p.recv = recv::RecvState::default();
        p.ack = ack::AckTracker::default();
        p.incarnation = incarnation;
        p.refresh_expect(now);
        self.stats.peer_restarts += 1;
        self.events
            .push_back(Event::PeerRestarted { peer, incarnation });
        for (id, bytes) in abandoned {
            self.stats.messages_abandoned += 1;
            self.events.push_back(Event::Abandoned {
                to: peer,
                id: MessageId(id),
                bytes,
            });
        }
        self.check_writable(peer);
    }

    /// Runs expired timers: loss detection, retransmission timeouts, unreachability.
    pub fn handle_timeout(&mut self, now: Time) {
        // Only the peers whose earliest deadline passed (see `schedule`).
        for id in self.schedule.due(now) {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            let t = p.deadlines(&self.config);
            let due = |timer: Timer| t[timer as usize].is_some_and(|d| d <= now);
            let mut lost = 0;
            if due(Timer::Loss) {
                lost += p
                    .send
                    .detect_lost(now, p.send.loss_delay(p.rtt.loss_delay()));
            }
            if due(Timer::Rto) {
                self.stats.rto_expirations += 1;
                lost += p.send.on_pto(now, self.config.max_packets_in_flight).1;
            }
            if lost > 0 {
                self.loss_prior.note(now, p.send.loss_rate());
            }
            self.stats.packets_lost += lost as u64;
            if due(Timer::Idle) {
                p.unreachable = true;
                self.stats.unreachable_events += 1;
                self.events.push_back(Event::Unreachable { peer: id });
            }
            self.touch(now, id);
        }
        self.check_schedule();
    }

    /// The next datagram to send, if any (ACKs, pings, new data, retransmissions).
    #[must_use]
    pub fn poll_transmit(&mut self, now: Time) -> Option<Transmit> {
        // Only peers touched since they last had nothing to send, and those with an ACK
        // or keepalive due (see `schedule`), round robin from `next_peer`.
        self.schedule.ready_due(now);
        while let Some(to) = self.schedule.next_ready(self.next_peer) {
            let built = self.build_packet(now, to);
            // Building (or finding nothing) changes deadlines: an ACK sent, a packet in
            // flight, an expired ACK deadline cleared.
            let next = self
                .peers
                .get(&to)
                .and_then(|p| p.next_deadline(&self.config));
            self.schedule.rearm(to, next);
            match built {
                Some(bytes) => {
                    self.next_peer = to.0.wrapping_add(1);
                    self.stats.datagrams_sent += 1;
                    self.stats.bytes_sent += bytes.len() as u64;
                    return Some(Transmit { to, bytes });
                }
                None => self.schedule.idle(to),
            }
        }
        self.check_schedule();
        None
    }

    /// After anything that may have changed `peer`'s state: start or stop its waiting
    /// clock, re-index its earliest deadline and let `poll_transmit` look at it.
    fn touch(&mut self, now: Time, peer: NodeId) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        let next = self
            .peers
            .next_deadline_after_touch(now, &peer, &self.config);
        self.schedule.touch(peer, next);
    }

    /// Debug builds of small cores: the timer index matches a full recomputation.
    fn check_schedule(&self) {
        #[cfg(debug_assertions)]
        if self.peers.len() <= 16 {
            let mut armed = 0;
            for (id, p) in self.peers.iter() {
                let next = p.next_deadline(&self.config);
                assert_eq!(self.schedule.armed(id), next, "stale timer index for {id}");
                armed += usize::from(next.is_some());
            }
            assert_eq!(self.schedule.len(), armed, "timer index of a removed peer");
        }
    }

    fn build_packet(&mut self, now: Time, to: NodeId) -> Option<Vec<u8>> {
        let cfg = &self.config;
        let stats = &mut self.stats;
        // A fresh peer has nothing to send (no ACK, ping or data is due), and looking
        // changes nothing (see `Peers`).
        let p = self.peers.get_built_mut(&to)?;
        p.send.begin_packet();
        if p.ack.ranges.is_empty() {
            p.ack.deadline = None;
        }
        let ack_due = p.ack.deadline.is_some_and(|d| d <= now);
        let keepalive_due = p.deadlines(cfg)[Timer::Keepalive as usize].is_some_and(|d| d <= now);
        // Data only goes to a known life of the peer (see `handle_datagram`): until its
        // incarnation is known, a PING asks for it (one at a time; a lost one is
        // forgotten by the probe timeout and the next call sends another).
        let known = p.incarnation != 0;
        let handshake = !known && p.send.has_pending() && p.send.packets_in_flight() == 0;
        // A probe (see `SendState::on_pto`) carries a PING and may exceed the window.
        let probe = p.send.probes_due > 0;
        let ping = p.announce || keepalive_due || handshake || probe;
        let data = known
            && (probe || p.send.packets_in_flight() < cfg.max_packets_in_flight)
            && p.send.has_pending();
        if !(ack_due || ping || data) {
            return None;
        }
        let pn = p.send.next_pn;
        p.send.next_pn += 1;
        let header = Header {
            sender: cfg.local,
            sender_incarnation: cfg.incarnation,
            dest_incarnation: p.incarnation,
            packet_number: pn,
        };
        let mut w = match &self.sealer {
            Some(s) => Writer::sealed(&header, s.send_id(), cfg.max_datagram),
            None => Writer::new(&header, cfg.max_datagram),
        };
        // An ACK-only packet that repeats many ranges elicits an ACK itself, so that we
        // learn the peer saw them and can stop repeating them (see `AckTracker`).
        let prune = ack_due
            && !data
            && p.ack.ranges.len() > ack::PRUNE_PING_RANGES
            && p.send.packets_in_flight() == 0;
        let mut pinged = false;
        if (ping || prune) && w.push_ping() {
            p.announce = false;
            pinged = true;
            stats.pings_sent += 1;
        }
        // Data first, leaving room for the ACK frame, which then takes all space left so
        // that late (reordered) packet numbers deep in the range list are reported too.
        let reserve = if p.ack.ranges.is_empty() {
            0
        } else {
            ACK_BUDGET
        };
        // A quiet link: nothing in flight and nothing sent for `max_ack_delay`, so no
        // packet is likely to follow soon that the peer's delayed ACK would cover too.
        // Right after a bare PING (first contact's, a keepalive) the link is as quiet:
        // that PING was acknowledged at once and carried nothing, so without this the
        // first data packet of every session went without a PING, and its loss cost
        // `max_ack_delay` more (seen in cold snapshots under loss: the pre-cut message a
        // channel waited for came 2.2 ms after its lost first send instead of 0.2 ms).
        let quiet = p.send.packets_in_flight() == 0
            && (p.send.last_eliciting_bare
                || p.send
                    .last_eliciting_sent
                    .is_none_or(|t| now.saturating_since(t) >= cfg.max_ack_delay));
        let mut fragments = Vec::new();
        if data {
            while let Some(f) = p.send.next_fragment() {
                let frame = p.send.frame(f, now);
                if frame.encoded_len() + reserve > w.remaining() || !w.push_data(&frame) {
                    break;
                }
                p.send
                    .commit(f, now, cfg.urgent_echo_window, &self.loss_prior);
                fragments.push((f.id, f.index));
                stats.fragments_sent += 1;
                match f.kind {
                    FragmentKind::First => {}
                    FragmentKind::Retransmit => stats.retransmits += 1,
                    FragmentKind::Probe => stats.probe_copies += 1,
                    FragmentKind::Echo => stats.urgent_copies += 1,
                }
            }
        }
        // The only packet on a quiet link, with nothing after it to send: the peer would
        // send its ACK alone after `max_ack_delay` anyway, so a PING asks for it at once
        // (the same ACK, sooner), and the probe timeout can then leave that delay out
        // (`Peer::rto`): a lost lone message costs SRTT + max(G, 4 RTTVAR) instead of
        // 2 ms more. A busier link is left alone: there the delayed ACK covers several
        // packets (with a PING on every packet that went out alone, 8 nodes offered
        // 8000 msgs/s each spent 14-15 us of CPU per message instead of 11-12).
        //
        // On a link that loses (see `SendState::lossy`) every tail gets the PING, quiet
        // or not: the last packet of a burst has nothing behind it whose ACK would
        // reveal its loss, so only the probe timeout finds it, and without the PING
        // that timeout waits `max_ack_delay` on top. This costs one immediate ACK per
        // burst on lossy links only (see ARCHITECTURE.md, "Tail PINGs").
        let tail = !fragments.is_empty() && !p.send.has_pending();
        let lossy = || p.send.lossy(now, cfg.urgent_echo_window, &self.loss_prior);
        if tail && !pinged && (quiet || lossy()) && w.push_ping() {
            pinged = true;
            stats.pings_sent += 1;
        }
        if !p.ack.ranges.is_empty() {
            let budget = w.remaining();
            if let Some(largest) =
                w.push_ack(p.ack.delay_micros(now), &p.ack.ranges.descending(), budget)
            {
                p.ack.on_ack_sent(pn, largest);
                stats.acks_sent += 1;
            }
        }
        if pinged || !fragments.is_empty() {
            if probe {
                p.send.on_probe_sent();
            }
            p.send.on_packet_sent(pn, now, fragments, pinged);
        } else {
            stats.ack_only_sent += 1;
        }
        Some(match self.sealer.as_mut() {
            Some(s) => {
                let (mut buf, header_len) = w.into_sealable();
                let dir = (s.send_id(), cfg.local, to, cfg.incarnation);
                s.seal(dir, pn, &mut buf, header_len);
                buf
            }
            None => w.finish(),
        })
    }

    /// The earliest time [`Core::handle_timeout`] has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.schedule.first()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
