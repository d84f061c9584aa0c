//! Shared pieces of the parts that run a real `LocalCluster` on 127.0.0.1: node
//! configuration with injected loss, waiting for one snapshot's outcome (bounded), and
//! checking every completed snapshot.

use std::time::Duration;

use shutter_snapshot::GlobalSnapshot;
use shutter_snapshot::runtime::{Algorithm, LocalCluster, NodeConfig, NodeEvent};
use shutter_snapshot::verify::{self, Invariant};
use shutter_snapshot::wire::SnapshotId;
use shutter_transport::faults::{FaultPlan, LinkFaults};

/// Node configuration: Bernoulli `loss` on every outgoing link (the runtime's fault
/// injection), `tick` between application ticks.
pub fn config(algorithm: Algorithm, loss: f64, tick: Duration, seed: u64) -> NodeConfig {
    NodeConfig {
        faults: (loss > 0.0).then(|| FaultPlan::uniform(seed, LinkFaults::lossy(loss))),
        algorithm,
        snapshot_timeout: Duration::from_secs(20),
        tick_interval: tick,
        ..NodeConfig::default()
    }
}

/// How one snapshot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Completed after this many µs (initiation to assembly, initiator's clock); `ok` if
    /// every check held.
    Completed {
        /// Latency.
        micros: u64,
        /// Checks held.
        ok: bool,
    },
    /// Aborted (reason as text).
    Aborted(String),
    /// No outcome within the wait.
    TimedOut,
}

/// Checks a completed snapshot: structure (cut consistency, channels, classification)
/// and the given invariants.
pub fn check(snap: &GlobalSnapshot, invariants: &[&dyn Invariant]) -> bool {
    verify::check_all(snap, invariants).is_ok()
}

/// Reads cluster events until snapshot `id` completes or aborts, or `wait` passes.
pub async fn wait_for(
    cluster: &mut LocalCluster,
    id: SnapshotId,
    wait: Duration,
    invariants: &[&(dyn Invariant + Sync)],
) -> Finish {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, cluster.next_event()).await {
            Err(_) | Ok(None) => return Finish::TimedOut,
            Ok(Some((_, NodeEvent::Completed(snap)))) if snap.id == id => {
                return Finish::Completed {
                    micros: snap.timings.latency_micros(),
                    ok: check(
                        &snap,
                        &invariants
                            .iter()
                            .map(|&i| i as &dyn Invariant)
                            .collect::<Vec<_>>(),
                    ),
                };
            }
            Ok(Some((_, NodeEvent::Aborted { id: a, reason }))) if a == id => {
                return Finish::Aborted(format!("{reason:?}"));
            }
            Ok(Some(_)) => {}
        }
    }
}
