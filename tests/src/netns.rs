//! A throw-away network lab: one Linux network namespace per node, joined by veth links
//! to a bridge in a hub namespace, with an nftables rule in every node namespace that
//! drops a random share of the UDP datagrams it receives from the other nodes
//! (`numgen random mod 100 < N drop`, hook prerouting, so the loss is on the receiving
//! side of each link, in the kernel).
//!
//! Nothing touches the host's own network namespace: the veth pairs are created from
//! inside the hub namespace straight into the node namespaces, and the only addresses
//! are `10.77.0.0/24` inside those namespaces plus each namespace's own loopback.
//! [`Lab`] deletes every namespace it made on drop (deleting a namespace removes its
//! veth ends), also when the test panics; namespaces left behind by a test process that
//! was killed are swept by the next [`Lab::create`].
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); [`Lab::probe`] says why not when
//! they are missing, so the test can print a visible SKIPPED line.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Prefix of every namespace name this module creates.
const PREFIX: &str = "shutter-t";

/// Per-node drop counters read back from nftables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// UDP datagrams from other nodes that the rule dropped.
    pub dropped: u64,
    /// UDP datagrams from other nodes that passed.
    pub passed: u64,
}

/// The namespaces, bridge and nftables rules of one test.
#[derive(Debug)]
pub struct Lab {
    hub: String,
    nodes: Vec<String>,
}

/// Runs a command, returning its stdout or an error naming the command and its stderr.
fn sh(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("piped");
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{program}: writing stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|uids| uids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The nftables ruleset of a node namespace: drop `loss_percent`% of the UDP datagrams
/// from the lab subnet, count what is dropped and what passes.
fn ruleset(loss_percent: u8) -> String {
    format!(
        "table inet shutter_lossy {{\n\
         \tchain pre {{\n\
         \t\ttype filter hook prerouting priority 0; policy accept;\n\
         \t\tip saddr 10.77.0.0/24 meta l4proto udp numgen random mod 100 < {loss_percent} counter drop\n\
         \t\tip saddr 10.77.0.0/24 meta l4proto udp counter accept\n\
         \t}}\n\
         }}\n"
    )
}

impl Lab {
    /// Whether this machine can build a lab; `Err` says why not (for the SKIPPED line).
    pub fn probe() -> Result<(), String> {
        if !is_root() {
            return Err("not running as root (network namespaces need CAP_SYS_ADMIN)".into());
        }
        sh("ip", &["-V"], None).map_err(|e| format!("iproute2 `ip` unavailable: {e}"))?;
        sh("nft", &["--version"], None).map_err(|e| format!("nftables `nft` unavailable: {e}"))?;
        let probe = format!("{PREFIX}{}-probe", std::process::id());
        sh("ip", &["netns", "add", &probe], None)
            .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        let nft = sh(
            "ip",
            &["netns", "exec", &probe, "nft", "-f", "-"],
            Some(&ruleset(1)),
        );
        let _ = sh("ip", &["netns", "del", &probe], None);
        nft.map_err(|e| format!("nftables does not work in a namespace: {e}"))?;
        Ok(())
    }

    /// Builds the lab for `nodes` nodes with `loss_percent`% random drop on receive.
    pub fn create(nodes: usize, loss_percent: u8) -> Result<Lab, String> {
        assert!(
            (1..=200).contains(&nodes),
            "the lab numbers nodes 10.77.0.1-200"
        );
        sweep_stale();
        let pid = std::process::id();
        let mut lab = Lab {
            hub: format!("{PREFIX}{pid}-hub"),
            nodes: Vec::new(),
        };
        // Register each namespace before configuring it, so Drop removes it on error.
        sh("ip", &["netns", "add", &lab.hub], None)?;
        let hub = lab.hub.clone();
        let in_hub = |args: &[&str]| {
            let mut full = vec!["-n", hub.as_str()];
            full.extend_from_slice(args);
            sh("ip", &full, None)
        };
        in_hub(&["link", "add", "br0", "type", "bridge"])?;
        in_hub(&["link", "set", "br0", "up"])?;
        for i in 0..nodes {
            let ns = format!("{PREFIX}{pid}-n{i}");
            sh("ip", &["netns", "add", &ns], None)?;
            lab.nodes.push(ns.clone());
            let port = format!("p{i}");
            in_hub(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            in_hub(&["link", "set", &port, "master", "br0"])?;
            in_hub(&["link", "set", &port, "up"])?;
            let addr = format!("{}/24", lab.addr(i));
            sh(
                "ip",
                &["-n", &ns, "addr", "add", &addr, "dev", "eth0"],
                None,
            )?;
            sh("ip", &["-n", &ns, "link", "set", "eth0", "up"], None)?;
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"], None)?;
            sh(
                "ip",
                &["netns", "exec", &ns, "nft", "-f", "-"],
                Some(&ruleset(loss_percent)),
            )?;
        }
        Ok(lab)
    }

    /// Namespace of node `i`.
    pub fn netns(&self, i: usize) -> &str {
        &self.nodes[i]
    }

    /// Address of node `i` on the lab network.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, i as u8 + 1)
    }

    /// Takes node `i`'s link down (a cable pulled: both directions) or up again.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        sh(
            "ip",
            &["-n", &self.nodes[i], "link", "set", "eth0", state],
            None,
        )
        .map(|_| ())
    }

    /// What the nftables rules of node `i` dropped and passed so far.
    pub fn counters(&self, i: usize) -> Result<LinkCounters, String> {
        let listing = sh(
            "ip",
            &[
                "netns",
                "exec",
                &self.nodes[i],
                "nft",
                "list",
                "chain",
                "inet",
                "shutter_lossy",
                "pre",
            ],
            None,
        )?;
        let mut c = LinkCounters::default();
        for line in listing.lines() {
            let packets = line
                .split_whitespace()
                .skip_while(|w| *w != "packets")
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok());
            match packets {
                Some(n) if line.contains("drop") => c.dropped = n,
                Some(n) if line.contains("accept") => c.passed = n,
                _ => {}
            }
        }
        Ok(c)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain(std::iter::once(&self.hub)) {
            let _ = sh("ip", &["netns", "del", ns], None);
        }
    }
}

/// Deletes lab namespaces whose creating process no longer exists.
fn sweep_stale() {
    let Ok(list) = sh("ip", &["netns", "list"], None) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = sh("ip", &["netns", "del", name], None);
        }
    }
}
