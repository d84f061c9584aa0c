//! Real-socket tests of the tokio driver on 127.0.0.1: several endpoints exchange
//! messages through seeded faults (loss, duplication, reordering, corruption) and every
//! message must arrive exactly once; bad addresses and configurations give clear errors.

mod loopback_faults;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shutter_transport::driver::{DriverError, Endpoint, EndpointConfig};
use shutter_transport::faults::{FaultPlan, LinkFaults};
use shutter_transport::{Config, Event};
use shutter_vclock::NodeId;
use tokio::sync::Barrier;

use loopback_faults::faulty;

const NODES: u32 = 3;
const PER_PEER: u64 = 700;
/// Safety net only: on a healthy machine the exchange takes well under a second.
const DEADLINE: Duration = Duration::from_secs(60);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(node: u32) -> Config {
    Config {
        local: NodeId(node),
        incarnation: 1,
        ..Config::default()
    }
}

/// One node: sends `PER_PEER` messages to every other node, collects what it receives
/// until everything it sent is acknowledged and everything it expects has arrived.
async fn node(mut ep: Endpoint, me: u32, barrier: Arc<Barrier>) -> BTreeMap<(u32, u64), u32> {
    let sender = ep.sender();
    let sending = tokio::spawn(async move {
        for seq in 0..PER_PEER {
            for peer in (0..NODES).filter(|&p| p != me) {
                let mut msg = me.to_le_bytes().to_vec();
                msg.extend_from_slice(&seq.to_le_bytes());
                msg.resize(40 + (seq as usize % 1500), 0xAB); // some messages fragment
                sender.send(NodeId(peer), msg).await.expect("send");
            }
        }
    });
    let others = u64::from(NODES - 1);
    let (mut received, mut acked) = (BTreeMap::new(), 0u64);
    while (received.len() as u64) < others * PER_PEER || acked < others * PER_PEER {
        match ep.next_event().await.expect("endpoint closed early") {
            Event::Delivered { from, bytes, .. } => {
                let origin = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
                let seq = u64::from_le_bytes(bytes[4..12].try_into().unwrap());
                assert_eq!(origin, from.0, "message attributed to the wrong sender");
                assert!(bytes[12..].iter().all(|&b| b == 0xAB), "payload damaged");
                *received.entry((origin, seq)).or_insert(0) += 1;
            }
            Event::Acked { .. } => acked += 1,
            Event::Unreachable { peer } => panic!("{peer} reported unreachable"),
            _ => {}
        }
    }
    sending.await.unwrap();
    // Keep acknowledging until every node has everything, then stop together.
    barrier.wait().await;
    let stats = ep.stats().await.unwrap();
    assert!(stats.faults.dropped_loss > 0 && stats.faults.corrupted > 0);
    assert!(stats.core.retransmits > 0);
    ep.close().await.unwrap();
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_loopback_delivers_exactly_once() {
    let mut endpoints = Vec::new();
    for n in 0..NODES {
        let mut cfg = EndpointConfig::new(config(n), loopback());
        cfg.faults = Some(faulty(100 + u64::from(n)));
        endpoints.push(Endpoint::bind(cfg, Vec::new()).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = endpoints.iter().map(Endpoint::local_addr).collect();
    for (n, ep) in endpoints.iter().enumerate() {
        for (m, &addr) in addrs.iter().enumerate().filter(|(m, _)| *m != n) {
            ep.add_peer(NodeId(m as u32), addr).await.unwrap();
        }
    }
    let barrier = Arc::new(Barrier::new(NODES as usize));
    let tasks: Vec<_> = endpoints
        .into_iter()
        .enumerate()
        .map(|(n, ep)| tokio::spawn(node(ep, n as u32, barrier.clone())))
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let received = tokio::time::timeout(DEADLINE, task)
            .await
            .expect("exchange did not finish in time")
            .unwrap();
        for origin in (0..NODES).filter(|&o| o != n as u32) {
            for seq in 0..PER_PEER {
                assert_eq!(
                    received.get(&(origin, seq)),
                    Some(&1),
                    "node {n}: message {seq} from {origin}"
                );
            }
        }
        assert_eq!(received.len() as u64, u64::from(NODES - 1) * PER_PEER);
    }
}

#[tokio::test]
async fn bind_and_peer_errors_name_the_problem() {
    // A port held by a socket without SO_REUSEADDR cannot be bound again.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap();
    let err = Endpoint::bind(EndpointConfig::new(config(0), taken), Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Bind { addr, .. } if addr == taken));
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
    drop(held);
    // Two endpoints must never share a port (datagrams would go to either at random).
    let first = Endpoint::bind(
        EndpointConfig::new(config(0), "127.0.0.1:0".parse().unwrap()),
        Vec::new(),
    )
    .await
    .unwrap();
    let used = first.local_addr();
    let err = Endpoint::bind(EndpointConfig::new(config(1), used), Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DriverError::Bind { addr, .. } if addr == used),
        "{err}"
    );
    first.close().await.unwrap();

    let bad_peers: [(NodeId, &str, &str); 4] = [
        (NodeId(1), "0.0.0.0:4000", "unspecified"),
        (NodeId(1), "127.0.0.1:0", "port 0"),
        (NodeId(1), "[::1]:4000", "IPv6 peer"),
        (NodeId(0), "127.0.0.1:4000", "own id"),
    ];
    for (peer, addr, expect) in bad_peers {
        let err = Endpoint::bind(
            EndpointConfig::new(config(0), loopback()),
            vec![(peer, addr.parse().unwrap())],
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains(expect), "{addr}: {err}");
    }
    let twice = vec![
        (NodeId(1), "127.0.0.1:4000".parse().unwrap()),
        (NodeId(2), "127.0.0.1:4000".parse().unwrap()),
    ];
    let err = Endpoint::bind(EndpointConfig::new(config(0), loopback()), twice)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("share address"), "{err}");

    let bad_core = Config {
        incarnation: 0,
        ..config(0)
    };
    let err = Endpoint::bind(EndpointConfig::new(bad_core, loopback()), Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Config(_)), "{err}");

    let mut cfg = EndpointConfig::new(config(0), loopback());
    cfg.faults = Some(FaultPlan::uniform(1, LinkFaults::lossy(1.5)));
    let err = Endpoint::bind(cfg, Vec::new()).await.unwrap_err();
    assert!(err.to_string().contains("default.loss.p"), "{err}");

    // Adding a peer at runtime is checked the same way.
    let ep = Endpoint::bind(EndpointConfig::new(config(0), loopback()), Vec::new())
        .await
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    ep.add_peer(NodeId(1), addr).await.unwrap();
    let err = ep
        .add_peer(NodeId(1), "127.0.0.1:4001".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already a peer"), "{err}");
    let err = ep.add_peer(NodeId(2), addr).await.unwrap_err();
    assert!(err.to_string().contains("already uses address"), "{err}");
    let err = ep.send(NodeId(9), vec![1]).await.unwrap_err();
    assert!(matches!(err, DriverError::Send(_)), "{err}");
    ep.close().await.unwrap();
}

