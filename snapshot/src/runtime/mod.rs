//! The node runtime: a thin tokio loop around one [`crate::stack::Stack`] and one
//! [`UdpIo`](shutter_transport::driver::UdpIo) socket per node.
//!
//! Each node is one task that owns its socket and its stack and loops over four inputs:
//! requests from its [`NodeHandle`], datagrams, the stack's timer (or a delayed datagram
//! copy's, with injected faults) and the application tick. After every input it drains
//! the stack (`poll_transmit` onto the socket, then `poll_event` to the handle) and
//! re-arms the timer, as the stack's call order requires. Everything between the socket
//! and the process (envelopes, backlogs for full windows, urgent control messages,
//! restarts) is the stack's, so the simulator runs exactly the same code.
//!
//! [`LocalCluster`] runs N nodes in one process on loopback ephemeral ports, for tests,
//! examples and demos.

mod cluster;
mod config;
mod handle;
mod task;

use std::net::SocketAddr;

use shutter_transport::Time;
use shutter_transport::driver::{DriverError, EndpointStats};
use shutter_vclock::NodeId;

use crate::global::{AbortReason, GlobalSnapshot, InitiateError};
use crate::metrics::SnapshotMetrics;
use crate::wire::{LocalReport, SnapshotId};

pub use cluster::LocalCluster;
pub use config::{Algorithm, NodeConfig, ParseAlgorithmError};
pub use handle::NodeHandle;

/// What a node reports to its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// A snapshot this node initiated completed.
    Completed(GlobalSnapshot),
    /// A snapshot this node initiated or took part in was abandoned.
    Aborted {
        /// The snapshot.
        id: SnapshotId,
        /// Who was missing and why.
        reason: AbortReason,
    },
    /// A snapshot this node took part in is complete everywhere: this node's part of
    /// it (what its checkpoint store keeps).
    Committed(Box<LocalReport>),
    /// A cluster-wide rollback ended and the node runs again; `to` is the snapshot the
    /// cluster went back to (`None`: no snapshot was held by every member).
    Resumed {
        /// The snapshot, if any.
        to: Option<SnapshotId>,
    },
    /// This node took its local cut for a snapshot.
    LocalCut {
        /// The snapshot.
        id: SnapshotId,
        /// Local time of the cut.
        at: Time,
    },
}

/// Counters and histograms of one node.
#[derive(Clone, Debug)]
pub struct NodeStats {
    /// The node.
    pub id: NodeId,
    /// Transport counters, fault counters and the delivery-latency histogram (every
    /// transport message: application and snapshot control).
    pub transport: EndpointStats,
    /// Delivery latency of application messages only (µs; see
    /// [`crate::stack::Stack::app_delivery_latency`]).
    pub app_delivery_latency: hdrhistogram::Histogram<u64>,
    /// Latency, control messages and recorded messages of snapshots this node initiated.
    pub snapshots: SnapshotMetrics,
    /// The members now, this node included (smaller after a removal).
    pub members: Vec<NodeId>,
    /// Application messages handed to the transport queue.
    pub app_messages_sent: u64,
    /// Application messages delivered to the process (re-deliveries on restore excluded).
    pub app_messages_delivered: u64,
    /// Application messages handed back to the process as undeliverable (their
    /// receiver restarted; see `Process::on_undeliverable`).
    pub app_messages_returned: u64,
    /// Application messages discarded because their sender had declared them lost
    /// after a restart (see `Delivery::stale`).
    pub stale_discarded: u64,
    /// Transport messages that did not decode as an envelope (dropped).
    pub malformed_envelopes: u64,
    /// Lean application headers that named a baseline this node does not hold, or were
    /// out of range (dropped; see `StackStats::lean_undecodable`).
    pub lean_undecodable: u64,
    /// Messages from nodes outside the membership (dropped).
    pub non_member_dropped: u64,
    /// Envelopes the transport refused or could not send (the endpoint closed, or the
    /// destination has no address).
    pub send_errors: u64,
    /// Messages dropped because a rollback was under way or happened since they were
    /// sent.
    pub rolled_back_dropped: u64,
    /// Messages that arrived while halted for a round that then restored nothing,
    /// handed on at its end (see `StackStats::halted_released`).
    pub halted_released: u64,
    /// Rollbacks this node went through.
    pub rollbacks: u64,
    /// Checkpoints written.
    pub checkpoints_written: u64,
}

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP socket on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The transport refused (bad peer address, invalid config or fault plan, ...).
    #[error("transport: {0}")]
    Transport(DriverError),
    /// The node's task has stopped (shut down, or its endpoint failed).
    #[error("node has stopped")]
    Stopped,
    /// The engine refused to start a snapshot.
    #[error("cannot initiate a snapshot: {0}")]
    Initiate(#[from] InitiateError),
    /// A state (process state or snapshot bytes) did not decode.
    #[error("cannot decode state: {0}")]
    Decode(#[from] postcard::Error),
    /// The configuration cannot work; the message says why.
    #[error("invalid node config: {0}")]
    Config(String),
    /// The node is not part of the snapshot being restored.
    #[error("{0} is not in the snapshot")]
    NotInSnapshot(NodeId),
    /// The node still waits for some members' addresses and refuses this operation.
    #[error("{0} has not started: some member addresses are still unknown")]
    NotStarted(NodeId),
    /// No node with this id in the cluster.
    #[error("no node {0} in this cluster")]
    UnknownNode(NodeId),
    /// The checkpoint store cannot be used.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::StoreError),
    /// Not supported by this runtime (the message says what).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

impl From<DriverError> for RuntimeError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Bind { addr, source } => RuntimeError::Bind { addr, source },
            DriverError::Closed => RuntimeError::Stopped,
            other => RuntimeError::Transport(other),
        }
    }
}
