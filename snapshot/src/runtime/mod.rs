//! The node runtime: a thin tokio layer that runs one [`crate::process::Node`] over one
//! transport [`Endpoint`](shutter_transport::driver::Endpoint).
//!
//! Each node is one task that owns the endpoint and the sans-IO node and loops over four
//! inputs: operator commands from its [`NodeHandle`], transport events, the engine's timer
//! and the application tick. After every input it drains the node (`poll_transmit`, then
//! `poll_event`) and re-arms the engine timer, as the sans-IO call order requires.
//! Envelopes travel as [`crate::wire::Envelope::to_bytes`]; one that does not decode is
//! dropped and counted in [`NodeStats::malformed_envelopes`].
//!
//! The node task never awaits the transport's flow control: outgoing envelopes go into a
//! per-peer queue drained by a small forwarding task, which is the one that waits in
//! `send().await` when a peer's window is full. So a slow or dead peer cannot stop the
//! node from reading events (which is what frees the window in the first place), and the
//! per-peer order in which the node produced messages is the order the transport sees,
//! which the Chandy-Lamport baseline needs in ordered mode.
//!
//! [`LocalCluster`] runs N nodes in one process on loopback ephemeral ports, for tests,
//! examples and demos.

mod cluster;
mod config;
mod handle;
mod outbox;
mod task;

use std::net::SocketAddr;

use shutter_transport::Time;
use shutter_transport::driver::{DriverError, EndpointStats};
use shutter_vclock::NodeId;

use crate::global::{AbortReason, GlobalSnapshot, InitiateError};
use crate::metrics::SnapshotMetrics;
use crate::wire::SnapshotId;

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
    /// Transport counters, fault counters and the delivery-latency histogram.
    pub transport: EndpointStats,
    /// Latency, control messages and recorded messages of snapshots this node initiated.
    pub snapshots: SnapshotMetrics,
    /// Application messages handed to the transport queue.
    pub app_messages_sent: u64,
    /// Application messages delivered to the process (re-deliveries on restore excluded).
    pub app_messages_delivered: u64,
    /// Application messages discarded because their sender had declared them lost
    /// after a restart (see `Delivery::stale`).
    pub stale_discarded: u64,
    /// Transport messages that did not decode as an envelope (dropped).
    pub malformed_envelopes: u64,
    /// Messages from nodes outside the membership (dropped).
    pub non_member_dropped: u64,
    /// Envelopes the transport refused or could not send (the endpoint closed, or the
    /// destination has no address).
    pub send_errors: u64,
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
