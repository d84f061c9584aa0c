//! Which application channels exist: a directed graph over the nodes.
//!
//! By default every node may send to every other ([`Topology::complete`]). A
//! [`Topology`] narrows that to the channels an application really uses (a one-way
//! ring, a grid, a tree), and each node's engine gets its own [`Channels`] through
//! [`crate::engine::EngineConfig::channels`]:
//!
//! * [`crate::process::Context::peers`] lists the node's outgoing channels, and a send
//!   on a channel that does not exist is refused and counted
//!   ([`crate::process::Node::off_topology`]), never delivered;
//! * Chandy-Lamport sends markers on outgoing channels only and waits for markers on
//!   incoming channels only, so a snapshot costs one marker per channel;
//! * Mattern's counting is per channel already and sparse: a channel nobody sent on
//!   has nothing to close and costs nothing.
//!
//! **Control traffic has its own links.** The topology restricts application
//! messages; snapshot control (`Begin`, reports, `Done`) and rollback rounds still go
//! directly between any two members. Routing them through the application graph
//! would make every snapshot's latency and its chance of finishing depend on the
//! longest path and on every relay staying up; on an IP network every node can
//! address every other one anyway, and the application graph is a property of the
//! application, not of the network. The transport therefore keeps a session with
//! every member, as without a topology. For Chandy-Lamport the graph must be strongly
//! connected, or nodes the markers cannot reach never cut (the snapshot times out).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use shutter_vclock::NodeId;

/// One node's application channels (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    /// Nodes this node may send application messages to, sorted.
    pub outgoing: Vec<NodeId>,
    /// Nodes that may send application messages to this node, sorted.
    pub incoming: Vec<NodeId>,
}

impl Channels {
    /// These channels without those to or from nodes outside `nodes` (after a
    /// membership change).
    pub fn restricted_to(&self, nodes: &[NodeId]) -> Channels {
        let keep = |v: &Vec<NodeId>| v.iter().copied().filter(|n| nodes.contains(n)).collect();
        Channels {
            outgoing: keep(&self.outgoing),
            incoming: keep(&self.incoming),
        }
    }
}

/// What is wrong with a topology.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// A channel from a node to itself.
    #[error("channel {0} -> {0} is a self-loop")]
    SelfLoop(NodeId),
    /// A channel names a node that is not in the topology.
    #[error("channel {from} -> {to} names {unknown}, which is not a node of the topology")]
    UnknownNode {
        /// The channel's sender.
        from: NodeId,
        /// The channel's receiver.
        to: NodeId,
        /// The node that is not listed.
        unknown: NodeId,
    },
    /// The text form did not parse.
    #[error("topology text, item {item} ({text:?}): {what}")]
    Syntax {
        /// 1-based position of the item among the whitespace- or comma-separated ones.
        item: usize,
        /// The item.
        text: String,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// A directed graph of application channels over a set of nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    nodes: BTreeSet<NodeId>,
    edges: BTreeSet<(NodeId, NodeId)>,
}

impl Topology {
    /// Every node may send to every other one (what a cluster without a topology does).
    pub fn complete(nodes: &[NodeId]) -> Topology {
        let edges = nodes
            .iter()
            .flat_map(|&a| nodes.iter().map(move |&b| (a, b)))
            .filter(|(a, b)| a != b)
            .collect();
        Topology {
            nodes: nodes.iter().copied().collect(),
            edges,
        }
    }

    /// Nodes `0..n`, each sending only to the next: `i -> (i + 1) mod n`.
    pub fn ring(n: u32) -> Topology {
        let edges = (0..n)
            .filter(|_| n > 1)
            .map(|i| (NodeId(i), NodeId((i + 1) % n)))
            .collect();
        Topology {
            nodes: (0..n).map(NodeId).collect(),
            edges,
        }
    }

    /// Nodes `0..n` in a ring with channels both ways.
    pub fn bidirectional_ring(n: u32) -> Topology {
        let mut t = Topology::ring(n);
        let back: Vec<_> = t.edges.iter().map(|&(a, b)| (b, a)).collect();
        t.edges.extend(back);
        t
    }

    /// A `width` x `height` grid, node `r * width + c` at row `r`, column `c`, with
    /// channels both ways between horizontal and vertical neighbours.
    pub fn grid(width: u32, height: u32) -> Topology {
        let id = |r: u32, c: u32| NodeId(r * width + c);
        let mut edges = BTreeSet::new();
        for r in 0..height {
            for c in 0..width {
                if c + 1 < width {
                    edges.insert((id(r, c), id(r, c + 1)));
                    edges.insert((id(r, c + 1), id(r, c)));
                }
                if r + 1 < height {
                    edges.insert((id(r, c), id(r + 1, c)));
                    edges.insert((id(r + 1, c), id(r, c)));
                }
            }
        }
        Topology {
            nodes: (0..width * height).map(NodeId).collect(),
            edges,
        }
    }

    /// The channels `edges` over `nodes`.
    pub fn from_edges(
        nodes: &[NodeId],
        edges: impl IntoIterator<Item = (NodeId, NodeId)>,
    ) -> Result<Topology, TopologyError> {
        let nodes: BTreeSet<NodeId> = nodes.iter().copied().collect();
        let mut set = BTreeSet::new();
        for (from, to) in edges {
            if from == to {
                return Err(TopologyError::SelfLoop(from));
            }
            for unknown in [from, to] {
                if !nodes.contains(&unknown) {
                    return Err(TopologyError::UnknownNode { from, to, unknown });
                }
            }
            set.insert((from, to));
        }
        Ok(Topology { nodes, edges: set })
    }

