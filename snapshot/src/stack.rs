//! [`Stack`]: everything one node runs, sans-IO, behind one input and one output surface.
//!
//! A stack owns the transport [`Core`], the snapshot [`Node`] (the application
//! [`Process`] plus a [`SnapshotEngine`]), the per-peer backlog of messages waiting for
//! window space, and every policy that ties them together:
//!
//! * envelopes: application messages and control messages share one transport stream
//!   ([`Envelope`]); one that does not decode, or comes from outside the membership, is
//!   dropped and counted ([`StackStats`]);
//! * control messages are sent urgent ([`Core::send_urgent`]): every snapshot round waits
//!   for the slowest of them;
//! * a local cut expedites what is in flight ([`Core::expedite`]): the node's channels
//!   close only once its pre-cut messages arrive;
//! * a peer the transport gives up on aborts the snapshots waiting for it; a peer that
//!   restarted does the same, its queued application messages are dropped (they were
//!   stamped for the ended session) and the engine tells it which sequence numbers it will
//!   never get (`handle_link_reset`); this node's own transport restart resets every link;
//! * per-peer FIFO backlogs keep the order in which the node produced messages, which the
//!   Chandy-Lamport baseline needs over an ordered transport;
//! * application headers ship lean ([`crate::lean`]): against the channel's newest
//!   baseline the transport acknowledged, decoded back before anything else looks at
//!   the message; both ends forget a channel's baselines when its session ends.
//!
//! The tokio runtime ([`crate::runtime`]) and the simulator are thin loops around it: they
//! feed datagrams, timeouts, ticks and commands in, and carry datagrams and events out.
//!
//! # Call order
//!
//! 1. an input: [`Stack::handle_datagram`], [`Stack::handle_timeout`],
//!    [`Stack::handle_tick`], [`Stack::handle_command`], [`Stack::start`],
//!    [`Stack::initiate`], [`Stack::add_peer`] or [`Stack::restart_transport`];
//! 2. drain [`Stack::poll_transmit`] until `None` and send each datagram;
//! 3. drain [`Stack::poll_event`] until `None`;
//! 4. re-arm the single timer from [`Stack::poll_timeout`].
//!
//! # The path of one application message
//!
//! `Context::send` (the process queues a payload) -> [`SnapshotEngine::on_app_send`]
//! (stamp: clock, sequence number) -> the peer's backlog while its window is full ->
//! [`crate::lean::Encoder`] and [`Envelope::to_bytes`] -> [`Core::send`] ->
//! [`Core::poll_transmit`] (a sealed datagram) -> socket; on the receiver:
//! [`Stack::handle_datagram`] -> [`Core`] (authenticate, reassemble, deduplicate) ->
//! [`Envelope::from_bytes`] and [`crate::lean::Decoder`] ->
//! [`SnapshotEngine::handle_app_receive`] (join announced snapshots, record) ->
//! [`Process::on_message`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_transport::Time;
use shutter_transport::core::{Config, ConfigError, Core, Event, MessageId, Transmit};
use shutter_vclock::NodeId;

use crate::checkpoint::Checkpoint;
use crate::engine::SnapshotEngine;
use crate::global::{AbortWhy, InitiateError, SnapshotEvent};
use crate::lean;
use crate::metrics::SnapshotMetrics;
use crate::process::{Node, Process, Undeliverable};
use crate::recovery::{Action, Change, Epoch, Recovery, RecoveryMsg, Removal, Restoring};
use crate::wire::{AppHeader, Envelope, LeanHead, LocalReport, SnapshotId};

/// How long a node halted for a rollback waits for the next round before it takes
/// over as coordinator.
pub const ROLLBACK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// What a stack tells its host besides datagrams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackEvent {
    /// A snapshot event: a local cut here, or the outcome of a snapshot this node
    /// initiated or took part in.
    Snapshot(SnapshotEvent),
    /// The transport heard nothing from `peer` for its idle timeout.
    PeerUnreachable(NodeId),
    /// A cluster-wide rollback wants this node's part of snapshot `id`: read it from the
    /// checkpoint store and call [`Stack::roll_back`] (with `None` if it is gone; a part
    /// a supplier sent is used then); if `removal` names this node as the heir, also the
    /// removed member's replica. First call [`Stack::supply`] with the same checkpoint:
    /// it sends the members `supply` names their parts.
    RestoreRequested {
        /// The rollback round.
        epoch: Epoch,
        /// The snapshot to go back to.
        id: SnapshotId,
        /// The member this round removes, and its heir.
        removal: Option<Removal>,
        /// Members that lack their part of `id` and get it from this node's replicas.
        supply: Vec<NodeId>,
    },
    /// A rollback round ended and the node runs again; `rolled_back_to` is the snapshot
    /// the cluster went back to (`None`: no snapshot was held by every member, nothing
    /// was restored).
    Resumed {
        /// The snapshot, if any.
        rolled_back_to: Option<SnapshotId>,
    },
    /// A round adds `node`, reachable at `addr` (`IP:PORT`): register it with the
    /// socket and call [`Stack::add_peer`], so the round's messages reach it.
    Joining {
        /// The new member.
        node: NodeId,
        /// Its UDP address, as the operator gave it.
        addr: String,
    },
    /// `peer` came back with a new transport incarnation (it restarted).
    PeerRestarted {
        /// The peer.
        peer: NodeId,
        /// Its new incarnation.
        incarnation: u64,
    },
}

