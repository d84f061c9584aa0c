//! [`NodeHandle`]: spawning (fresh or restored) node tasks and talking to them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_transport::Time;
use shutter_transport::driver::{Clock, EndpointConfig, UdpIo};
use shutter_vclock::NodeId;
use tokio::sync::{mpsc, oneshot};

use super::config::{Algorithm, NodeConfig};
use super::task::{NodeTask, Request};
use super::{NodeEvent, NodeStats, RuntimeError};
use crate::chandy_lamport;
use crate::checkpoint::CheckpointStore;
use crate::engine::SnapshotEngine;
use crate::global::GlobalSnapshot;
use crate::mattern::{self, EngineConfig};
use crate::persist::restore_for;
use crate::process::{Node, Process, decode_state};
use crate::stack::Stack;
use crate::wire::SnapshotId;

/// A running node: commands go to its task, events come back. Dropping the handle stops
/// the node (without final statistics; use [`NodeHandle::shutdown`] for those).
#[derive(Debug)]
pub struct NodeHandle {
    id: NodeId,
    local_addr: SocketAddr,
    requests: mpsc::UnboundedSender<Request>,
    pub(super) events: mpsc::UnboundedReceiver<NodeEvent>,
}

/// A transport incarnation larger than any handed out before in this process and at
/// least the wall clock in microseconds, so a restarted node always outranks its past
/// lives (the transport's rule), even when restarted within the same microsecond.
fn next_incarnation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = Time::wall_clock_now().as_micros().max(1);
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(0);
    now.max(prev + 1)
}

/// The membership and the members whose address is not known yet.
fn membership(cfg: &NodeConfig) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    let others: BTreeSet<NodeId> = cfg.members().into_iter().filter(|n| *n != cfg.id).collect();
    let missing = cfg
        .peers
        .iter()
        .filter(|(id, addr)| *id != cfg.id && addr.port() == 0)
        .map(|(id, _)| *id)
        .collect();
    (others, missing)
}

fn engine_config(cfg: &NodeConfig) -> EngineConfig {
    let mut e = EngineConfig::new(cfg.id, cfg.members());
    e.timeout = cfg.snapshot_timeout;
    e.channels = cfg.channels.clone();
    // Sequence numbers restart with every engine, so each needs a life above all before;
    // and its own clock entry must start above everything earlier lives used.
    e.life = next_incarnation();
    e.clock_floor = crate::life::clock_floor(Time(e.life));
    e
}

/// The node's socket side and its transport settings, before a stack is built on them.
struct Bound {
    io: UdpIo,
    clock: Clock,
    transport: shutter_transport::Config,
    /// Members whose address is known: registered with the transport at once.
    known: Vec<NodeId>,
}

/// Binds the socket with every member whose address is known.
fn bind(cfg: &NodeConfig) -> Result<Bound, RuntimeError> {
    if cfg.snapshot_timeout.is_zero() {
        return Err(RuntimeError::Config(
            "snapshot_timeout must be positive".into(),
        ));
    }
    let mut core = cfg.transport.clone();
    core.local = cfg.id;
    core.incarnation = next_incarnation();
    core.ordered = cfg.algorithm == Algorithm::ChandyLamport;
    core.validate()
        .map_err(|e| RuntimeError::Transport(e.into()))?;
    let mut ep = EndpointConfig::new(core.clone(), cfg.listen);
    ep.faults = cfg.faults.clone();
    let peers: Vec<(NodeId, SocketAddr)> = cfg
        .peers
        .iter()
        .filter(|(id, addr)| *id != cfg.id && addr.port() != 0)
        .copied()
        .collect();
    let clock = Clock::start();
    let io = UdpIo::bind(&ep, &peers, clock.base())?;
    Ok(Bound {
        io,
        clock,
        transport: core,
        known: peers.iter().map(|(id, _)| *id).collect(),
    })
}

