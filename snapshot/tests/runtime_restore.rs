//! Restore over real loopback sockets: a completed snapshot is persisted, loaded, and a
//! new cluster restored from it; recorded in-flight transfers are delivered again, so
//! the money of the original run is all there, both at once (quiet banks) and in the
//! snapshots of a busy restored cluster.

mod runtime_support;

use std::collections::BTreeSet;
use std::time::Duration;

use runtime_support::{INITIAL, bank, base, check_bank, collect, lossy_plan, wait_for_traffic};
use shutter_snapshot::GlobalSnapshot;
use shutter_snapshot::bank::{Bank, BankConfig, BankState};
use shutter_snapshot::persist;
use shutter_snapshot::runtime::{Algorithm, LocalCluster, NodeConfig, NodeHandle, RuntimeError};
use shutter_vclock::NodeId;

const NODES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_cluster_keeps_the_money_of_the_snapshot() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("test did not finish within 120 s");
}

/// Takes snapshots until one recorded in-flight transfers (so the restore has something
/// to deliver again), at most 20.
async fn snapshot_with_channel_state(cluster: &mut LocalCluster) -> GlobalSnapshot {
    for attempt in 0..20u32 {
        let id = cluster
            .initiate(NodeId(attempt % NODES as u32))
            .await
            .unwrap();
        let snap = collect(cluster, BTreeSet::from([id]))
            .await
            .remove(&id)
            .unwrap();
        check_bank(&snap, NODES as u64);
        if snap.recorded_messages() > 0 {
            return snap;
        }
    }
    panic!("20 snapshots and none recorded a transfer in flight");
}

async fn total_balance(cluster: &LocalCluster) -> u64 {
    let mut total = 0;
    for node in cluster.nodes() {
        total += node.app_state::<BankState>().await.unwrap().balance;
    }
    total
}

async fn run() {
    let faults = Some(lossy_plan(9, 0.2));
    let mut original = LocalCluster::start(NODES, base(faults.clone()), bank(3))
        .await
        .unwrap();
    wait_for_traffic(&original, 100).await;
    let snap = snapshot_with_channel_state(&mut original).await;
    original.shutdown().await.unwrap();

    let dir = std::env::temp_dir().join(format!("shutter-runtime-restore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("snap.shutter");
    persist::save(&path, &snap).unwrap();
    let loaded = persist::load(&path).unwrap();
    assert_eq!(loaded, snap);
    std::fs::remove_dir_all(&dir).unwrap();

    // Quiet banks: right after restore, balances alone hold all the money, because the
    // recorded transfers were delivered again before anything else.
    let quiet = |id| {
        Bank::new(
            id,
            BankConfig {
                transfer_probability: 0.0,
                ..BankConfig::default()
            },
        )
    };
    let restored = LocalCluster::restore(base(faults.clone()), &loaded, quiet)
        .await
        .unwrap();
    assert_eq!(total_balance(&restored).await, NODES as u64 * INITIAL);
    restored.shutdown().await.unwrap();

    // Busy banks: more traffic, more snapshots, the same total.
    let mut busy = LocalCluster::restore(base(faults), &loaded, bank(11))
        .await
        .unwrap();
    wait_for_traffic(&busy, 100).await;
    let mut ids = BTreeSet::new();
    for on in [NodeId(1), NodeId(2)] {
        ids.insert(busy.initiate(on).await.unwrap());
    }
    for snap in collect(&mut busy, ids).await.values() {
        check_bank(snap, NODES as u64);
    }
    let stats = busy.shutdown().await.unwrap();
    assert!(stats.iter().map(|s| s.app_messages_delivered).sum::<u64>() >= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_what_it_cannot_do() {
    let mut cluster = LocalCluster::start(2, base(None), bank(1)).await.unwrap();
    let id = cluster.initiate(NodeId(0)).await.unwrap();
    let snap = tokio::time::timeout(
        Duration::from_secs(30),
        collect(&mut cluster, BTreeSet::from([id])),
    )
    .await
    .unwrap()
    .remove(&id)
    .unwrap();
    cluster.shutdown().await.unwrap();
    let member = |id: u32| (NodeId(id), "127.0.0.1:0".parse().unwrap());
    let cfg = NodeConfig {
        id: NodeId(5),
        peers: vec![member(0), member(5)],
        ..NodeConfig::default()
    };
    let err = NodeHandle::restore(cfg.clone(), bank(1)(NodeId(5)), &snap)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::NotInSnapshot(NodeId(5))),
        "{err}"
    );
    let cfg = NodeConfig {
        id: NodeId(0),
        peers: vec![member(0), member(1), member(2)],
        ..cfg
    };
    let err = NodeHandle::restore(cfg.clone(), bank(1)(NodeId(0)), &snap)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Config(_)), "{err}");
    let cfg = NodeConfig {
        algorithm: Algorithm::ChandyLamport,
        peers: vec![member(0), member(1)],
        ..cfg
    };
    let err = NodeHandle::restore(cfg, bank(1)(NodeId(0)), &snap)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Unsupported(_)), "{err}");
}
