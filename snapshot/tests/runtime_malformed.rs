//! Hostile input over real loopback sockets: transport messages that are not envelopes,
//! or that come from outside the membership, are dropped and counted; the node lives on.

use std::time::Duration;

use shutter_snapshot::bank::{Bank, BankConfig};
use shutter_snapshot::runtime::{NodeConfig, NodeHandle, NodeStats};
use shutter_transport::Config;
use shutter_transport::driver::{Endpoint, EndpointConfig};
use shutter_vclock::NodeId;

async fn raw(id: u32) -> Endpoint {
    let cfg = EndpointConfig::new(
        Config {
            local: NodeId(id),
            ..Config::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    );
    Endpoint::bind(cfg, vec![]).await.unwrap()
}

/// Polls until `done` holds (the node handles commands before traffic, so a stats
/// request can overtake a message that already arrived).
async fn stats_until(node: &NodeHandle, done: impl Fn(&NodeStats) -> bool) -> NodeStats {
    loop {
        let s = node.stats().await.unwrap();
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_strangers_are_dropped_and_counted() {
    let member = raw(1).await;
    let stranger = raw(9).await;
    let cfg = NodeConfig {
        id: NodeId(0),
        peers: vec![
            (NodeId(0), "127.0.0.1:0".parse().unwrap()),
            (NodeId(1), member.local_addr()),
        ],
        ..NodeConfig::default()
    };
    let node = NodeHandle::spawn(cfg, Bank::new(NodeId(0), BankConfig::default()))
        .await
        .unwrap();
    member.add_peer(NodeId(0), node.local_addr()).await.unwrap();
    stranger
        .add_peer(NodeId(0), node.local_addr())
        .await
        .unwrap();
    node.add_peer(NodeId(9), stranger.local_addr())
        .await
        .unwrap();

    member.send(NodeId(0), vec![0xff; 7]).await.unwrap();
    member.send(NodeId(0), Vec::new()).await.unwrap();
    stranger.send(NodeId(0), vec![1, 2, 3]).await.unwrap();
    let s = tokio::time::timeout(
        Duration::from_secs(30),
        stats_until(&node, |s| {
            s.malformed_envelopes >= 2 && s.non_member_dropped >= 1
        }),
    )
    .await
    .expect("garbage was not counted within 30 s");
    assert_eq!(s.malformed_envelopes, 2);
    assert_eq!(s.non_member_dropped, 1);
    assert_eq!(s.app_messages_delivered, 0);
    // Still alive and answering.
    let stats = node.shutdown().await.unwrap();
    assert_eq!(stats.malformed_envelopes, 2);
}