    /// Parses the text form: items separated by whitespace or commas, each `a->b` (one
    /// channel), `a<->b` or `a-b` (both ways) or a lone `a` (a node without channels);
    /// nodes are numbers, optionally written `n3`. Every node named is in the topology.
    ///
    /// ```
    /// use shutter_snapshot::topology::Topology;
    /// let t = Topology::parse("0->1, 1->2, 2->0").unwrap();
    /// assert_eq!(t, Topology::ring(3));
    /// assert_eq!(Topology::parse("n0-n1").unwrap().channel_count(), 2);
    /// assert!(Topology::parse("0->0").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        let mut nodes = BTreeSet::new();
        let mut edges = BTreeSet::new();
        let items = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty());
        for (i, item) in items.enumerate() {
            let bad = |what| TopologyError::Syntax {
                item: i + 1,
                text: item.to_string(),
                what,
            };
            let node = |s: &str| {
                let s = s.strip_prefix('n').unwrap_or(s);
                s.parse::<u32>()
                    .map(NodeId)
                    .map_err(|_| bad("a node is a number, like 3 or n3"))
            };
            let (a, b, both) = if let Some((a, b)) = item.split_once("<->") {
                (a, b, true)
            } else if let Some((a, b)) = item.split_once("->") {
                (a, b, false)
            } else if let Some((a, b)) = item.split_once('-') {
                (a, b, true)
            } else {
                nodes.insert(node(item)?);
                continue;
            };
            let (a, b) = (node(a)?, node(b)?);
            if a == b {
                return Err(TopologyError::SelfLoop(a));
            }
            nodes.extend([a, b]);
            edges.insert((a, b));
            if both {
                edges.insert((b, a));
            }
        }
        Ok(Topology { nodes, edges })
    }

    /// The nodes, sorted.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.nodes.iter().copied().collect()
    }

    /// Every channel `(from, to)`, sorted.
    pub fn channels(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.edges.iter().copied()
    }

    /// How many channels there are.
    pub fn channel_count(&self) -> usize {
        self.edges.len()
    }

    /// True if `from` may send to `to`.
    pub fn has(&self, from: NodeId, to: NodeId) -> bool {
        self.edges.contains(&(from, to))
    }

    /// Node `n`'s channels.
    pub fn channels_of(&self, n: NodeId) -> Channels {
        Channels {
            outgoing: self
                .edges
                .iter()
                .filter(|e| e.0 == n)
                .map(|e| e.1)
                .collect(),
            incoming: self
                .edges
                .iter()
                .filter(|e| e.1 == n)
                .map(|e| e.0)
                .collect(),
        }
    }

    /// True if every node can reach every other one along channels (what
    /// Chandy-Lamport's markers need).
    pub fn is_strongly_connected(&self) -> bool {
        let Some(&first) = self.nodes.first() else {
            return true;
        };
        let reach = |forward: bool| {
            let mut adj: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
            for &(a, b) in &self.edges {
                let (x, y) = if forward { (a, b) } else { (b, a) };
                adj.entry(x).or_default().push(y);
            }
            let mut seen = BTreeSet::from([first]);
            let mut todo = vec![first];
            while let Some(x) = todo.pop() {
                for &y in adj.get(&x).into_iter().flatten() {
                    if seen.insert(y) {
                        todo.push(y);
                    }
                }
            }
            seen.len() == self.nodes.len()
        };
        reach(true) && reach(false)
    }
}

impl fmt::Display for Topology {
    /// The text form [`Topology::parse`] reads (`0->1 1->2 ...`, lone nodes by number).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = self
            .edges
            .iter()
            .map(|(a, b)| format!("{}->{}", a.0, b.0))
            .collect();
        for n in &self.nodes {
            if !self.edges.iter().any(|(a, b)| a == n || b == n) {
                items.push(n.0.to_string());
            }
        }
        f.write_str(&items.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let r = Topology::ring(4);
        assert_eq!(r.channel_count(), 4);
        assert!(r.has(NodeId(3), NodeId(0)) && !r.has(NodeId(0), NodeId(3)));
        assert!(r.is_strongly_connected());
        assert_eq!(
            r.channels_of(NodeId(0)),
            Channels {
                outgoing: vec![NodeId(1)],
                incoming: vec![NodeId(3)]
            }
        );
        assert_eq!(Topology::bidirectional_ring(4).channel_count(), 8);
        assert_eq!(Topology::grid(3, 2).channel_count(), 2 * (2 * 2 + 3));
        let ids: Vec<NodeId> = (0..4).map(NodeId).collect();
        assert_eq!(Topology::complete(&ids).channel_count(), 12);
        let line = Topology::parse("0->1 1->2").unwrap();
        assert!(!line.is_strongly_connected());
        assert_eq!(Topology::ring(1).channel_count(), 0);
    }

    #[test]
    fn text_round_trips_and_errors_say_where() {
        for t in [
            Topology::ring(5),
            Topology::grid(2, 2),
            Topology::parse("0 1->2").unwrap(),
        ] {
            assert_eq!(Topology::parse(&t.to_string()).unwrap(), t);
        }
        let e = Topology::parse("0->1, 1->x").unwrap_err();
        assert!(e.to_string().contains("item 2"), "{e}");
        assert_eq!(
            Topology::parse("2-2"),
            Err(TopologyError::SelfLoop(NodeId(2)))
        );
        let e = Topology::from_edges(&[NodeId(0)], [(NodeId(0), NodeId(5))]).unwrap_err();
        assert!(e.to_string().contains("n5"), "{e}");
    }
}
