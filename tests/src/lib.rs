//! Deterministic simulator and cross-crate fault-injection scenarios for shutter.
//!
//! [`sim`] runs N nodes, each the real transport `Core` plus the real snapshot
//! `process::Node` (bank app + Mattern or Chandy-Lamport), over a seeded in-memory network
//! with every fault of `shutter_transport::faults`, crashes and restarts, and checks every
//! snapshot against a ground-truth event log. The `sim_*` integration tests drive it.
//!
//! [`procs`] starts real `shutter` processes (the test binary re-executed as the CLI) and
//! [`netns`] builds a namespace lab with kernel-level random drop; the
//! `cluster_processes` test uses both.
//!
//! [`spoof`] sniffs and forges UDP datagrams with raw sockets (root only), for the
//! `cluster_attack` test.

pub mod netns;
pub mod ports;
pub mod procs;
pub mod sim;
pub mod spoof;
