//! A topology under the runtime: banks on a one-way ring of real sockets with loss,
//! duplication and reordering send only to the next node, and every snapshot, by
//! Mattern and by Chandy-Lamport (markers on the ring's channels only), is exact: the
//! bank's money and the channel counts check, and channel states and counts name only
//! the ring's channels.

mod runtime_support;

use std::collections::BTreeSet;
use std::time::Duration;

use runtime_support::{bank, base, check_bank, collect, lossy_plan, wait_for_traffic};
use shutter_snapshot::runtime::{Algorithm, LocalCluster, NodeConfig};
use shutter_snapshot::topology::Topology;
use shutter_snapshot::verify;
use shutter_vclock::NodeId;

const NODES: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banks_on_a_ring_of_sockets() {
    tokio::time::timeout(Duration::from_secs(120), async {
        for algorithm in [Algorithm::Mattern, Algorithm::ChandyLamport] {
            run(algorithm).await;
        }
    })
    .await
    .expect("test did not finish within 120 s");
}

async fn run(algorithm: Algorithm) {
    let ring = Topology::ring(NODES);
    let cfg = NodeConfig {
        algorithm,
        ..base(Some(lossy_plan(11, 0.1)))
    };
    let mut cluster = LocalCluster::start_on(&ring, cfg, bank(5)).await.unwrap();
    wait_for_traffic(&cluster, 100).await;
    for round in 0..4u32 {
        let on = NodeId(round % NODES);
        let pending = BTreeSet::from([cluster.initiate(on).await.unwrap()]);
        for snap in collect(&mut cluster, pending).await.values() {
            check_bank(snap, u64::from(NODES));
            verify::check_counts(snap).unwrap();
            assert!(
                !snap.counts.is_empty(),
                "{algorithm:?}: the parts carry counts"
            );
            for (&(from, to), msgs) in &snap.channels {
                assert!(msgs.is_empty() || ring.has(from, to), "{from} -> {to}");
            }
            for &(from, to) in snap.counts.keys() {
                assert!(ring.has(from, to), "{algorithm:?}: {from} sent to {to}");
            }
        }
    }
    cluster.shutdown().await.unwrap();
}
