//! The runtime over real loopback sockets under faults: 8 bank nodes with 20% loss,
//! duplication and reordering on every link take 21 snapshots from several initiators,
//! three at a time; every one completes, has a consistent cut and conserves money.

mod runtime_support;

use std::collections::BTreeSet;
use std::time::Duration;

use runtime_support::{bank, base, check_bank, collect, lossy_plan, wait_for_traffic};
use shutter_snapshot::runtime::LocalCluster;
use shutter_vclock::NodeId;

const NODES: usize = 8;
const ROUNDS: u32 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_nodes_snapshot_consistently_under_loss_duplication_and_reordering() {
    // Safety net only: a healthy run takes a few seconds.
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("test did not finish within 120 s");
}

async fn run() {
    let mut cluster = LocalCluster::start(NODES, base(Some(lossy_plan(42, 0.2))), bank(7))
        .await
        .unwrap();
    wait_for_traffic(&cluster, 200).await;

    let mut recorded = 0;
    let mut completed = 0;
    for round in 0..ROUNDS {
        // Three initiators per round, different every round, all running at once.
        let mut pending = BTreeSet::new();
        for offset in [0, 3, 5] {
            let on = NodeId((round + offset) % NODES as u32);
            pending.insert(cluster.initiate(on).await.unwrap());
        }
        for snap in collect(&mut cluster, pending).await.values() {
            check_bank(snap, NODES as u64);
            assert_eq!(snap.states.len(), NODES);
            recorded += snap.recorded_messages();
            completed += 1;
        }
    }
    assert_eq!(completed, 21);
    // Channel states were exercised: some transfers were in flight across some cut.
    assert!(recorded > 0, "no snapshot recorded any in-flight transfer");

    let stats = cluster.shutdown().await.unwrap();
    let dropped: u64 = stats.iter().map(|s| s.transport.faults.dropped_loss).sum();
    let duplicated: u64 = stats.iter().map(|s| s.transport.faults.duplicated).sum();
    let reordered: u64 = stats.iter().map(|s| s.transport.faults.reordered).sum();
    assert!(
        dropped > 0 && duplicated > 0 && reordered > 0,
        "faults were not applied"
    );
    assert_eq!(stats.iter().map(|s| s.malformed_envelopes).sum::<u64>(), 0);
    assert_eq!(
        stats.iter().map(|s| s.snapshots.completed()).sum::<u64>(),
        21
    );
    assert_eq!(stats.iter().map(|s| s.snapshots.aborted()).sum::<u64>(), 0);
    let sent: u64 = stats.iter().map(|s| s.app_messages_sent).sum();
    assert!(sent > 0);
    for s in &stats {
        // Every delivered transfer, lean header or not, is in the application's latency
        // histogram once; snapshot control is only in the transport's.
        assert_eq!(s.app_delivery_latency.len(), s.app_messages_delivered);
        assert!(s.transport.core.delivery_latency.len() > s.app_delivery_latency.len());
    }
}
