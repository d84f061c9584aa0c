//! The peers file: cluster membership (id and address per node) plus optional fault
//! injection and snapshot settings, in TOML.
//!
//! ```toml
//! key_file = "cluster.key" # the cluster key (`shutter keygen --out cluster.key`)
//!
//! [[nodes]]
//! id = 0
//! addr = "127.0.0.1:7000"
//! [[nodes]]
//! id = 1
//! addr = "127.0.0.1:7001"
//! admin = "127.0.0.1:8001"  # optional TCP admin address (default: `addr`, over TCP)
//!
//! # optional, before the [[nodes]] tables: the application channels (a directed graph,
//! # shutter_snapshot::topology's text form); without it every node may send to every other
//! # channels = "0->1 1->0"
//!
//! [faults]                 # optional: shutter_transport::faults::FaultPlan
//! seed = 7
//! [faults.default]
//! loss = { model = "bernoulli", p = 0.1 }
//! ```
//!
//! Errors say what is wrong and where (file, line and column for syntax, the node for
//! semantic mistakes such as a duplicate id).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shutter_snapshot::topology::{Channels, Topology};
use shutter_transport::faults::{FaultConfigError, FaultPlan};
use shutter_vclock::{MAX_NODES, NodeId};

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// Node id (its index in every vector clock).
    pub id: NodeId,
    /// UDP address the node listens on: `IP:PORT`, or `HOST:PORT` resolved when the file
    /// is read (IPv4 preferred), so DNS names (containers, a Kubernetes headless
    /// service) work.
    #[serde(deserialize_with = "host_port")]
    pub addr: SocketAddr,
    /// TCP address of the node's admin channel (`shutter snapshot` talks to it). Default:
    /// loopback (127.0.0.1) with the port of `addr`, over TCP (TCP and UDP ports are
    /// separate), so only local clients reach it unless configured otherwise.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_host_port"
    )]
    pub admin: Option<SocketAddr>,
}

/// Resolves `IP:PORT` or `HOST:PORT` (first IPv4 address, else the first address).
fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !s.contains(':') {
        return Err(format!("{s:?} needs a port (HOST:PORT or IP:PORT)"));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn host_port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    resolve(&s).map_err(serde::de::Error::custom)
}

fn opt_host_port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    host_port(d).map(Some)
}

/// serde names Rust types in some messages ("expected internally tagged enum
/// LossModel"); an operator writing TOML needs the shape instead.
fn without_rust_types(message: &str) -> String {
    let mut out = message.to_string();
    for (phrase, shape) in [
        (
            "internally tagged enum LossModel",
            "a loss model such as { model = \"bernoulli\", p = 0.1 }",
        ),
        ("internally tagged enum ", "a table with a `model` key"),
        ("struct ", "a table"),
        ("enum ", "one of the documented values"),
    ] {
        while let Some(at) = out.find(&format!("expected {phrase}")) {
            let start = at + "expected ".len();
            // The type name follows the phrase unless the phrase already named it.
            let name_end = if phrase.ends_with(' ') {
                out[start + phrase.len()..]
                    .find(|c: char| !c.is_alphanumeric() && c != '_')
                    .map_or(out.len(), |i| start + phrase.len() + i)
            } else {
                start + phrase.len()
            };
            out.replace_range(start..name_end, shape);
        }
    }
    out
}

/// The `addr` texts of the members that are host names, not IP addresses (for text
/// [`PeersFile::parse`] accepted).
pub fn host_names(text: &str) -> BTreeMap<NodeId, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        nodes: Vec<RawNode>,
    }
    #[derive(Deserialize)]
    struct RawNode {
        id: NodeId,
        addr: String,
    }
    toml::from_str::<Raw>(text)
        .map(|raw| {
            raw.nodes
                .into_iter()
                .filter(|n| n.addr.parse::<SocketAddr>().is_err())
                .map(|n| (n.id, n.addr))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed and validated peers file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersFile {
    /// The members, in any order (missing means empty, which validation rejects).
    #[serde(default)]
    pub nodes: Vec<PeerEntry>,
    /// Faults every node applies to its outgoing datagrams.
    #[serde(default)]
    pub faults: Option<FaultPlan>,
    /// The cluster key file (relative paths are relative to the peers file); see
    /// `shutter keygen`. Must come before the `[[nodes]]` tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The application channels in `shutter_snapshot::topology`'s text form
    /// (`"0->1 1->2 2->0"`; `a-b` both ways); every node named must be a member.
    /// Absent: every node may send to every other. Must come before the `[[nodes]]`
    /// tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<String>,
}

/// What is wrong with a peers file.
#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    /// The file could not be read.
    #[error("cannot read peers file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or a field of the wrong type (the message names line and column).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message with position.
        message: String,
    },
    /// A semantic error.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the node or field.
        reason: String,
    },
    /// The `[faults]` table is invalid.
    #[error("{path}: in [faults]: {source}")]
    Faults {
        /// The file.
        path: PathBuf,
        /// Why.
        source: FaultConfigError,
    },
}