impl NodeHandle {
    /// Builds the stack on `bound` and spawns its task on the current runtime.
    fn launch<P, E>(
        cfg: &NodeConfig,
        bound: Bound,
        node: Node<P, E>,
        call_on_start: bool,
    ) -> Result<NodeHandle, RuntimeError>
    where
        P: Process + Send + 'static,
        E: SnapshotEngine + Send + 'static,
        E::Control: Serialize + DeserializeOwned + Send,
    {
        let (members, missing) = membership(cfg);
        let (requests, request_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let local_addr = bound.io.local_addr();
        let mut stack =
            Stack::new(bound.transport, node).map_err(|e| RuntimeError::Transport(e.into()))?;
        let now = bound.clock.now();
        for peer in bound.known {
            stack.add_peer(now, peer);
        }
        let store = match &cfg.checkpoints {
            Some((dir, keep)) => {
                let (store, scan) = CheckpointStore::open(dir, cfg.id, &cfg.members(), *keep)?;
                for skipped in scan.skipped {
                    tracing::warn!(node = %cfg.id, "checkpoint skipped: {skipped}");
                }
                Some(store)
            }
            None => None,
        };
        let task = NodeTask::new(
            cfg.id,
            stack,
            bound.io,
            bound.clock,
            members,
            missing,
            call_on_start,
            cfg.tick_interval,
            event_tx,
            store,
            cfg.roll_back_on_restart,
            cfg.join,
        );
        tokio::spawn(task.run(request_rx));
        Ok(NodeHandle {
            id: cfg.id,
            local_addr,
            requests,
            events,
        })
    }

    /// Binds `cfg.listen` and starts a node running `process`. `Process::on_start` runs
    /// as soon as every member's address is known (at once unless some `cfg.peers`
    /// entry has port 0 and waits for [`NodeHandle::add_peer`]).
    pub async fn spawn<P: Process + Send + 'static>(
        cfg: NodeConfig,
        process: P,
    ) -> Result<NodeHandle, RuntimeError> {
        let bound = bind(&cfg)?;
        let members = cfg.members();
        let ecfg = engine_config(&cfg);
        match cfg.algorithm {
            Algorithm::Mattern => {
                let node = Node::new(process, mattern::Engine::new(ecfg), &members);
                Self::launch(&cfg, bound, node, true)
            }
            Algorithm::ChandyLamport => {
                let node = Node::new(process, chandy_lamport::Engine::new(ecfg), &members);
                Self::launch(&cfg, bound, node, true)
            }
        }
    }

