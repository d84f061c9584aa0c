//! [`NodeHandle`]: spawning (fresh or restored) node tasks and talking to them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shutter_transport::Time;
use shutter_transport::driver::{Endpoint, EndpointConfig};
use shutter_vclock::NodeId;
use tokio::sync::{mpsc, oneshot};

use super::config::{Algorithm, NodeConfig};
use super::task::{Command, NodeTask};
use super::{NodeEvent, NodeStats, RuntimeError};
use crate::chandy_lamport;
use crate::engine::SnapshotEngine;
use crate::global::GlobalSnapshot;
use crate::mattern::{self, EngineConfig};
use crate::persist::restore_for;
use crate::process::{Node, Process, decode_state};
use crate::wire::SnapshotId;

/// A running node: commands go to its task, events come back. Dropping the handle stops
/// the node (without final statistics; use [`NodeHandle::shutdown`] for those).
#[derive(Debug)]
pub struct NodeHandle {
    id: NodeId,
    local_addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
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
    // Sequence numbers restart with every engine, so each needs a life above all before;
    // and its own clock entry must start above everything earlier lives used.
    e.life = next_incarnation();
    e.clock_floor = crate::life::clock_floor(Time(e.life));
    e
}

/// Binds the endpoint with every member whose address is known.
async fn bind(cfg: &NodeConfig) -> Result<Endpoint, RuntimeError> {
    if cfg.snapshot_timeout.is_zero() {
        return Err(RuntimeError::Config(
            "snapshot_timeout must be positive".into(),
        ));
    }
    let mut core = cfg.transport.clone();
    core.local = cfg.id;
    core.incarnation = next_incarnation();
    core.ordered = cfg.algorithm == Algorithm::ChandyLamport;
    let mut ep = EndpointConfig::new(core, cfg.listen);
    ep.faults = cfg.faults.clone();
    let peers = cfg
        .peers
        .iter()
        .filter(|(id, addr)| *id != cfg.id && addr.port() != 0)
        .copied()
        .collect();
    Ok(Endpoint::bind(ep, peers).await?)
}

impl NodeHandle {
    /// Spawns `node` with its endpoint on the current runtime.
    fn launch<P, E>(
        cfg: &NodeConfig,
        endpoint: Endpoint,
        node: Node<P, E>,
        call_on_start: bool,
    ) -> NodeHandle
    where
        P: Process + Send + 'static,
        E: SnapshotEngine + Send + 'static,
        E::Control: Serialize + DeserializeOwned + Send,
    {
        let (members, missing) = membership(cfg);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let local_addr = endpoint.local_addr();
        let task = NodeTask::new(
            cfg.id,
            node,
            endpoint,
            members,
            missing,
            call_on_start,
            cfg.tick_interval,
            event_tx,
        );
        tokio::spawn(task.run(command_rx));
        NodeHandle {
            id: cfg.id,
            local_addr,
            commands,
            events,
        }
    }

    /// Binds `cfg.listen` and starts a node running `process`. `Process::on_start` runs
    /// as soon as every member's address is known (at once unless some `cfg.peers`
    /// entry has port 0 and waits for [`NodeHandle::add_peer`]).
    pub async fn spawn<P: Process + Send + 'static>(
        cfg: NodeConfig,
        process: P,
    ) -> Result<NodeHandle, RuntimeError> {
        let endpoint = bind(&cfg).await?;
        let members = cfg.members();
        let ecfg = engine_config(&cfg);
        Ok(match cfg.algorithm {
            Algorithm::Mattern => {
                let node = Node::new(process, mattern::Engine::new(ecfg), &members);
                Self::launch(&cfg, endpoint, node, true)
            }
            Algorithm::ChandyLamport => {
                let node = Node::new(process, chandy_lamport::Engine::new(ecfg), &members);
                Self::launch(&cfg, endpoint, node, true)
            }
        })
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
        let endpoint = bind(&cfg).await?;
        let node = Node::restored(
            process,
            engine_config(&cfg),
            state,
            material.clock,
            material.incoming,
            Time::wall_clock_now(),
        );
        Ok(Self::launch(&cfg, endpoint, node, false))
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
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RuntimeError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    /// Registers a peer's address with the transport. For a member listed with port 0
    /// this completes the membership; the node starts once no address is missing.
    pub async fn add_peer(&self, id: NodeId, addr: SocketAddr) -> Result<(), RuntimeError> {
        self.call(|reply| Command::AddPeer { id, addr, reply })
            .await?
    }

    /// Starts a snapshot on this node; its outcome arrives as a [`NodeEvent`].
    pub async fn initiate(&self) -> Result<SnapshotId, RuntimeError> {
        self.call(|reply| Command::Initiate { reply }).await?
    }

    /// Passes an operator command to `Process::on_command` (for the bank:
    /// [`crate::bank::transfer_command`]).
    pub async fn command(&self, bytes: Vec<u8>) -> Result<(), RuntimeError> {
        self.call(|reply| Command::Operator { bytes, reply })
            .await?
    }

    /// The next event; `None` once the node has stopped and its events are drained.
    /// Cancel-safe.
    pub async fn next_event(&mut self) -> Option<NodeEvent> {
        self.events.recv().await
    }

    /// Current statistics.
    pub async fn stats(&self) -> Result<NodeStats, RuntimeError> {
        self.call(|reply| Command::Stats { reply }).await?
    }

    /// The process's current state, decoded as `S` (normally `P::State`).
    pub async fn app_state<S: DeserializeOwned>(&self) -> Result<S, RuntimeError> {
        let bytes = self.call(|reply| Command::AppState { reply }).await?;
        Ok(postcard::from_bytes(&bytes)?)
    }

    /// Stops the node (queued outgoing messages are dropped) and returns its final
    /// statistics.
    pub async fn shutdown(self) -> Result<NodeStats, RuntimeError> {
        self.call(|reply| Command::Shutdown { reply }).await?
    }
}
