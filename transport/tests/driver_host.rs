//! Real-socket tests of [`Host`], the transport driven inside the caller's task: two
//! hosts on 127.0.0.1 exchange messages through seeded faults (loss, duplication,
//! reordering, corruption) in both directions, each from one task that sends as its
//! window allows and awaits `next_event` otherwise; every message must arrive exactly
//! once and be acknowledged.

mod loopback_faults;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shutter_transport::driver::{DriverError, EndpointConfig, Host};
use shutter_transport::{Config, Event, SendError};
use shutter_vclock::NodeId;

use loopback_faults::faulty;

const PER_HOST: u64 = 2000;
/// Safety net only: on a healthy machine the exchange takes well under a second.
const DEADLINE: Duration = Duration::from_secs(60);

async fn host(me: u32, seed: u64) -> Host {
    let mut cfg = EndpointConfig::new(
        Config {
            local: NodeId(me),
            incarnation: 1,
            ..Config::default()
        },
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    );
    cfg.faults = Some(faulty(seed));
    Host::bind(cfg, Vec::new()).await.expect("bind")
}

/// Sends `PER_HOST` messages to `peer` as the window allows, and takes events until
/// all of them are acknowledged and all of the peer's have arrived; then keeps serving
/// (the peer may still wait for acknowledgements) until both hosts are done, waiting
/// on `next_event` with a timeout, which drops it mid-wait (it is cancel-safe). Returns
/// how often each of the peer's messages arrived.
async fn exchange(mut h: Host, peer: NodeId, done: Arc<AtomicUsize>) -> (BTreeMap<u64, u32>, Host) {
    let mut next = 0u64;
    let mut acked = 0u64;
    let mut got: BTreeMap<u64, u32> = BTreeMap::new();
    let mut finished = false;
    while done.load(Ordering::SeqCst) < 2 {
        while next < PER_HOST && h.can_send(peer) {
            let mut msg = next.to_le_bytes().to_vec();
            msg.resize(16 + (next as usize % 1500), 0xCD); // some messages fragment
            h.send(peer, msg).await.expect("window has room");
            next += 1;
        }
        let Ok(event) = tokio::time::timeout(Duration::from_millis(5), h.next_event()).await else {
            continue;
        };
        match event {
            Event::Delivered { from, bytes, .. } => {
                assert_eq!(from, peer);
                let seq = u64::from_le_bytes(bytes[..8].try_into().unwrap());
                *got.entry(seq).or_default() += 1;
            }
            Event::Acked { to, .. } => {
                assert_eq!(to, peer);
                acked += 1;
            }
            _ => {}
        }
        if !finished && acked == PER_HOST && got.len() as u64 == PER_HOST {
            finished = true;
            done.fetch_add(1, Ordering::SeqCst);
        }
    }
    (got, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_deliver_exactly_once_through_faults() {
    for seed in [1u64, 2] {
        println!("seed {seed} (replay: cargo test -p shutter-transport --test driver_host)");
        let mut a = host(0, seed).await;
        let mut b = host(1, seed + 100).await;
        a.add_peer(NodeId(1), b.local_addr()).unwrap();
        b.add_peer(NodeId(0), a.local_addr()).unwrap();
        let run = async {
            let done = Arc::new(AtomicUsize::new(0));
            let ta = tokio::spawn(exchange(a, NodeId(1), done.clone()));
            let tb = tokio::spawn(exchange(b, NodeId(0), done));
            let (ra, rb) = tokio::join!(ta, tb);
            (ra.unwrap(), rb.unwrap())
        };
        let ((got_a, a), (got_b, b)) = tokio::time::timeout(DEADLINE, run)
            .await
            .expect("exchange finished in time");
        for (name, got) in [("a", &got_a), ("b", &got_b)] {
            assert_eq!(got.len() as u64, PER_HOST, "{name}: every message arrived");
            assert!(got.values().all(|&n| n == 1), "{name}: each exactly once");
        }
        let (sa, sb) = (a.stats(), b.stats());
        assert!(
            sa.faults.dropped_loss > 0 && sb.faults.dropped_loss > 0,
            "faults were injected"
        );
        assert_eq!(sa.core.messages_delivered, PER_HOST);
        assert_eq!(sb.core.messages_delivered, PER_HOST);
    }
}

#[tokio::test]
async fn sending_to_an_unknown_peer_or_past_the_window_says_why() {
    let mut h = host(0, 3).await;
    assert!(matches!(
        h.send(NodeId(9), b"x".to_vec()).await,
        Err(DriverError::Send(SendError::UnknownPeer))
    ));
    // A peer that never answers: the window fills, and the host says so.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    h.add_peer(NodeId(1), silent.local_addr().unwrap()).unwrap();
    let mut sent = 0;
    let refused = loop {
        match h.send(NodeId(1), vec![0; 8]).await {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent <= 100_000, "the window never filled");
    };
    assert!(matches!(refused, DriverError::Send(SendError::WindowFull)));
    assert!(!h.can_send(NodeId(1)));
    assert_eq!(sent, Config::default().max_in_flight);
}
