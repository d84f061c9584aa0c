//! The deterministic simulator.
//!
//! * [`scenario`]: a run as a plain value ([`Scenario`]), drawn from a seed or generated
//!   by proptest;
//! * [`node`]: one node = transport `Core` + snapshot `Node` + instrumented bank;
//! * [`oracle`]: the ground-truth event log;
//! * [`checks`]: what every completed snapshot and every finished run must satisfy;
//! * [`swarm`]: many seeds, fault-mix coverage, replay commands;
//! * `world` (private): the event loop with virtual time.
//!
//! Determinism: all randomness comes from the scenario's seed (fault injector, bank) or
//! is fixed in the scenario; every map is a `BTreeMap`; no clock, no threads. Running
//! the same [`Scenario`] twice gives the same [`Outcome`].
//!
//! ```
//! use shutter_tests::sim::{run, Algorithm, Scenario};
//! let out = run(&Scenario::calm(1, 3), Algorithm::Mattern);
//! assert!(out.violations.is_empty(), "{:?}", out.violations);
//! assert!(out.completed > 0);
//! ```

pub mod checks;
pub mod node;
pub mod oracle;
pub mod scenario;
pub mod swarm;
mod world;

use std::collections::BTreeMap;

use shutter_snapshot::{AbortReason, SnapshotId, chandy_lamport, mattern};
use shutter_transport::Time;
use shutter_transport::faults::FaultStats;
use shutter_vclock::NodeId;

pub use scenario::{Crash, CrashKind, Scenario};

/// Which snapshot algorithm runs, over which transport mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Mattern over the unordered transport (the production path).
    Mattern,
    /// Chandy-Lamport over the transport's ordered (FIFO) mode: correct.
    ChandyLamportOrdered,
    /// Chandy-Lamport over unordered delivery: broken, the checks must catch it.
    ChandyLamportUnordered,
}

/// What a run did and what went wrong.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Everything the checks found; empty means the run passed.
    pub violations: Vec<String>,
    /// Snapshots completed, by id.
    pub completed_ids: Vec<SnapshotId>,
    /// Abort events by snapshot: which node emitted one, and its reason.
    pub aborts: BTreeMap<SnapshotId, Vec<(NodeId, AbortReason)>>,
    /// Snapshots started.
    pub initiated: u64,
    /// Snapshots completed (each checked).
    pub completed: u64,
    /// Parts committed by nodes (each checked against its completed snapshot).
    pub committed: u64,
    /// Snapshots aborted at their initiator.
    pub aborted: u64,
    /// Of those, snapshots the initiator's own check refused (`AbortWhy::FailedCheck`;
    /// each is also a violation).
    pub failed_checks: u64,
    /// Scheduled initiations refused by the engine (too many running).
    pub initiations_refused: u64,
    /// Scheduled initiations skipped because the initiator was down.
    pub initiations_skipped: u64,
    /// Messages recorded in channel states of completed snapshots.
    pub recorded_messages: u64,
    /// Application messages sent.
    pub app_messages: u64,
    /// Application messages never delivered (only allowed around transport restarts).
    pub lost_to_restarts: u64,
    /// Messages the transport reported abandoned.
    pub abandoned: u64,
    /// Application messages handed back to their sender's process as undeliverable
    /// (the bank refunds them).
    pub returned: u64,
    /// Crashes that happened.
    pub crashes: u64,
    /// With recovery: rollbacks the nodes went through (one per node per round).
    pub rollbacks: u64,
    /// Of those, restores from a part another member's replica supplied (the node's
    /// disk did not hold it).
    pub supplied: u64,
    /// Membership changes the coordinators accepted (`Scenario::changes`).
    pub membership_changes: u64,
    /// Removals skipped because no snapshot with the member's part ever completed.
    pub membership_skipped: u64,
    /// With recovery: crashes that lost the node's disk too.
    pub disks_lost: u64,
    /// With recovery: crashes that tore the newest checkpoint (skipped on restart).
    pub checkpoints_torn: u64,
    /// Largest send backlog of any node.
    pub max_backlog: usize,
    /// Application messages shipped with a whole header (`shutter_snapshot::lean`).
    pub headers_whole: u64,
    /// Application messages shipped with a header diffed against a baseline.
    pub headers_diffed: u64,
    /// Fault injector counters.
    pub faults: FaultStats,
    /// Simulation steps.
    pub steps: u64,
    /// Virtual time at the end.
    pub end: Time,
}

impl Outcome {
    /// True if the run found nothing.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Default bound on simulation steps; a run needing more is reported as a livelock.
pub const MAX_STEPS: u64 = 3_000_000;

/// How the simulator builds nodes; [`Options::default`] is what production does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Start every life's own clock entry at its floor (`shutter_snapshot::life`). Off
    /// only to show what the checks find when a crashed node reuses vector time, as
    /// every node did before lives had floors.
    pub clock_floors: bool,
    /// Nodes keep a checkpoint store that survives crashes, and a node that comes back
    /// after a real crash rolls the cluster back (`shutter node`'s default; see
    /// `shutter_snapshot::recovery`; every store starts with the genesis checkpoint).
    /// Transport restarts become real crashes, some of which lose the disk or tear its
    /// newest checkpoint (see `World::damage_disk`), and members roll the cluster back
    /// when they see a peer restart (`Stack::set_roll_back_on_peer_restart`). The checks
    /// become: every completed snapshot holds exactly the opening money, and so
    /// do the nodes at the end. Off: nodes rejoin fresh after a crash (what the ground
    /// truth oracle checks in detail).
    pub recovery: bool,
    /// With recovery: real crashes may lose the disk or tear its newest checkpoint (see
    /// `World::damage_disk`). Off where a scenario removes a member: a survivor that
    /// lost its disk holds no snapshot with the removed part, so the removal cannot
    /// complete (a documented limit: replicas live only at each snapshot's initiator).
    pub disk_damage: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock_floors: true,
            recovery: false,
            disk_damage: true,
        }
    }
}

/// Runs `scenario` with `algorithm` to quiescence and checks it.
pub fn run(scenario: &Scenario, algorithm: Algorithm) -> Outcome {
    run_with(scenario, algorithm, Options::default())
}

/// [`run`] with non-default [`Options`].
pub fn run_with(scenario: &Scenario, algorithm: Algorithm, opts: Options) -> Outcome {
    match algorithm {
        Algorithm::Mattern => {
            world::World::<mattern::Engine>::new(scenario, false, opts).run(MAX_STEPS)
        }
        Algorithm::ChandyLamportOrdered => {
            world::World::<chandy_lamport::Engine>::new(scenario, true, opts).run(MAX_STEPS)
        }
        Algorithm::ChandyLamportUnordered => {
            world::World::<chandy_lamport::Engine>::new(scenario, false, opts).run(MAX_STEPS)
        }
    }
}
