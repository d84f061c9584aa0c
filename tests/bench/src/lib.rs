//! shutter's own side-by-side benchmark (issue 14, item 5).
//!
//! Each part measures one thing and returns a [`report::Section`]: a table (printed and
//! written to JSON) plus the issue-14 targets it judges from this run's figures. Parts
//! that compare variants (raw UDP vs shutter, Mattern vs Chandy-Lamport, snapshot
//! intervals) interleave them in one run, because the machine is shared and absolute
//! figures drift.
//!
//! * [`headers`] (e): header bytes per application message;
//! * [`rate`] (a): 64 B message rate vs raw UDP `sendmmsg`/`recvmmsg` batch 64;
//! * [`snapshots`] (c): snapshot completion latency under loss;
//! * [`throughput`] (d): application throughput under periodic snapshots;
//! * [`simwall`] (f): simulator wall time per simulated second;
//! * [`netlat`] (b): one-way latency through nftables drop between network namespaces,
//!   vs TCP and KCP (root only).

pub mod cluster;
pub mod cpu;
pub mod headers;
pub mod netlat;
pub mod rate;
pub mod report;
pub mod simwall;
pub mod snapshots;
pub mod throughput;

use serde::Serialize;

/// Everything one invocation measured, as written to the JSON file.
#[derive(Debug, Serialize)]
pub struct Run {
    /// UTC time the run started (RFC 3339, from the system clock).
    pub started: String,
    /// Logical CPUs the OS reports.
    pub cpus: usize,
    /// The command line.
    pub command: String,
    /// Whether the runtime's worker threads were pinned one per CPU.
    pub pinned: bool,
    /// The tables, in the order they ran.
    pub sections: Vec<report::Section>,
}

/// `YYYY-MM-DDTHH:MM:SSZ` from the system clock.
pub fn utc_now() -> String {
    shutter_snapshot::report::rfc3339(std::time::SystemTime::now())
}