#[tokio::test]
async fn unknown_sources_are_dropped_and_counted() {
    let mut ep = Endpoint::bind(EndpointConfig::new(config(0), loopback()), Vec::new())
        .await
        .unwrap();
    let stranger = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    for _ in 0..5 {
        stranger
            .send_to(b"SHT garbage", ep.local_addr())
            .await
            .unwrap();
    }
    // Poll the counters (no fixed sleep): the datagrams arrive within milliseconds.
    let counted = tokio::time::timeout(DEADLINE, async {
        loop {
            let s = ep.stats().await.unwrap();
            if s.driver.unknown_source_dropped == 5 {
                return s;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("datagrams never counted");
    assert_eq!(
        counted.core.datagrams_received, 0,
        "the core never saw them"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(1), ep.next_event())
            .await
            .is_err(),
        "no event for garbage"
    );
    ep.close().await.unwrap();
}

#[tokio::test]
async fn ipv6_loopback_works() {
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    let bind = |n| Endpoint::bind(EndpointConfig::new(config(n), v6), Vec::new());
    let (mut a, mut b) = match (bind(0).await, bind(1).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("SKIPPED ipv6_loopback_works: no IPv6 loopback here ({e})");
            return;
        }
    };
    a.add_peer(NodeId(1), b.local_addr()).await.unwrap();
    b.add_peer(NodeId(0), a.local_addr()).await.unwrap();
    for i in 0..50u8 {
        a.send(NodeId(1), vec![i; 100]).await.unwrap();
    }
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while got.len() < 50 {
            got.push(b.recv().await.unwrap().bytes[0]);
        }
    })
    .await
    .expect("IPv6 delivery timed out");
    got.sort_unstable();
    assert_eq!(got, (0..50).collect::<Vec<u8>>());
    let acked = tokio::time::timeout(DEADLINE, async {
        let mut n = 0;
        while n < 50 {
            if let Some(Event::Acked { .. }) = a.next_event().await {
                n += 1;
            }
        }
    })
    .await;
    assert!(acked.is_ok(), "acks timed out");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// `send_batch` through a lossy, reordering link with a window smaller than the batches:
/// each batch waits for acknowledgements part-way, its ids come back consecutive, and
/// every message arrives exactly once; `next_events` reads them in batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_wait_for_the_window_and_arrive_exactly_once() {
    const BATCHES: u64 = 40;
    const SIZES: [u64; 4] = [1, 7, 64, 33];
    let small_window = |n| Config {
        max_in_flight: 16,
        ..config(n)
    };
    let mut a_cfg = EndpointConfig::new(small_window(0), loopback());
    a_cfg.faults = Some(faulty(7));
    let mut b_cfg = EndpointConfig::new(small_window(1), loopback());
    b_cfg.faults = Some(faulty(8));
    let mut b = Endpoint::bind(b_cfg, Vec::new()).await.unwrap();
    let mut a = Endpoint::bind(a_cfg, vec![(NodeId(1), b.local_addr())])
        .await
        .unwrap();
    b.add_peer(NodeId(0), a.local_addr()).await.unwrap();
    let tx = a.sender();
    // The sender's own events (acknowledgements) must be read for the exchange to run.
    let acks = tokio::spawn(async move {
        let (mut events, mut acked) = (Vec::new(), 0u64);
        while a.next_events(&mut events, 64).await > 0 {
            acked += events
                .drain(..)
                .filter(|e| matches!(e, Event::Acked { .. }))
                .count() as u64;
        }
        acked
    });
    let sending = tokio::spawn(async move {
        let (mut seq, mut next_id) = (0u64, 0u64);
        for batch in 0..BATCHES {
            let size = SIZES[batch as usize % SIZES.len()];
            let messages = (seq..seq + size)
                .map(|s| {
                    let mut m = s.to_le_bytes().to_vec();
                    m.resize(24 + (s as usize % 1500), 0xCD); // some fragment
                    m
                })
                .collect();
            let ids = tx.send_batch(NodeId(1), messages).await.expect("batch");
            let got: Vec<u64> = ids.iter().map(|id| id.0).collect();
            let want: Vec<u64> = (next_id..next_id + size).collect();
            assert_eq!(got, want, "batch {batch}: ids in order, one per message");
            seq += size;
            next_id += size;
        }
        seq
    });
    let total: u64 = (0..BATCHES).map(|b| SIZES[b as usize % SIZES.len()]).sum();
    let mut received = BTreeMap::new();
    let mut events = Vec::new();
    let receive = async {
        while (received.len() as u64) < total {
            assert!(b.next_events(&mut events, 64).await > 0, "closed early");
            for event in events.drain(..) {
                if let Event::Delivered { bytes, .. } = event {
                    let seq = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
                    assert!(bytes[8..].iter().all(|&x| x == 0xCD), "payload damaged");
                    assert_eq!(bytes.len(), 24 + (seq as usize % 1500));
                    *received.entry(seq).or_insert(0u32) += 1;
                }
            }
        }
    };
    tokio::time::timeout(DEADLINE, receive)
        .await
        .expect("batches did not arrive in time");
    assert_eq!(sending.await.unwrap(), total);
    assert!(
        received.values().all(|&n| n == 1),
        "a message arrived twice"
    );
    assert_eq!(
        received.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    drop(b);
    acks.abort();
}

/// A batch is refused whole, before anything is sent, when one message is too large or
/// the peer is unknown.
#[tokio::test]
async fn a_bad_batch_is_refused_whole() {
    let b = Endpoint::bind(EndpointConfig::new(config(1), loopback()), Vec::new())
        .await
        .unwrap();
    let a = Endpoint::bind(
        EndpointConfig::new(config(0), loopback()),
        vec![(NodeId(1), b.local_addr())],
    )
    .await
    .unwrap();
    let max = Config::default().max_message;
    let too_large = vec![vec![1u8; 10], vec![2u8; max + 1]];
    assert!(matches!(
        a.send_batch(NodeId(1), too_large).await,
        Err(DriverError::Send(shutter_transport::SendError::TooLarge))
    ));
    assert!(matches!(
        a.send_batch(NodeId(9), vec![vec![1u8; 10]]).await,
        Err(DriverError::Send(shutter_transport::SendError::UnknownPeer))
    ));
    let stats = a.close().await.unwrap();
    assert_eq!(
        stats.core.messages_sent, 0,
        "nothing of a refused batch went out"
    );
}