    /// Starts a node from its part of `snapshot`: the process gets its recorded state,
    /// the engine resumes from the node's cut clock, and the recorded messages of its
    /// incoming channels are delivered again before any new traffic is read.
    /// `Process::on_start` is not called (the process started in its previous life).
    /// The membership in `cfg.peers` must be exactly the snapshot's nodes; every node of
    /// the snapshot must be restored for message counts to agree. Mattern only.
    pub async fn restore<P: Process + Send + 'static>(
        cfg: NodeConfig,
        process: P,
        snapshot: &GlobalSnapshot,
    ) -> Result<NodeHandle, RuntimeError> {
        if cfg.algorithm != Algorithm::Mattern {
            return Err(RuntimeError::Unsupported(
                "restore is implemented for the Mattern engine only",
            ));
        }
        let material = restore_for(snapshot, cfg.id).ok_or(RuntimeError::NotInSnapshot(cfg.id))?;
        let in_snapshot: Vec<NodeId> = snapshot.nodes().collect();
        if cfg.members() != in_snapshot {
            return Err(RuntimeError::Config(format!(
                "membership {:?} differs from the snapshot's nodes {:?}",
                cfg.members(),
                in_snapshot
            )));
        }
        let state = decode_state::<P>(&material.state)?;
        let bound = bind(&cfg)?;
        let node = Node::restored(
            process,
            engine_config(&cfg),
            state,
            material.clock,
            material.incoming,
            Time::wall_clock_now(),
        );
        Self::launch(&cfg, bound, node, false)
    }

    /// This node.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The bound address (with the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, RuntimeError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(make(reply))
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    /// Registers a peer's address with the transport. For a member listed with port 0
    /// this completes the membership; the node starts once no address is missing.
    pub async fn add_peer(&self, id: NodeId, addr: SocketAddr) -> Result<(), RuntimeError> {
        self.call(|reply| Request::AddPeer { id, addr, reply })
            .await?
    }

    /// Sends to peer `id` at `addr` from now on (it was added before): for a peer named
    /// by DNS whose name now resolves elsewhere.
    pub async fn set_peer_addr(&self, id: NodeId, addr: SocketAddr) -> Result<(), RuntimeError> {
        self.call(|reply| Request::SetPeerAddr { id, addr, reply })
            .await?
    }

    /// Starts a snapshot on this node; its outcome arrives as a [`NodeEvent`].
    pub async fn initiate(&self) -> Result<SnapshotId, RuntimeError> {
        self.call(|reply| Request::Initiate { reply }).await?
    }

    /// Passes an operator command to `Process::on_command` (for the bank:
    /// [`crate::bank::transfer_command`]).
    pub async fn command(&self, bytes: Vec<u8>) -> Result<(), RuntimeError> {
        self.call(|reply| Request::Operator { bytes, reply })
            .await?
    }

    /// The next event; `None` once the node has stopped and its events are drained.
    /// Cancel-safe.
    pub async fn next_event(&mut self) -> Option<NodeEvent> {
        self.events.recv().await
    }

    /// Current statistics.
    pub async fn stats(&self) -> Result<NodeStats, RuntimeError> {
        self.call(|reply| Request::Stats { reply }).await?
    }

    /// Rolls the whole cluster back, coordinated by this node: to `to` if given (every
    /// member must hold it), else to the newest snapshot every member holds. The outcome
    /// arrives as [`NodeEvent::Resumed`]. Needs a checkpoint store.
    pub async fn roll_back(&self, to: Option<SnapshotId>) -> Result<(), RuntimeError> {
        self.call(|reply| Request::RollBack { to, reply }).await?
    }

    /// Removes `node`, a member that is dead for good, from the cluster, coordinated by
    /// this node: the others roll back to the newest snapshot whose `node` part one of
    /// them keeps, that one inherits it, and `node` is no member afterwards (see
    /// [`crate::recovery`]). The outcome arrives as [`NodeEvent::Resumed`]; check
    /// [`NodeStats::members`]. Needs a checkpoint store.
    pub async fn remove_member(&self, node: NodeId) -> Result<(), RuntimeError> {
        self.call(|reply| Request::Remove { node, reply }).await?
    }

    /// Adds `node`, a new process started with [`super::NodeConfig::join`] and
    /// listening at `addr`, to the cluster, coordinated by this node: every member
    /// goes back to the newest snapshot they all hold and `node` starts from its fresh
    /// state (see [`crate::recovery`]). The outcome arrives as [`NodeEvent::Resumed`];
    /// check [`NodeStats::members`]. Needs a checkpoint store.
    pub async fn add_member(&self, node: NodeId, addr: SocketAddr) -> Result<(), RuntimeError> {
        self.call(|reply| Request::Add { node, addr, reply })
            .await?
    }

    /// The process's current state, decoded as `S` (normally `P::State`).
    pub async fn app_state<S: DeserializeOwned>(&self) -> Result<S, RuntimeError> {
        let bytes = self.call(|reply| Request::AppState { reply }).await?;
        Ok(postcard::from_bytes(&bytes)?)
    }

    /// Statistics and the process's state (decoded as `S`) at one instant: nothing is
    /// delivered between the two, so counters and state agree (two separate calls can
    /// see a delivery in the state that the counters miss).
    pub async fn stats_and_state<S: DeserializeOwned>(
        &self,
    ) -> Result<(NodeStats, S), RuntimeError> {
        let (stats, bytes) = self
            .call(|reply| Request::StatsAndState { reply })
            .await??;
        Ok((stats, postcard::from_bytes(&bytes)?))
    }

    /// Stops the node (queued outgoing messages are dropped) and returns its final
    /// statistics.
    pub async fn shutdown(self) -> Result<NodeStats, RuntimeError> {
        self.call(|reply| Request::Shutdown { reply }).await?
    }
}
