//! [`LocalCluster`]: N nodes in this process on ephemeral ports of one (loopback) IP.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::task::Poll;

use shutter_vclock::NodeId;

use super::config::NodeConfig;
use super::handle::NodeHandle;
use super::{NodeEvent, NodeStats, RuntimeError};
use crate::global::GlobalSnapshot;
use crate::process::Process;
use crate::topology::Topology;
use crate::wire::SnapshotId;

/// N nodes in one process, fully meshed, with a merged event stream.
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<NodeHandle>,
    /// Where the merged stream starts polling next, so no node starves the others.
    next_poll: usize,
}

/// `base` for node `id` in a cluster of `ids`: ephemeral port, every address unknown.
fn node_config(base: &NodeConfig, id: NodeId, ids: &[NodeId]) -> NodeConfig {
    let ip = base.listen.ip();
    NodeConfig {
        id,
        listen: SocketAddr::new(ip, 0),
        peers: ids.iter().map(|&n| (n, SocketAddr::new(ip, 0))).collect(),
        ..base.clone()
    }
}

impl LocalCluster {
    /// Binds nodes `0..n` on `base.listen`'s IP with ephemeral ports, tells every node
    /// every other's address, and so starts them all. `make` builds each node's process.
    pub async fn start<P, F>(
        n: usize,
        base: NodeConfig,
        make: F,
    ) -> Result<LocalCluster, RuntimeError>
    where
        F: FnMut(NodeId) -> P,
        P: Process + Send + 'static,
    {
        Self::start_each(n, base, |_, c| c, make).await
    }

    /// Like [`LocalCluster::start`], with each node's config passed through `each`
    /// first (for what differs per node, such as its checkpoint directory).
    pub async fn start_each<P, F>(
        n: usize,
        base: NodeConfig,
        each: impl Fn(NodeId, NodeConfig) -> NodeConfig,
        make: F,
    ) -> Result<LocalCluster, RuntimeError>
    where
        F: FnMut(NodeId) -> P,
        P: Process + Send + 'static,
    {
        let ids: Vec<NodeId> = (0..n as u32).map(NodeId).collect();
        Self::spawn(&ids, |id| each(id, node_config(&base, id, &ids)), make).await
    }

    /// Spawns one node per id with its config from `config` and its process from
    /// `make`, then connects them all.
    async fn spawn<P, F>(
        ids: &[NodeId],
        config: impl Fn(NodeId) -> NodeConfig,
        mut make: F,
    ) -> Result<LocalCluster, RuntimeError>
    where
        F: FnMut(NodeId) -> P,
        P: Process + Send + 'static,
    {
        let mut nodes = Vec::with_capacity(ids.len());
        for &id in ids {
            nodes.push(NodeHandle::spawn(config(id), make(id)).await?);
        }
        Self::connect(nodes).await
    }

    /// Like [`LocalCluster::start`] for the nodes of `topology`, each sending only on
    /// its outgoing channels ([`NodeConfig::channels`]; see [`crate::topology`]).
    pub async fn start_on<P, F>(
        topology: &Topology,
        base: NodeConfig,
        make: F,
    ) -> Result<LocalCluster, RuntimeError>
    where
        F: FnMut(NodeId) -> P,
        P: Process + Send + 'static,
    {
        let ids = topology.nodes();
        let config = |id| NodeConfig {
            channels: Some(topology.channels_of(id)),
            ..node_config(&base, id, &ids)
        };
        Self::spawn(&ids, config, make).await
    }

    /// Restores every node of `snapshot` (see [`NodeHandle::restore`]) on ephemeral ports.
    pub async fn restore<P, F>(
        base: NodeConfig,
        snapshot: &GlobalSnapshot,
        mut make: F,
    ) -> Result<LocalCluster, RuntimeError>
    where
        F: FnMut(NodeId) -> P,
        P: Process + Send + 'static,
    {
        let ids: Vec<NodeId> = snapshot.nodes().collect();
        let mut nodes = Vec::with_capacity(ids.len());
        for &id in &ids {
            let cfg = node_config(&base, id, &ids);
            nodes.push(NodeHandle::restore(cfg, make(id), snapshot).await?);
        }
        Self::connect(nodes).await
    }

    /// Full mesh of addresses; each node starts when its last peer is added.
    async fn connect(nodes: Vec<NodeHandle>) -> Result<LocalCluster, RuntimeError> {
        let addrs: Vec<(NodeId, SocketAddr)> =
            nodes.iter().map(|h| (h.id(), h.local_addr())).collect();
        for node in &nodes {
            for &(id, addr) in &addrs {
                if id != node.id() {
                    node.add_peer(id, addr).await?;
                }
            }
        }
        Ok(LocalCluster {
            nodes,
            next_poll: 0,
        })
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    /// The node with this id.
    ///
    /// # Panics
    /// If there is no such node in the cluster.
    pub fn node_mut(&mut self, id: NodeId) -> &mut NodeHandle {
        self.nodes
            .iter_mut()
            .find(|h| h.id() == id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// The node with this id, if any.
    pub fn node(&self, id: NodeId) -> Option<&NodeHandle> {
        self.nodes.iter().find(|h| h.id() == id)
    }

    /// Starts a snapshot on node `on`.
    pub async fn initiate(&self, on: NodeId) -> Result<SnapshotId, RuntimeError> {
        self.node(on)
            .ok_or(RuntimeError::UnknownNode(on))?
            .initiate()
            .await
    }

    /// The next event of any node; `None` once every node has stopped. Cancel-safe (an
    /// event is only taken in the poll that returns it), so it may sit in `select!`.
    pub async fn next_event(&mut self) -> Option<(NodeId, NodeEvent)> {
        let n = self.nodes.len();
        let start = self.next_poll;
        let nodes = &mut self.nodes;
        let (found, at) = poll_fn(|cx| {
            let mut open = false;
            for k in 0..n {
                let i = (start + k) % n;
                match nodes[i].events.poll_recv(cx) {
                    Poll::Ready(Some(event)) => {
                        return Poll::Ready((Some((nodes[i].id(), event)), i));
                    }
                    Poll::Ready(None) => {}
                    Poll::Pending => open = true,
                }
            }
            if open {
                Poll::Pending
            } else {
                Poll::Ready((None, start))
            }
        })
        .await;
        self.next_poll = if n == 0 { 0 } else { (at + 1) % n };
        found
    }

    /// Stops every node and returns their final statistics, in node order.
    pub async fn shutdown(self) -> Result<Vec<NodeStats>, RuntimeError> {
        let mut stats = Vec::with_capacity(self.nodes.len());
        for node in self.nodes {
            stats.push(node.shutdown().await?);
        }
        Ok(stats)
    }
}