impl PeersFile {
    /// Reads and validates a peers file.
    pub fn load(path: &Path) -> Result<PeersFile, PeersError> {
        let text = std::fs::read_to_string(path).map_err(|source| PeersError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Like [`PeersFile::load`], plus the members given by host name (`id` -> the
    /// `HOST:PORT` text), which [`crate::resolve`] looks up again while a node runs.
    pub fn load_with_names(
        path: &Path,
    ) -> Result<(PeersFile, BTreeMap<NodeId, String>), PeersError> {
        let text = std::fs::read_to_string(path).map_err(|source| PeersError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file = Self::parse(&text, path)?;
        Ok((file, host_names(&text)))
    }

    /// Parses and validates peers-file text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<PeersFile, PeersError> {
        let file: PeersFile = toml::from_str(text).map_err(|e| PeersError::Syntax {
            path: path.to_path_buf(),
            message: without_rust_types(e.to_string().trim_end()),
        })?;
        file.validate(path)?;
        Ok(file)
    }

    /// Checks ids and addresses are unique and in range, and the fault plan.
    pub fn validate(&self, path: &Path) -> Result<(), PeersError> {
        let invalid = |reason: String| PeersError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if self.nodes.is_empty() {
            return Err(invalid(
                "no [[nodes]]: a cluster needs at least one node".into(),
            ));
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let mut admins = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.id.index() >= MAX_NODES {
                return Err(invalid(format!(
                    "nodes[{i}]: id {} is too large (at most {})",
                    n.id.0,
                    MAX_NODES - 1
                )));
            }
            if !ids.insert(n.id) {
                return Err(invalid(format!("nodes[{i}]: id {} appears twice", n.id.0)));
            }
            if n.addr.port() == 0 {
                return Err(invalid(format!(
                    "nodes[{i}] (id {}): address {} needs a port",
                    n.id.0, n.addr
                )));
            }
            if !addrs.insert(n.addr) {
                return Err(invalid(format!(
                    "nodes[{i}] (id {}): address {} is used by another node",
                    n.id.0, n.addr
                )));
            }
            // Defaults (loopback, the node's UDP port) cannot collide: UDP addresses are
            // unique, and nodes on other hosts have their own loopback.
            let Some(admin) = n.admin else { continue };
            if admin.port() == 0 {
                return Err(invalid(format!(
                    "nodes[{i}] (id {}): admin address {admin} needs a port",
                    n.id.0
                )));
            }
            if !admins.insert(admin) {
                return Err(invalid(format!(
                    "nodes[{i}] (id {}): admin address {admin} is used by another node",
                    n.id.0
                )));
            }
        }
        if let Some(text) = &self.channels {
            let topology =
                Topology::parse(text).map_err(|e| invalid(format!("channels = {text:?}: {e}")))?;
            if let Some(n) = topology.nodes().into_iter().find(|n| !ids.contains(n)) {
                return Err(invalid(format!(
                    "channels = {text:?}: node {} is not in [[nodes]]",
                    n.0
                )));
            }
        }
        if let Some(f) = &self.faults {
            f.validate().map_err(|source| PeersError::Faults {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(())
    }

    /// Node `id`'s application channels, if the file restricts them.
    pub fn channels_of(&self, id: NodeId) -> Option<Channels> {
        let topology = Topology::parse(self.channels.as_deref()?).ok()?;
        Some(topology.channels_of(id))
    }

    /// Address of node `id`.
    pub fn addr_of(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes.iter().find(|n| n.id == id).map(|n| n.addr)
    }

    /// TCP admin address of node `id` (its `admin`, else loopback with the port of its `addr`).
    pub fn admin_of(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes.iter().find(|n| n.id == id).map(|n| {
            n.admin
                .unwrap_or_else(|| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), n.addr.port()))
        })
    }

    /// All `(id, addr)` pairs sorted by id.
    pub fn members(&self) -> Vec<(NodeId, SocketAddr)> {
        let mut m: Vec<_> = self.nodes.iter().map(|n| (n.id, n.addr)).collect();
        m.sort();
        m
    }

    /// Renders the file as TOML (used by `shutter demo` to write a reusable peers file).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PeersFile, PeersError> {
        PeersFile::parse(text, Path::new("peers.toml"))
    }

    #[test]
    fn parses_nodes_and_faults() {
        let f = parse(
            r#"
[[nodes]]
id = 1
addr = "127.0.0.1:7001"
[[nodes]]
id = 0
addr = "127.0.0.1:7000"
[faults]
seed = 3
[faults.default]
loss = { model = "bernoulli", p = 0.2 }
"#,
        )
        .unwrap();
        assert_eq!(f.members()[0].0, NodeId(0));
        assert_eq!(f.addr_of(NodeId(1)).unwrap().port(), 7001);
        assert_eq!(f.admin_of(NodeId(1)), f.addr_of(NodeId(1)));
        assert_eq!(f.faults.unwrap().seed, 3);
    }

    #[test]
    fn host_names_are_resolved() {
        // `localhost:7100` used to be refused ("invalid socket address syntax").
        let f = parse("[[nodes]]\nid = 0\naddr = \"localhost:7100\"\nadmin = \"localhost:8100\"\n")
            .unwrap();
        let a = f.addr_of(NodeId(0)).unwrap();
        assert!(a.ip().is_loopback() && a.port() == 7100, "{a}");
        assert_eq!(f.admin_of(NodeId(0)).unwrap().port(), 8100);
        let names = host_names(
            "[[nodes]]\nid = 0\naddr = \"localhost:7100\"\n[[nodes]]\nid = 1\naddr = \"127.0.0.1:7101\"\n",
        );
        assert_eq!(
            names,
            BTreeMap::from([(NodeId(0), "localhost:7100".to_string())]),
            "only names are looked up again"
        );
        let e = parse("[[nodes]]\nid = 0\naddr = \"localhost\"\n").unwrap_err();
        assert!(e.to_string().contains("needs a port"), "{e}");
        assert!(e.to_string().contains("line 3"), "{e}");
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = parse("[[nodes]]\nid = 0\naddr = \"nonsense\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("peers.toml:") && msg.contains("line 3"),
            "{msg}"
        );

        let e = parse(
            "[[nodes]]\nid = 0\naddr = \"127.0.0.1:1\"\n[[nodes]]\nid = 0\naddr = \"127.0.0.1:2\"\n",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "peers.toml: nodes[1]: id 0 appears twice");

        let e = parse("[[nodes]]\nid = 0\naddr = \"127.0.0.1:1\"\nprot = 3\n").unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");

        let e =
            parse("[[nodes]]\nid = 0\naddr = \"127.0.0.1:1\"\n[faults.default]\nduplicate = 1.5\n")
                .unwrap_err();
        assert!(e.to_string().contains("in [faults]"), "{e}");
        assert!(e.to_string().contains("duplicate"), "{e}");

        let e = parse("").unwrap_err();
        assert!(e.to_string().contains("no [[nodes]]"), "{e}");

        // serde's "expected internally tagged enum LossModel" named a Rust type.
        let e = parse("[[nodes]]\nid = 0\naddr = \"127.0.0.1:1\"\n[faults.default]\nloss = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("LossModel") && !e.contains("enum"), "{e}");
        assert!(
            e.contains("model = \"bernoulli\"") && e.contains("line 5"),
            "{e}"
        );
        let e = parse("[[nodes]]\nid = 0\naddr = \"127.0.0.1:1\"\n[faults]\ndefault = 3\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("struct"), "{e}");
    }

    #[test]
    fn round_trips_through_toml() {
        let f = PeersFile {
            nodes: vec![PeerEntry {
                id: NodeId(0),
                addr: "127.0.0.1:9".parse().unwrap(),
                admin: Some("127.0.0.1:10".parse().unwrap()),
            }],
            faults: None,
            key_file: Some("cluster.key".into()),
            channels: Some("0".into()),
        };
        assert_eq!(parse(&f.to_toml()).unwrap(), f);
    }

    #[test]
    fn channels_name_members_and_parse() {
        let nodes = "[[nodes]]\nid = 0\naddr = \"127.0.0.1:9000\"\n\
                     [[nodes]]\nid = 1\naddr = \"127.0.0.1:9001\"\n";
        let f = parse(&format!("channels = \"0->1\"\n{nodes}")).unwrap();
        let c = f.channels_of(NodeId(1)).unwrap();
        assert_eq!((c.outgoing, c.incoming), (vec![], vec![NodeId(0)]));
        assert_eq!(parse(nodes).unwrap().channels_of(NodeId(0)), None);
        let e = parse(&format!("channels = \"0->2\"\n{nodes}")).unwrap_err();
        assert!(e.to_string().contains("node 2 is not in [[nodes]]"), "{e}");
        let e = parse(&format!("channels = \"0->1, 1=>0\"\n{nodes}")).unwrap_err();
        assert!(e.to_string().contains("item 2"), "{e}");
    }
}