/// Plain counters of one stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Application messages stamped and queued for the transport.
    pub app_sent: u64,
    /// Application messages delivered to the process (re-deliveries on restore excluded).
    pub app_delivered: u64,
    /// Application messages discarded because their sender had declared them lost
    /// after a restart (see [`crate::Delivery::stale`]).
    pub stale_discarded: u64,
    /// Transport messages that did not decode as an envelope (dropped).
    pub malformed_envelopes: u64,
    /// Messages from nodes outside the membership (dropped).
    pub non_member_dropped: u64,
    /// Envelopes the transport refused (larger than `max_message`; dropped).
    pub send_errors: u64,
    /// Queued application messages dropped because their peer restarted (the engine's
    /// `Lost` covers their sequence numbers) or this node's transport did.
    pub backlog_dropped: u64,
    /// Application and snapshot messages dropped because a rollback was under way or
    /// had happened since they were sent.
    pub rolled_back_dropped: u64,
    /// Application messages of the restored history that arrived before this node
    /// restored, held and delivered right after its restore.
    pub early_held: u64,
    /// Of those, dropped because more than [`EARLY_LIMIT`] bytes were held.
    pub early_dropped: u64,
    /// Application and snapshot messages of the history before a rollback round that
    /// arrived while this node was halted for it, held until the round's outcome: a
    /// restore drops them (counted in `rolled_back_dropped`), a round that ends without
    /// one hands them on.
    pub halted_held: u64,
    /// Of those, handed on because the round restored nothing.
    pub halted_released: u64,
    /// Of those, dropped because more than [`EARLY_LIMIT`] bytes were held: lost if
    /// the round restores nothing.
    pub halted_dropped: u64,
    /// Rollbacks this node went through (restored from a checkpoint).
    pub rollbacks: u64,
    /// Of those, restored from a part another member's replica supplied (this node's
    /// store did not hold it).
    pub restored_supplied: u64,
    /// Parts this node sent from its replicas to members that lacked them.
    pub parts_supplied: u64,
    /// Members removed from the cluster while this node ran.
    pub members_removed: u64,
    /// Members added to the cluster while this node ran (this node itself, if it
    /// joined).
    pub members_added: u64,
    /// Application messages handed back to the process as undeliverable
    /// ([`Process::on_undeliverable`]).
    pub app_returned: u64,
    /// Application messages shipped with a whole header (no acknowledged baseline of
    /// the current life, or the diff was not shorter; see [`crate::lean`]).
    pub headers_whole: u64,
    /// Application messages shipped with a header diffed against a baseline.
    pub headers_diff: u64,
    /// Lean application messages that named a baseline this node does not hold, or
    /// whose increments were out of range (dropped; an honest sender never causes one).
    pub lean_undecodable: u64,
    /// Envelopes waiting for window space right now.
    pub backlog: u64,
    /// The most envelopes that ever waited for window space at once.
    pub backlog_peak: u64,
}

/// Hooks into a stack's message path, for test oracles and tracing. Every method has
/// an empty default; [`NoObserver`] is the production choice and costs nothing.
#[allow(unused_variables)]
pub trait Observer<P> {
    /// The process sent an application message, stamped with `header`.
    fn app_sent(&mut self, now: Time, to: NodeId, header: &AppHeader, payload: &[u8]) {}
    /// The transport accepted the application message whose header's own clock entry
    /// is `stamp` under `id` (what [`Event::Acked`] and [`Event::Abandoned`] name).
    fn app_handed(&mut self, to: NodeId, stamp: u64, id: MessageId) {}
    /// A queued application message (own clock entry `stamp`) to `to` was dropped
    /// before the transport took it: its session ended.
    fn app_dropped(&mut self, to: NodeId, stamp: u64) {}
    /// An application message arrived and goes to the engine, then (unless stale) to
    /// the process.
    fn app_received(&mut self, now: Time, from: NodeId, header: &AppHeader, payload: &[u8]) {}
    /// The engine ruled the message just received stale: it is not delivered.
    fn app_discarded(&mut self, now: Time, from: NodeId, header: &AppHeader) {}
    /// An application message this node sent to `to` is handed back to the process as
    /// undeliverable (before [`Process::on_undeliverable`] runs); `stamp` is its own
    /// clock entry, as in [`Observer::app_dropped`].
    fn app_returned(
        &mut self,
        now: Time,
        to: NodeId,
        stamp: u64,
        payload: &[u8],
        why: Undeliverable,
    ) {
    }
    /// A transport message that does not decode as an envelope was dropped.
    fn malformed(&mut self, from: NodeId, error: &postcard::Error) {}
    /// Every transport event, before the stack acts on it.
    fn transport_event(&mut self, event: &Event) {}
    /// After every call into the node (process and engine): the snapshot events that
    /// call produced, with the process as it is now.
    fn node_call(&mut self, now: Time, process: &P, events: &[SnapshotEvent]) {}
}

/// Why [`Stack::request_removal`] or [`Stack::request_addition`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemovalError {
    /// The node is not (or no longer) a member.
    #[error("{0} is not a member")]
    NotAMember(NodeId),
    /// A node cannot remove itself.
    #[error("{0} cannot remove itself: ask another member")]
    Itself(NodeId),
    /// The node to add is a member already.
    #[error("{0} is a member already")]
    AlreadyAMember(NodeId),
    /// A rollback round is under way.
    #[error("a cluster-wide rollback is under way")]
    RollingBack,
}

/// The observer that observes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl<P> Observer<P> for NoObserver {}

/// One envelope waiting for window space.
#[derive(Debug)]
struct Queued {
    body: Body,
    /// For application messages, the header's own clock entry (for the observer).
    stamp: Option<u64>,
}

/// What a queued envelope carries.
#[derive(Debug)]
enum Body {
    /// A control or recovery envelope, encoded; sent urgent.
    Encoded(Vec<u8>),
    /// An application message: its lean header depends on the transport id it gets,
    /// so it is encoded when handed over.
    App(AppHeader, Vec<u8>),
}

/// Envelopes a halted node holds back (by sender, decoded) until it knows what becomes
/// of them, at most [`EARLY_LIMIT`] bytes: early ones of a restored history, and those of
/// the current history while a round may still restore.
#[derive(Debug)]
struct HeldBack<C> {
    envelopes: Vec<(NodeId, Envelope<C>)>,
    bytes: usize,
}

impl<C> HeldBack<C> {
    fn new() -> Self {
        HeldBack {
            envelopes: Vec::new(),
            bytes: 0,
        }
    }

    /// Holds `envelope` (`size` bytes on the wire) unless that would pass
    /// [`EARLY_LIMIT`] bytes; false if it did not.
    fn hold(&mut self, from: NodeId, envelope: Envelope<C>, size: usize) -> bool {
        if self.bytes + size > EARLY_LIMIT {
            return false;
        }
        self.bytes += size;
        self.envelopes.push((from, envelope));
        true
    }

