//! What a node runtime is configured with: [`NodeConfig`] and the choice of [`Algorithm`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use shutter_transport::faults::FaultPlan;
use shutter_vclock::NodeId;

/// Which snapshot algorithm a node runs. Every node of a cluster must run the same one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Mattern's vector-time algorithm over the normal, unordered transport.
    #[default]
    Mattern,
    /// The Chandy-Lamport baseline; the runtime switches the transport to ordered mode,
    /// without which the algorithm is incorrect.
    ChandyLamport,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Mattern => "mattern",
            Algorithm::ChandyLamport => "chandy-lamport",
        })
    }
}

/// An algorithm name other than `mattern` or `chandy-lamport`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown snapshot algorithm {0:?} (expected \"mattern\" or \"chandy-lamport\")")]
pub struct ParseAlgorithmError(pub String);

impl FromStr for Algorithm {
    type Err = ParseAlgorithmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mattern" => Ok(Algorithm::Mattern),
            "chandy-lamport" => Ok(Algorithm::ChandyLamport),
            other => Err(ParseAlgorithmError(other.to_owned())),
        }
    }
}

/// Everything a node needs to run. `Default` gives node 0 on `127.0.0.1:0` with no peers.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node.
    pub id: NodeId,
    /// Address to bind (port 0 picks an ephemeral port).
    pub listen: SocketAddr,
    /// The full membership, this node included (its own address is ignored). The ids are
    /// the snapshot participants; an entry with port 0 is a member whose address comes
    /// later through `NodeHandle::add_peer`. The node starts (calls `Process::on_start`,
    /// ticks, reads traffic) once every member's address is known.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Faults applied to this node's outgoing datagrams.
    pub faults: Option<FaultPlan>,
    /// The snapshot algorithm.
    pub algorithm: Algorithm,
    /// A snapshot not finished this long after initiation is aborted.
    pub snapshot_timeout: Duration,
    /// Cadence of `Process::on_tick`.
    pub tick_interval: Duration,
    /// Base transport configuration; the runtime overrides `local`, `incarnation` and
    /// `ordered`.
    pub transport: shutter_transport::Config,
    /// The checkpoint store (directory, newest checkpoints kept), if any: the node
    /// writes its part of every committed snapshot there, and a node that starts with
    /// checkpoints in it rolls the cluster back to the newest one every member holds
    /// (see `shutter_snapshot::recovery`). Mattern only.
    pub checkpoints: Option<(std::path::PathBuf, usize)>,
    /// What a node that starts with checkpoints does: roll the cluster back (`true`, the
    /// default, and the bank's: money stays exact), or rejoin with a fresh application
    /// state and no rollback (`false`, for applications that can rebuild; what the
    /// node's previous life held is lost).
    pub roll_back_on_restart: bool,
    /// A new member joining a running cluster: the process does not start by itself
    /// but waits until a member adds it (`NodeHandle::add_member` there), then runs
    /// from its fresh state. `peers` lists the cluster with this node. Needs a
    /// checkpoint store.
    pub join: bool,
    /// This node's application channels (see [`crate::topology`]); `None`: a channel
    /// to and from every member.
    pub channels: Option<crate::topology::Channels>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: NodeId(0),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            peers: Vec::new(),
            faults: None,
            algorithm: Algorithm::Mattern,
            snapshot_timeout: Duration::from_secs(10),
            tick_interval: Duration::from_millis(10),
            transport: shutter_transport::Config::default(),
            checkpoints: None,
            roll_back_on_restart: true,
            join: false,
            channels: None,
        }
    }
}

impl NodeConfig {
    /// Every member's id, this node included, sorted and deduplicated.
    pub fn members(&self) -> Vec<NodeId> {
        let mut m: Vec<NodeId> = self.peers.iter().map(|(id, _)| *id).collect();
        m.push(self.id);
        m.sort_unstable();
        m.dedup();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for a in [Algorithm::Mattern, Algorithm::ChandyLamport] {
            assert_eq!(a.to_string().parse::<Algorithm>(), Ok(a));
        }
        assert!("fifo".parse::<Algorithm>().is_err());
    }

    #[test]
    fn members_include_self_once() {
        let cfg = NodeConfig {
            id: NodeId(2),
            peers: vec![
                (NodeId(2), "127.0.0.1:1".parse().unwrap()),
                (NodeId(0), "127.0.0.1:2".parse().unwrap()),
            ],
            ..NodeConfig::default()
        };
        assert_eq!(cfg.members(), vec![NodeId(0), NodeId(2)]);
    }
}
