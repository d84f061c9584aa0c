//! The Chandy-Lamport baseline under the runtime: with `Algorithm::ChandyLamport` the
//! transport runs in ordered mode and markers share the per-peer stream with application
//! messages, so snapshots are consistent even though the datagrams underneath are lost,
//! duplicated and reordered.

mod runtime_support;

use std::collections::BTreeSet;
use std::time::Duration;

use runtime_support::{bank, base, check_bank, collect, lossy_plan, wait_for_traffic};
use shutter_snapshot::runtime::{Algorithm, LocalCluster, NodeConfig};
use shutter_vclock::NodeId;

const NODES: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chandy_lamport_over_ordered_transport_is_consistent() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("test did not finish within 120 s");
}

async fn run() {
    let cfg = NodeConfig {
        algorithm: Algorithm::ChandyLamport,
        ..base(Some(lossy_plan(5, 0.1)))
    };
    let mut cluster = LocalCluster::start(NODES, cfg, bank(21)).await.unwrap();
    wait_for_traffic(&cluster, 150).await;
    let mut recorded = 0;
    for round in 0..6u32 {
        let mut pending = BTreeSet::new();
        for offset in [0, 2] {
            let on = NodeId((round + offset) % NODES as u32);
            pending.insert(cluster.initiate(on).await.unwrap());
        }
        for snap in collect(&mut cluster, pending).await.values() {
            check_bank(snap, NODES as u64);
            recorded += snap.recorded_messages();
        }
    }
    assert!(recorded > 0, "no snapshot recorded any in-flight transfer");
    let stats = cluster.shutdown().await.unwrap();
    assert_eq!(
        stats.iter().map(|s| s.snapshots.completed()).sum::<u64>(),
        12
    );
    assert_eq!(stats.iter().map(|s| s.malformed_envelopes).sum::<u64>(), 0);
    for s in &stats {
        // The application's latency histogram holds its messages and nothing else; the
        // transport's holds the markers too.
        assert_eq!(s.app_delivery_latency.len(), s.app_messages_delivered);
        assert!(s.transport.core.delivery_latency.len() > s.app_delivery_latency.len());
    }
}
