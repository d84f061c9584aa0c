//! A rollback round that finds nothing to go back to loses nothing. Every member halts
//! for the round; what reaches a halted member was acknowledged by its transport
//! already, so it must not be dropped unless a restore undoes it. Over real loopback
//! sockets with 20% loss: a busy bank cluster is asked, again and again, to roll back to a snapshot
//! nobody holds; every round ends without a rollback, and a snapshot afterwards holds
//! exactly the opening money.

mod runtime_support;

use std::collections::BTreeSet;
use std::time::Duration;

use runtime_support::{bank, base, check_bank, collect, lossy_plan, wait_for_traffic};
use shutter_snapshot::runtime::{LocalCluster, NodeConfig, NodeEvent};
use shutter_snapshot::wire::SnapshotId;
use shutter_vclock::NodeId;

const NODES: usize = 3;
/// Rounds, each a halt of the whole cluster while transfers are on their way.
const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_restores_nothing_loses_no_message() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("test did not finish within 120 s");
}

async fn run() {
    let dir = std::env::temp_dir().join(format!("shutter-futile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = |id: NodeId, c: NodeConfig| NodeConfig {
        checkpoints: Some((dir.join(id.to_string()), 4)),
        ..c
    };
    // 20% loss: retransmitted transfers are on their way longer, so more of them reach
    // halted members.
    let faults = Some(lossy_plan(7, 0.2));
    let mut cluster = LocalCluster::start_each(NODES, base(faults), store, bank(5))
        .await
        .unwrap();
    wait_for_traffic(&cluster, 100).await;
    // No snapshot has this id: the round finds nothing every member holds.
    let nowhere = SnapshotId {
        initiator: NodeId(1),
        s: u64::MAX,
    };
    for round in 0..ROUNDS {
        let via = &cluster.nodes()[round % NODES];
        via.roll_back(Some(nowhere)).await.unwrap();
        let mut resumed = 0;
        while resumed < NODES {
            match cluster.next_event().await {
                Some((_, NodeEvent::Resumed { to })) => {
                    assert_eq!(to, None, "round {round} rolled back");
                    resumed += 1;
                }
                Some(_) => {}
                None => panic!("cluster stopped"),
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let id = cluster.initiate(NodeId(0)).await.unwrap();
    let snap = collect(&mut cluster, BTreeSet::from([id]))
        .await
        .remove(&id)
        .unwrap();
    check_bank(&snap, NODES as u64);
    let mut released = 0;
    for node in cluster.nodes() {
        released += node.stats().await.unwrap().halted_released;
    }
    println!(
        "{ROUNDS} rounds restored nothing; {released} messages held while halted were handed on"
    );
    // Not vacuous: some transfers reached halted members.
    assert!(
        released > 0,
        "no message arrived while halted: nothing was tested"
    );
    cluster.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