    fn take(&mut self) -> Vec<(NodeId, Envelope<C>)> {
        self.bytes = 0;
        std::mem::take(&mut self.envelopes)
    }
}

/// One node's transport, snapshot engine and application; see the module docs.
#[derive(Debug)]
pub struct Stack<P, E, O = NoObserver>
where
    P: Process,
    E: SnapshotEngine,
{
    me: NodeId,
    core: Core,
    transport: Config,
    node: Node<P, E>,
    /// Peers registered with the core (re-registered after a transport restart).
    peers: BTreeSet<NodeId>,
    /// Per-peer FIFO of envelopes waiting for window space (or for the peer's address).
    backlog: BTreeMap<NodeId, VecDeque<Queued>>,
    events: VecDeque<StackEvent>,
    scratch: Vec<SnapshotEvent>,
    metrics: SnapshotMetrics,
    /// Delivery latency of application messages (see [`Stack::app_delivery_latency`]).
    app_latency: Histogram<u64>,
    stats: StackStats,
    /// The cluster-wide rollback protocol.
    recovery: Recovery,
    /// The round whose restore was requested, until it is answered: its snapshot and
    /// its change.
    restoring: Option<Restoring>,
    /// See [`Stack::set_roll_back_on_peer_restart`].
    roll_back_on_peer_restart: bool,
    /// A peer restarted: unless the same input brought a round (the newest round known
    /// then is kept to tell), start one once the input is handled.
    rollback_due: Option<Option<Epoch>>,
    /// Whether `Process::on_start` ran (or the process was restored).
    started: bool,
    /// Application datagrams of the restored history that arrived before this node
    /// restored (see `Recovery::is_early`), with their total size.
    early: HeldBack<E::Control>,
    /// Application and snapshot messages of the current history that arrived while
    /// halted, before this node restored: dropped if the round restores (it undoes
    /// them), handed on if it ends without a rollback (they were acknowledged already,
    /// so dropping them would lose them), with their total size.
    held: HeldBack<E::Control>,
    /// Lean headers: baselines of the messages this node sends, and of those it gets.
    lean_out: lean::Encoder,
    lean_in: lean::Decoder,
    /// Senders whose kept baselines may be prunable once the transport events are in.
    prune_due: BTreeSet<NodeId>,
    observer: O,
}

/// Most bytes of early application messages (see [`StackStats::early_held`]) a halted
/// node holds; beyond, they are dropped and counted.
pub const EARLY_LIMIT: usize = 16 << 20;

impl<P, E> Stack<P, E, NoObserver>
where
    P: Process,
    E: SnapshotEngine,
    E::Control: Serialize + DeserializeOwned,
{
    /// A stack over `node` with a transport configured by `transport` (`local` must be
    /// the engine's node). No peer is registered yet: call [`Stack::add_peer`] for each
    /// member the host can reach; messages to the others wait in the backlog.
    pub fn new(transport: Config, node: Node<P, E>) -> Result<Self, ConfigError> {
        Self::with_observer(transport, node, NoObserver)
    }
}

