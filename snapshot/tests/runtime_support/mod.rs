//! Helpers shared by the runtime tests: the fault plan, a bank cluster and a loop that
//! waits for a set of snapshots to complete.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shutter_snapshot::bank::{Bank, BankConfig, BankInvariant};
use shutter_snapshot::runtime::{LocalCluster, NodeConfig, NodeEvent};
use shutter_snapshot::{GlobalSnapshot, SnapshotId, verify};
use shutter_transport::faults::{FaultPlan, LinkFaults, LossModel};
use shutter_vclock::NodeId;

/// Opening balance of every bank node.
pub(crate) const INITIAL: u64 = 1_000;

/// `loss` Bernoulli loss plus 10% duplication, 10% reordering by 5 ms and 1 ms jitter.
pub(crate) fn lossy_plan(seed: u64, loss: f64) -> FaultPlan {
    FaultPlan::uniform(
        seed,
        LinkFaults {
            loss: LossModel::Bernoulli { p: loss },
            duplicate: 0.1,
            jitter: Duration::from_millis(1),
            reorder: 0.1,
            reorder_delay: Duration::from_millis(5),
            ..LinkFaults::default()
        },
    )
}

/// A bank process for node `id`.
pub(crate) fn bank(seed: u64) -> impl FnMut(NodeId) -> Bank {
    move |id| {
        Bank::new(
            id,
            BankConfig {
                seed,
                initial: INITIAL,
                transfer_probability: 0.5,
                max_transfer: 50,
            },
        )
    }
}

/// A base config: 30 s snapshot timeout (only a safety net), 5 ms ticks.
pub(crate) fn base(faults: Option<FaultPlan>) -> NodeConfig {
    NodeConfig {
        faults,
        snapshot_timeout: Duration::from_secs(30),
        tick_interval: Duration::from_millis(5),
        ..NodeConfig::default()
    }
}

/// Waits until application messages have been delivered somewhere in the cluster, so
/// snapshots are taken under real traffic (pacing only, not needed for correctness).
pub(crate) async fn wait_for_traffic(cluster: &LocalCluster, delivered: u64) {
    loop {
        let mut total = 0;
        for node in cluster.nodes() {
            total += node.stats().await.unwrap().app_messages_delivered;
        }
        if total >= delivered {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads cluster events until every id in `pending` completed; panics on any abort.
pub(crate) async fn collect(
    cluster: &mut LocalCluster,
    mut pending: BTreeSet<SnapshotId>,
) -> BTreeMap<SnapshotId, GlobalSnapshot> {
    let mut done = BTreeMap::new();
    while !pending.is_empty() {
        match cluster.next_event().await {
            Some((_, NodeEvent::Completed(snap))) => {
                assert!(pending.remove(&snap.id), "unexpected snapshot {}", snap.id);
                done.insert(snap.id, snap);
            }
            Some((node, NodeEvent::Aborted { id, reason })) => {
                panic!("snapshot {id} aborted at {node}: {reason}")
            }
            Some((
                _,
                NodeEvent::LocalCut { .. } | NodeEvent::Committed(_) | NodeEvent::Resumed { .. },
            )) => {}
            None => panic!("cluster stopped with {pending:?} pending"),
        }
    }
    done
}

/// Cut consistency, channel sanity and conservation of `nodes * INITIAL`.
pub(crate) fn check_bank(snap: &GlobalSnapshot, nodes: u64) {
    let invariant = BankInvariant {
        total: nodes * INITIAL,
    };
    verify::check_all(snap, &[&invariant])
        .unwrap_or_else(|e| panic!("snapshot {} is inconsistent: {e}", snap.id));
}
