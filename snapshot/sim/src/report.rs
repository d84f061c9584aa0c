//! What a run did: violations, snapshots, counters, the event log and how to replay it.

use std::fmt;

use shutter_snapshot::{AbortReason, GlobalSnapshot, SnapshotId};
use shutter_transport::Time;
use shutter_transport::faults::FaultStats;
use shutter_vclock::{NodeId, VClock};

use crate::setup::Algorithm;

/// One entry of the event log: what happened at one node, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Virtual time.
    pub at: Time,
    /// The node.
    pub node: NodeId,
    /// What happened.
    pub kind: LogKind,
}

/// What a [`LogEntry`] records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// The process sent an application message, stamped `ts`.
    Sent {
        /// Receiver.
        to: NodeId,
        /// The message's vector timestamp (unique per message).
        ts: VClock,
        /// Payload length.
        bytes: usize,
    },
    /// An application message was delivered to the process.
    Delivered {
        /// Sender.
        from: NodeId,
        /// The message's vector timestamp (the one it was sent with).
        ts: VClock,
    },
    /// The node took its local cut of a snapshot (recorded its state).
    Cut(SnapshotId),
    /// A snapshot this node initiated completed and passed the checks (or not: see the
    /// violations).
    Completed(SnapshotId),
    /// A snapshot was abandoned here.
    Aborted(SnapshotId),
    /// An operator command reached the process.
    Command,
    /// The node crashed (everything in memory lost).
    Crashed,
    /// A new process came up in its place.
    Restarted,
    /// The node was rolled back to a snapshot (`None`: no snapshot every member held).
    RolledBack(Option<SnapshotId>),
}

/// The outcome of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The seed the run used.
    pub seed: u64,
    /// The algorithm it ran.
    pub algorithm: Algorithm,
    /// Everything the checks found; empty means the run passed.
    pub violations: Vec<String>,
    /// Snapshots that completed (each was checked), in completion order.
    pub completed: Vec<GlobalSnapshot>,
    /// Snapshots their initiator abandoned, with why.
    pub aborted: Vec<(SnapshotId, AbortReason)>,
    /// Snapshots started.
    pub initiated: u64,
    /// Scheduled snapshots not started: the initiator was down, or too many ran.
    pub initiations_skipped: u64,
    /// Application messages sent.
    pub sent: u64,
    /// Application messages delivered.
    pub delivered: u64,
    /// Crashes that happened.
    pub crashes: u64,
    /// Rollbacks the nodes went through (one per node per round).
    pub rollbacks: u64,
    /// Fault injector counters (dropped, duplicated, reordered, corrupted, ...).
    pub faults: FaultStats,
    /// Simulation steps.
    pub steps: u64,
    /// Virtual time at the end.
    pub end: Time,
    /// When a [`crate::Sim::stop_when`] condition ended the traffic early, if it did.
    pub stopped_at: Option<Time>,
    /// Every event, in order (empty with [`crate::Sim::log`] off).
    pub log: Vec<LogEntry>,
}

impl Report {
    /// True if no check failed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that replays this run: the current test, with only this seed
    /// (`SHUTTER_SIM_SEED`, read by [`crate::seeds`]).
    pub fn replay_command(&self) -> String {
        let test = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .map(|n| format!(" -- {n} --exact"))
            .unwrap_or_default();
        let package = std::env::var("CARGO_PKG_NAME").ok();
        // Test binaries are named `<target>-<hash>`: an integration test's target is
        // its file name, a crate's own unit tests are the crate name.
        let target = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.file_stem()?.to_str()?.to_owned()))
            .and_then(|stem| Some(stem.rsplit_once('-')?.0.to_owned()))
            .map(|t| match &package {
                Some(p) if p.replace('-', "_") == t => " --lib".to_owned(),
                _ => format!(" --test {t}"),
            })
            .unwrap_or_default();
        let package = package.map(|p| format!(" -p {p}")).unwrap_or_default();
        format!(
            "SHUTTER_SIM_SEED={} cargo test{package}{target}{test}",
            self.seed
        )
    }

    /// Panics, naming the seed, the violations and the replay command, unless the run
    /// passed.
    #[track_caller]
    pub fn assert_ok(&self) {
        if !self.passed() {
            panic!("{self}");
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        writeln!(
            f,
            "simulation seed {} ({:?}) {verdict}: {} snapshots completed, {} aborted, {} \
             messages sent, {} delivered, {} crashes, {} rollbacks, virtual time {}",
            self.seed,
            self.algorithm,
            self.completed.len(),
            self.aborted.len(),
            self.sent,
            self.delivered,
            self.crashes,
            self.rollbacks,
            self.end,
        )?;
        const SHOWN: usize = 10;
        for v in self.violations.iter().take(SHOWN) {
            writeln!(f, "  violation: {v}")?;
        }
        if self.violations.len() > SHOWN {
            writeln!(f, "  ... and {} more", self.violations.len() - SHOWN)?;
        }
        if !self.passed() {
            write!(f, "replay: {}", self.replay_command())?;
        }
        Ok(())
    }
}