impl<P, E, O> Stack<P, E, O>
where
    P: Process,
    E: SnapshotEngine,
    E::Control: Serialize + DeserializeOwned,
    O: Observer<P>,
{
    /// [`Stack::new`] with an observer.
    pub fn with_observer(
        transport: Config,
        node: Node<P, E>,
        observer: O,
    ) -> Result<Self, ConfigError> {
        let me = node.engine().me();
        if transport.local != me {
            return Err(ConfigError::Invalid(
                "local (the transport's node) must be the engine's node",
            ));
        }
        let core = Core::new(transport.clone())?;
        let recovery = Recovery::new(me, node.peers(), ROLLBACK_PATIENCE);
        Ok(Stack {
            me,
            core,
            transport,
            node,
            peers: BTreeSet::new(),
            backlog: BTreeMap::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            metrics: SnapshotMetrics::new(),
            app_latency: Histogram::new(3).expect("3 significant digits are valid"),
            stats: StackStats::default(),
            recovery,
            restoring: None,
            roll_back_on_peer_restart: false,
            rollback_due: None,
            started: false,
            early: HeldBack::new(),
            held: HeldBack::new(),
            lean_out: lean::Encoder::default(),
            lean_in: lean::Decoder::default(),
            prune_due: BTreeSet::new(),
            observer,
        })
    }

    // ----- inputs -----

    /// Registers `peer` with the transport: messages to it can go out.
    pub fn add_peer(&mut self, now: Time, peer: NodeId) {
        if peer == self.me {
            return;
        }
        if self.peers.insert(peer) {
            // A fresh link: whatever the codecs held for an earlier one is void.
            self.lean_out.forget_peer(peer);
            self.lean_in.reset_peer(peer);
        }
        self.core.add_peer(peer);
        self.settle(now);
    }

    /// Starts the process (`Process::on_start`); call once, when the host is ready to
    /// carry its messages. A restored node does not call it (its process started in an
    /// earlier life).
    pub fn start(&mut self, now: Time) {
        self.started = true;
        self.node.start(now);
        self.after_node_call(now);
        self.settle(now);
    }

    /// A datagram from `from` (the host maps the source address to the node).
    pub fn handle_datagram(&mut self, now: Time, from: NodeId, bytes: &[u8]) {
        self.core.handle_datagram(now, from, bytes);
        self.settle(now);
    }

    /// The deadline from [`Stack::poll_timeout`] passed (early calls are harmless).
    pub fn handle_timeout(&mut self, now: Time) {
        if self.recovery.poll_timeout().is_some_and(|t| t <= now) {
            self.recovery.handle_timeout(now, now.as_micros());
        }

        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
            self.after_node_call(now);
        }
        self.settle(now);
    }

    /// The application's periodic tick (`Process::on_tick`); the host sets the cadence.
    pub fn handle_tick(&mut self, now: Time) {
        if self.recovery.is_halted() {
            return;
        }
        self.node.handle_tick(now);
        self.after_node_call(now);
        self.settle(now);
    }

    /// An operator command for the process (`Process::on_command`).
    pub fn handle_command(&mut self, now: Time, command: &[u8]) {
        if self.recovery.is_halted() {
            return;
        }
        self.node.handle_command(now, command);
        self.after_node_call(now);
        self.settle(now);
    }

    /// Starts a snapshot here.
    pub fn initiate(&mut self, now: Time) -> Result<SnapshotId, InitiateError> {
        if self.recovery.is_halted() {
            return Err(InitiateError::RollingBack);
        }
        let result = self.node.initiate(now);
        self.after_node_call(now);
        self.settle(now);
        result
    }

    /// This node's transport restarted (its socket was lost, say) with `incarnation`,
    /// which must exceed the previous one: the core is replaced, queued envelopes are
    /// dropped (application messages among them go back to the process,
    /// [`Undeliverable::NeverSent`]), and every link is reset. Process and engine state
    /// are kept.
    pub fn restart_transport(&mut self, now: Time, incarnation: u64) -> Result<(), ConfigError> {
        let mut cfg = self.transport.clone();
        cfg.incarnation = incarnation;
        self.core = Core::new(cfg.clone())?;
        self.transport = cfg;
        for &p in &self.peers {
            self.core.add_peer(p);
        }
        self.lean_out.reset_all();
        self.lean_in.reset_all();
        let mut unsent = Vec::new();
        for (to, queue) in std::mem::take(&mut self.backlog) {
            for q in queue {
                if let (Some(stamp), Body::App(header, payload)) = (q.stamp, q.body) {
                    self.stats.backlog_dropped += 1;
                    self.observer.app_dropped(to, stamp);
                    unsent.push((to, header.life, stamp, payload));
                }
            }
        }
        self.stats.backlog = 0;
        // Every session ended: tell each peer what it will never get.
        for peer in self.node.peers().to_vec() {
            self.node.handle_link_reset(now, peer);
            self.after_node_call(now);
        }
        // What never left goes back to the process. What the old core had in flight is
        // not: the receivers are alive and may have delivered it.
        for (to, life, stamp, payload) in unsent {
            self.give_back(now, to, life, stamp, &payload, Undeliverable::NeverSent);
        }
        self.settle(now);
        Ok(())
    }

    /// The snapshot ids this node's checkpoint store holds, oldest first (call at start
    /// and after every write): what a rollback may go back to.
    pub fn set_durable(&mut self, ids: Vec<SnapshotId>) {
        self.recovery.set_durable(ids);
    }

    /// The genesis checkpoint ([`crate::recovery::GENESIS`]): this node's state and
    /// clock before its process first ran, with empty channels. Write it to the store
    /// before [`Stack::start`] on a node's very first start.
    pub fn genesis(&self, now: Time) -> LocalReport {
        LocalReport {
            id: crate::recovery::GENESIS,
            state: crate::process::encode_state(self.node.process()),
            cut: self.node.engine().clock().clone(),
            cut_at: now,
            channels: Vec::new(),
            life: 0,
            seen: Vec::new(),
            counts: None,
        }
    }

    /// This node came back after a crash with checkpoints on disk: instead of starting
    /// the process, coordinate a cluster-wide rollback to the newest snapshot every
    /// member holds. The process runs once the rollback ends.
    pub fn recover(&mut self, now: Time) {
        self.recovery.start(now, now.as_micros(), None, None);
        self.settle(now);
    }

    /// An operator asks for a cluster-wide rollback, coordinated here: to `to` if given
    /// (every member must hold it, or nothing is restored), else to the newest snapshot
    /// every member holds. The outcome is a [`StackEvent::Resumed`].
    pub fn request_rollback(
        &mut self,
        now: Time,
        to: Option<SnapshotId>,
    ) -> Result<(), InitiateError> {
        if self.recovery.is_halted() {
            return Err(InitiateError::RollingBack);
        }
        self.recovery.start(now, now.as_micros(), to, None);
        self.settle(now);
        Ok(())
    }

    /// An operator removes `node`, a member that is dead for good, coordinated here: a
    /// rollback round without it (see [`crate::recovery`], "Removing a member"), after
    /// which it is no member any more. The outcome is a [`StackEvent::Resumed`]
    /// (`rolled_back_to: None` if no snapshot could take the removed part along: it stays
    /// a member).
    pub fn request_removal(&mut self, now: Time, node: NodeId) -> Result<(), RemovalError> {
        if node == self.me {
            return Err(RemovalError::Itself(node));
        }
        if !self.is_member(node) {
            return Err(RemovalError::NotAMember(node));
        }
        if self.recovery.is_halted() {
            return Err(RemovalError::RollingBack);
        }
        self.recovery.start(
            now,
            now.as_micros(),
            None,
            Some(Change::Remove { node, heir: None }),
        );
        self.settle(now);
        Ok(())
    }

    /// An operator adds `node`, a new process started to join
    /// ([`Stack::await_join`]) and reachable at `addr`, coordinated here: a rollback
    /// round with it, in which every member goes back to the newest snapshot they all
    /// hold and the new member starts from its fresh state. The host registers the
    /// address with its socket and [`Stack::add_peer`] before calling this; the other
    /// members' hosts get [`StackEvent::Joining`]. The outcome is a
    /// [`StackEvent::Resumed`] (`rolled_back_to: None`: it did not join).
    pub fn request_addition(
        &mut self,
        now: Time,
        node: NodeId,
        addr: String,
    ) -> Result<(), RemovalError> {
        if self.is_member(node) || node == self.me {
            return Err(RemovalError::AlreadyAMember(node));
        }
        if self.recovery.is_halted() {
            return Err(RemovalError::RollingBack);
        }
        self.recovery.start(
            now,
            now.as_micros(),
            None,
            Some(Change::Add {
                node,
                addr,
                // `Recovery::start` fills in this coordinator's membership plus `node`.
                members: Vec::new(),
            }),
        );
        self.settle(now);
        Ok(())
    }

    /// Roll the cluster back whenever a member restarts (the rollback policy, with a
    /// checkpoint store). A restarted member whose store survived starts the round
    /// itself, usually in the very datagram that shows its new incarnation; one that
    /// lost its disk cannot (it starts as on a first start, with only a new genesis
    /// checkpoint), so a member that sees the restart and no round in the same input
    /// starts one at once, before any snapshot could take the newcomer's fresh state in.
    /// The newest snapshot every member holds is then the genesis one: everyone goes
    /// back to the start, and the money is exact. Concurrent rounds resolve by epoch.
    pub fn set_roll_back_on_peer_restart(&mut self, on: bool) {
        self.roll_back_on_peer_restart = on;
    }

    /// Instead of [`Stack::start`] on a new process that joins a running cluster: it
    /// stays halted until a round adds it (see [`Stack::request_addition`]), then runs
    /// from its fresh state.
    pub fn await_join(&mut self) {
        self.recovery.await_join();
    }

    /// The members, this node included, sorted.
    pub fn members(&self) -> Vec<NodeId> {
        self.recovery.members().to_vec()
    }

    /// True if `node` is another member: the only nodes whose messages are accepted.
    fn is_member(&self, node: NodeId) -> bool {
        node != self.me && self.recovery.members().binary_search(&node).is_ok()
    }

    /// Per other member, the snapshot ids of which this node's store holds that
    /// member's part (a replica: see [`crate::checkpoint`]); call at start and after
    /// every replica write.
    pub fn set_replicas(&mut self, replicas: BTreeMap<NodeId, Vec<SnapshotId>>) {
        self.recovery.set_replicas(replicas);
    }

    /// Answers the `supply` of [`StackEvent::RestoreRequested`] from `stored`, this
    /// node's checkpoint of the snapshot (`None` if it is gone): each member named gets
    /// its part from the replicas there, or word that it is gone (then it cannot
    /// restore, and the round starts over). Does nothing if none is named. Call before
    /// [`Stack::roll_back`].
    pub fn supply(&mut self, now: Time, epoch: Epoch, stored: Option<&Checkpoint>) {
        let Some(r) = self.restoring.as_ref().filter(|r| r.epoch == epoch) else {
            return;
        };
        let (id, to) = (r.id, r.supply.clone());
        if to.is_empty() {
            return;
        }
        for member in to {
            let part = stored
                .filter(|c| c.id() == id)
                .and_then(|c| c.replicas.iter().find(|(n, _)| *n == member))
                .map(|(_, p)| Box::new(p.clone()));
            self.stats.parts_supplied += u64::from(part.is_some());
            self.enqueue(
                now,
                member,
                Envelope::Recovery(RecoveryMsg::Part(epoch, part)),
            );
        }
        self.settle(now);
    }

    /// Answers [`StackEvent::RestoreRequested`]: `part` is this node's part of the
    /// snapshot from its checkpoint store (`None` if it is gone or unreadable), and
    /// `inherited` the parts of removed members this node takes over with it (those its
    /// checkpoint lists, plus the removed member's replica if this round names this node
    /// the heir). The process gets its state back, the engine resumes from the cut
    /// clock with a new life, queued messages are dropped, the recorded incoming
    /// messages are delivered again once, and the inherited parts go to
    /// [`Process::on_inherit`]. A node that joins in this round has no part: it starts
    /// from its genesis (fresh state, empty channels) as of the snapshot id. Returns the
    /// part restored (what a re-based checkpoint holds), `None` if it could not.
    pub fn roll_back(
        &mut self,
        now: Time,
        epoch: Epoch,
        part: Option<&LocalReport>,
        inherited: &[(NodeId, LocalReport)],
    ) -> Option<LocalReport> {
        let (id, change, supplied) = match self.restoring.take() {
            Some(r) if r.epoch == epoch => (Some(r.id), r.change, r.supplied),
            _ => (None, None, None),
        };
        let from_supplier = part.is_none() && supplied.is_some();
        let part = part.or(supplied.as_ref());
        let removal = change.as_ref().and_then(Change::removal);
        let nodes = match &change {
            Some(c) => c.apply(self.recovery.members()),
            None => self.recovery.members().to_vec(),
        };
        let joined = matches!(&change, Some(Change::Add { node, .. }) if *node == self.me);
        let fresh;
        let part = match (part, joined, id) {
            (None, true, Some(id)) => {
                fresh = LocalReport {
                    id,
                    ..self.genesis(now)
                };
                Some(&fresh)
            }
            (p, _, _) => p,
        };
        let heir_without_part = removal
            .is_some_and(|r| r.heir == self.me && !inherited.iter().any(|(n, _)| *n == r.node));
        let ok = match part {
            Some(_) if heir_without_part => {
                tracing::error!(node = %self.me, "cannot inherit: the removed member's replica is gone");
                false
            }
            Some(part) => {
                let life = now.as_micros().max(Recovery::min_life(epoch));
                let floor = crate::life::clock_floor(Time(life));
                // Every member's new life is at least this, so every id after the
                // rollback is at least its floor; smaller ones ran before it.
                let ids_from = crate::life::clock_floor(Time(Recovery::min_life(epoch)));
                let restored = self
                    .node
                    .roll_back(now, part, life, floor, ids_from, &nodes)
                    .and_then(|()| {
                        inherited
                            .iter()
                            .try_for_each(|(n, p)| self.node.inherit(now, *n, p))
                    });
                match restored {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(node = %self.me, error = %e, "cannot restore the checkpoint");
                        false
                    }
                }
            }
            None => false,
        };
        if ok && let Some(c) = &change {
            // The membership becomes `nodes` (the recovery's list, which is the stack's,
            // follows in `restored` below). A member that left is nobody from now on:
            // its datagrams are dropped as from a non-member, nothing is sent or
            // retransmitted to it. A joiner drops whoever its own list named beyond the
            // cluster's (removed meanwhile).
            let before = self.recovery.members().to_vec();
            for &n in before.iter().filter(|n| !nodes.contains(n)) {
                self.peers.remove(&n);
                self.core.remove_peer(n);
                self.lean_out.forget_peer(n);
                self.lean_in.reset_peer(n);
            }
            for &n in nodes.iter().filter(|n| !before.contains(n)) {
                self.add_peer(now, n);
            }
            match c {
                Change::Remove { node, .. } => {
                    self.stats.members_removed += 1;
                    tracing::info!(node = %self.me, removed = %node, "member removed");
                }
                Change::Add { node, .. } => {
                    self.stats.members_added += 1;
                    tracing::info!(node = %self.me, added = %node, "member added");
                }
            }
        }
        if ok {
            self.stats.rollbacks += 1;
            if from_supplier {
                self.stats.restored_supplied += 1;
                tracing::warn!(node = %self.me, "restored from a part another member's replica supplied (this store did not hold it)");
            }
            self.started = true;
            // What waited for window space belongs to the abandoned run.
            for (to, queue) in std::mem::take(&mut self.backlog) {
                for q in queue {
                    if let Some(stamp) = q.stamp {
                        self.observer.app_dropped(to, stamp);
                    }
                }
            }
            self.stats.backlog = 0;
            // The restore undid what arrived while halted.
            self.stats.rolled_back_dropped += self.held.take().len() as u64;
            self.after_node_call(now);
        }
        self.recovery.restored(now, epoch, ok, change.as_ref());
        if ok {
            // After the re-delivered channel messages, what the restored history sent
            // early.
            let early = self.early.take();
            for (from, envelope) in early {
                self.on_envelope(now, from, envelope, 0);
            }
        }
        self.settle(now);
        ok.then(|| part.cloned()).flatten()
    }

    /// True while a rollback holds this node's application.
    pub fn is_halted(&self) -> bool {
        self.recovery.is_halted()
    }

    // ----- outputs -----

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Time) -> Option<Transmit> {
        loop {
            if let Some(t) = self.core.poll_transmit(now) {
                return Some(t);
            }
            if !self.settle(now) {
                return None;
            }
        }
    }

    /// The next event for the host.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<StackEvent> {
        self.events.pop_front()
    }

    /// The earliest deadline of the transport and the engine.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.core.poll_timeout(),
            self.node.poll_timeout(),
            self.recovery.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- state -----

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The process and the engine.
    pub fn node(&self) -> &Node<P, E> {
        &self.node
    }

    /// The transport core.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The observer.
    pub fn observer(&self) -> &O {
        &self.observer
    }

    /// The observer, mutably (to take what it collected).
    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }

    /// The stack's counters.
    pub fn stats(&self) -> StackStats {
        self.stats
    }

    /// Latency, control messages and recorded messages of snapshots initiated here.
    pub fn metrics(&self) -> &SnapshotMetrics {
        &self.metrics
    }

    /// Delivery latency of application messages in microseconds: the sender's first
    /// transmission (the transport's `sent_at`) to this stack decoding the message. The
    /// transport's own `Stats::delivery_latency` counts every message, snapshot control
    /// included, which the Chandy-Lamport baseline sends N times as many of (urgent,
    /// with copies): compared across algorithms, only this one measures the
    /// application. Auto-resizing; values above one hour are recorded as one hour.
    pub fn app_delivery_latency(&self) -> &Histogram<u64> {
        &self.app_latency
    }

    /// True if nothing is queued and the transport holds nothing unacknowledged.
    pub fn is_quiet(&self) -> bool {
        // Over the core's peers with unacked messages (few, and found without a lookup
        // per peer), not over every member: the simulators ask this of every node
        // every step.
        self.backlog.is_empty() && self.core.unacked_peers().all(|p| !self.peers.contains(&p))
    }

    // ----- glue -----

    /// Moves work between the layers until none is left: transport events into the
    /// node, the node's messages into the transport (or the backlog). Returns whether
    /// anything moved.
    fn settle(&mut self, now: Time) -> bool {
        let mut any = false;
        loop {
            let mut work = false;
            // Transport events first, so `PeerRestarted` drops stale messages before
            // they are handed to the new session.
            while let Some(event) = self.core.poll_event() {
                work = true;
                self.on_transport_event(now, event);
            }
            // Every message the core received is decoded now: baselines nothing still
            // to come can name go.
            for peer in std::mem::take(&mut self.prune_due) {
                self.lean_in.prune(peer, self.core.received_below(peer));
            }
            // Every event of the input is handled: did the restarted peer's round come
            // with it?
            if let Some(seen) = self.rollback_due.take()
                && (!self.recovery.is_halted() || self.recovery.coordinating())
                && self.recovery.seen() == seen
            {
                tracing::info!(node = %self.me, "a peer restarted without a rollback: coordinating one");
                self.recovery.start(now, now.as_micros(), None, None);
                work = true;
            }
            while let Some(action) = self.recovery.poll_action() {
                work = true;
                self.on_recovery_action(now, action);
            }
            while let Some((to, envelope)) = self.node.poll_transmit() {
                work = true;
                self.enqueue(now, to, envelope);
            }
            if self.pump(now) {
                work = true;
            }
            if !work {
                return any;
            }
            any = true;
        }
    }

    fn on_recovery_action(&mut self, now: Time, action: Action) {
        match action {
            Action::Send(to, msg) => self.enqueue(now, to, Envelope::Recovery(msg)),
            Action::Joining(node, addr) => {
                self.events.push_back(StackEvent::Joining { node, addr });
            }
            Action::Restore(restoring) => {
                let removal = restoring.change.as_ref().and_then(Change::removal);
                self.events.push_back(StackEvent::RestoreRequested {
                    epoch: restoring.epoch,
                    id: restoring.id,
                    removal,
                    supply: restoring.supply.clone(),
                });
                self.restoring = Some(restoring);
            }
            Action::Resumed(_, target) => {
                if !self.started {
                    // Nothing to roll back to: this process starts afresh.
                    self.started = true;
                    self.node.start(now);
                    self.after_node_call(now);
                }
                // With no rollback, what arrived while halted belongs to the history that
                // goes on (a restore dropped it already).
                let held = self.held.take();
                if target.is_none() {
                    self.stats.halted_released += held.len() as u64;
                    for (from, envelope) in held {
                        self.on_envelope(now, from, envelope, 0);
                    }
                } else {
                    self.stats.rolled_back_dropped += held.len() as u64;
                }
                self.events.push_back(StackEvent::Resumed {
                    rolled_back_to: target,
                });
            }
        }
    }

    fn on_transport_event(&mut self, now: Time, event: Event) {
        self.observer.transport_event(&event);
        match event {
            Event::Delivered {
                from,
                id,
                bytes,
                sent_at,
            } => self.on_delivered(now, from, id.0, &bytes, sent_at),
            Event::Unreachable { peer } => {
                self.node.handle_peer_unreachable(now, peer);
                self.after_node_call(now);
                self.events.push_back(StackEvent::PeerUnreachable(peer));
            }
            Event::PeerRestarted { peer, incarnation } => {
                // The restarted process lost its part in running snapshots: abort them.
                self.node.handle_peer_unreachable(now, peer);
                self.after_node_call(now);
                // Messages still queued were stamped for the ended session: they go
                // back to the process.
                // The session ended: so did the baselines on both directions of it.
                self.lean_out.reset_peer(peer);
                self.lean_in.reset_peer(peer);
                let mut unsent = Vec::new();
                if let Some(queue) = self.backlog.get_mut(&peer) {
                    let observer = &mut self.observer;
                    let stats = &mut self.stats;
                    queue.retain_mut(|q| match (q.stamp, &mut q.body) {
                        (Some(stamp), Body::App(header, payload)) => {
                            stats.backlog_dropped += 1;
                            stats.backlog -= 1;
                            observer.app_dropped(peer, stamp);
                            unsent.push((header.life, stamp, std::mem::take(payload)));
                            false
                        }
                        _ => true,
                    });
                    if queue.is_empty() {
                        self.backlog.remove(&peer);
                    }
                }
                // Tell the peer which sequence numbers it will never get (before the
                // process may send anything new to it).
                self.node.handle_link_reset(now, peer);
                self.after_node_call(now);
                for (life, stamp, payload) in unsent {
                    self.give_back(now, peer, life, stamp, &payload, Undeliverable::NeverSent);
                }
                // A running member starts a round; the coordinator of one restarts it (the
                // peer lost whatever it knew of it, and may have lost its disk too).
                let due =
                    (self.started && !self.recovery.is_halted()) || self.recovery.coordinating();
                if self.roll_back_on_peer_restart && due {
                    self.rollback_due = Some(self.recovery.seen());
                }
                self.events
                    .push_back(StackEvent::PeerRestarted { peer, incarnation });
            }
            // The engine's `handle_link_reset` (on `PeerRestarted`, just before) covered
            // the sequence numbers; the process gets the payload back.
            Event::Abandoned { to, id, bytes } => {
                if let Some(sent) = self.lean_out.abandoned(to, id.0)
                    && let Ok(Envelope::Lean(app)) = Envelope::<E::Control>::from_bytes(&bytes)
                {
                    let why = Undeliverable::Unacknowledged;
                    self.give_back(now, to, sent.life, sent.stamp, &app.payload, why);
                }
            }
            // An acknowledged kept message becomes the channel's baseline.
            Event::Acked { to, id } => self.lean_out.acked(to, id.0),
            // Window space needs nothing more: the pump runs after every input.
            Event::Writable { .. } => {}
        }
    }

    /// Hands an application message this node sent back to its process as
    /// undeliverable; other envelopes are the stack's own and need nothing. Not while
    /// halted for a rollback before this node restored (the restore replaces the
    /// state), nor for messages sent before the last rollback (it undid them); a
    /// message the restored process sent while the round finishes is given back.
    fn give_back(
        &mut self,
        now: Time,
        to: NodeId,
        life: u64,
        stamp: u64,
        payload: &[u8],
        why: Undeliverable,
    ) {
        if !self.recovery.accepts_traffic() || !self.recovery.admits(life) {
            return;
        }
        self.stats.app_returned += 1;
        self.observer.app_returned(now, to, stamp, payload, why);
        self.node.handle_undeliverable(now, to, payload, why);
        self.after_node_call(now);
    }

    /// Whether `from` is neither a member nor the node a round adds, while traffic
    /// flows: what it sends is dropped. A node that a round adds talks recovery before
    /// it is a member; once it is one (a pending change may still name it), it is a
    /// member like any other.
    fn is_stranger(&self, from: NodeId) -> bool {
        !self.is_member(from)
            && self.recovery.joining() != Some(from)
            && self.recovery.accepts_traffic()
    }

    /// Message `id` of the session with `from`, as the transport delivered it.
    fn on_delivered(&mut self, now: Time, from: NodeId, id: u64, bytes: &[u8], sent_at: Time) {
        // Whatever a node outside the membership sends is dropped as such (after its
        // lean header is decoded, below).
        let stranger = self.is_stranger(from);
        let envelope = match Envelope::<E::Control>::from_bytes(bytes) {
            Ok(envelope) => envelope,
            Err(_) if stranger => {
                self.stats.non_member_dropped += 1;
                return;
            }
            Err(e) => {
                self.stats.malformed_envelopes += 1;
                self.observer.malformed(from, &e);
                tracing::debug!(node = %self.me, %from, error = %e, "malformed envelope dropped");
                return;
            }
        };
        // Decoded first, whatever becomes of the message: the sender may name it as a
        // baseline once the transport acknowledged it.
        let envelope = match envelope {
            Envelope::Lean(app) => {
                self.prune_due.insert(from);
                match self.lean_in.decode(from, id, app) {
                    Ok((header, payload)) => Envelope::App { header, payload },
                    Err(_) if stranger => {
                        self.stats.non_member_dropped += 1;
                        return;
                    }
                    Err(e) => {
                        self.stats.lean_undecodable += 1;
                        tracing::debug!(node = %self.me, %from, error = %e, "undecodable lean header dropped");
                        return;
                    }
                }
            }
            other => other,
        };
        if stranger {
            self.stats.non_member_dropped += 1;
            return;
        }
        if matches!(envelope, Envelope::App { .. }) {
            let micros = now.saturating_since(sent_at).as_micros() as u64;
            // An auto-resizing histogram takes any value up to the clamp.
            let _ = self
                .app_latency
                .record(micros.clamp(1, shutter_transport::core::LATENCY_MAX_US));
        }
        self.on_envelope(now, from, envelope, bytes.len());
    }

    /// A decoded envelope from `from` (`size` bytes on the wire).
    fn on_envelope(
        &mut self,
        now: Time,
        from: NodeId,
        envelope: Envelope<E::Control>,
        size: usize,
    ) {
        if self.is_stranger(from) {
            self.stats.non_member_dropped += 1;
            return;
        }
        let member = self.is_member(from);
        let joining = !member && self.recovery.joining() == Some(from);
        // A member that restored first already runs its new life, and so may the node
        // the round adds (no member here until this node restores): what they sent
        // waits for this node's restore, which also settles who is a member.
        if let Envelope::App { header, .. } = &envelope
            && !self.recovery.accepts_traffic()
            && self.recovery.is_early(header.life)
        {
            if self.early.hold(from, envelope, size) {
                self.stats.early_held += 1;
            } else {
                self.stats.early_dropped += 1;
            }
            return;
        }
        if (!member && !joining) || (joining && !matches!(envelope, Envelope::Recovery(_))) {
            self.stats.non_member_dropped += 1;
            return;
        }
        match &envelope {
            // After a rollback nothing sent before it reaches the process.
            Envelope::App { header, .. } if !self.recovery.admits(header.life) => {
                self.stats.rolled_back_dropped += 1;
                return;
            }
            // While halted for a rollback nothing reaches the process or the engine
            // until the round's outcome is known: a restore undoes these messages, a
            // round that restores nothing must not lose them.
            Envelope::App { .. } | Envelope::Control(_) if self.recovery.holds_traffic() => {
                if self.held.hold(from, envelope, size) {
                    self.stats.halted_held += 1;
                } else {
                    self.stats.halted_dropped += 1;
                }
                return;
            }
            Envelope::App { .. } | Envelope::Control(_) if !self.recovery.accepts_traffic() => {
                self.stats.rolled_back_dropped += 1;
                return;
            }
            _ => {}
        }
        match envelope {
            Envelope::App { header, payload } => {
                self.observer.app_received(now, from, &header, &payload);
                let delivered = self.node.handle_app(now, from, &header, &payload);
                if delivered {
                    self.stats.app_delivered += 1;
                } else {
                    self.stats.stale_discarded += 1;
                    self.observer.app_discarded(now, from, &header);
                }
            }
            Envelope::Control(c) => self.node.handle_control(now, from, c),
            Envelope::Recovery(msg) => {
                self.recovery.on_msg(now, from, msg);
                return;
            }
            // Decoded in `on_delivered`.
            Envelope::Lean(_) => return,
        }
        self.after_node_call(now);
    }

    /// Collects the node's snapshot events after a call into it, applying the policies
    /// that hang on them.
    fn after_node_call(&mut self, now: Time) {
        while let Some(event) = self.node.poll_event() {
            self.scratch.push(event);
        }
        self.observer
            .node_call(now, self.node.process(), &self.scratch);
        for event in self.scratch.drain(..) {
            self.metrics.observe(&event);
            match &event {
                SnapshotEvent::Aborted { id, reason }
                    if reason.why == AbortWhy::FailedCheck && id.initiator == self.me =>
                {
                    self.metrics.record_failed_check();
                }
                SnapshotEvent::LocalCut { .. } => {
                    // Our channels close only once our pre-cut messages arrive: resend
                    // what is in flight now rather than wait for loss detection.
                    self.core.expedite(now);
                }
                _ => {}
            }
            self.events.push_back(StackEvent::Snapshot(event));
        }
    }

    /// Stamps nothing (the node did): encodes and hands one envelope to the transport,
    /// or queues it behind earlier ones to the same peer.
    fn enqueue(&mut self, now: Time, to: NodeId, envelope: Envelope<E::Control>) {
        let queued = match envelope {
            Envelope::App { header, payload } => {
                self.stats.app_sent += 1;
                self.recovery.note_sent(header.life);
                self.observer.app_sent(now, to, &header, &payload);
                Queued {
                    stamp: Some(header.ts.get(self.me)),
                    body: Body::App(header, payload),
                }
            }
            other => Queued {
                stamp: None,
                body: Body::Encoded(other.to_bytes()),
            },
        };
        let waiting = self.backlog.get(&to).is_some_and(|q| !q.is_empty());
        if !waiting && self.core.can_send(to) {
            self.hand(now, to, queued);
        } else {
            self.backlog.entry(to).or_default().push_back(queued);
            self.stats.backlog += 1;
            self.stats.backlog_peak = self.stats.backlog_peak.max(self.stats.backlog);
        }
    }

    /// Moves backlog into the transport while windows allow; returns whether any moved.
    fn pump(&mut self, now: Time) -> bool {
        if self.backlog.is_empty() {
            return false;
        }
        let mut moved = false;
        let ready: Vec<NodeId> = self
            .backlog
            .keys()
            .copied()
            .filter(|&p| self.core.can_send(p))
            .collect();
        for peer in ready {
            while self.core.can_send(peer) {
                let Some(q) = self.backlog.get_mut(&peer).and_then(VecDeque::pop_front) else {
                    break;
                };
                self.stats.backlog -= 1;
                moved = true;
                self.hand(now, peer, q);
            }
            if self.backlog.get(&peer).is_some_and(VecDeque::is_empty) {
                self.backlog.remove(&peer);
            }
        }
        moved
    }

    fn hand(&mut self, now: Time, to: NodeId, q: Queued) {
        let sent = match q.body {
            Body::Encoded(bytes) => self.core.send_urgent(now, to, bytes),
            Body::App(header, payload) => {
                let id = self.core.next_message_id(to).0;
                let app = self.lean_out.encode(to, id, &header, payload);
                let (keep, diffed) = (app.keep, matches!(app.head, LeanHead::Diff { .. }));
                let sent = self
                    .core
                    .send(now, to, Envelope::<E::Control>::Lean(app).to_bytes());
                if let Ok(got) = sent {
                    debug_assert_eq!(got.0, id, "the core's next id");
                    let stamp = q.stamp.unwrap_or(0);
                    self.lean_out.sent(to, id, &header, keep, stamp);
                    if diffed {
                        self.stats.headers_diff += 1;
                    } else {
                        self.stats.headers_whole += 1;
                    }
                }
                sent
            }
        };
        match sent {
            Ok(id) => {
                if let Some(stamp) = q.stamp {
                    self.observer.app_handed(to, stamp, id);
                }
            }
            Err(e) => {
                // `can_send` held, so only `TooLarge` is left.
                self.stats.send_errors += 1;
                tracing::warn!(node = %self.me, peer = %to, error = %e, "transport refused an envelope");
            }
        }
    }
}
