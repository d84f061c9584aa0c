//! Hostile input: arbitrary bytes and mutated valid datagrams never panic a `Core`, are
//! counted, and leave it working.

use proptest::prelude::*;
use shutter_transport::core::{Config, Core};
use shutter_transport::{Time, wire};
use shutter_vclock::NodeId;

fn pair() -> (Core, Core) {
    let mut a = Core::new(Config {
        local: NodeId(0),
        incarnation: 3,
        ..Config::default()
    })
    .unwrap();
    let mut b = Core::new(Config {
        local: NodeId(1),
        incarnation: 4,
        ..Config::default()
    })
    .unwrap();
    a.add_peer(NodeId(1));
    b.add_peer(NodeId(0));
    (a, b)
}

/// Valid datagrams from node 0 to node 1: data of several sizes, and (from b) acks.
fn valid_datagrams(sizes: &[usize]) -> Vec<Vec<u8>> {
    let (mut a, mut b) = pair();
    for (i, &len) in sizes.iter().enumerate() {
        a.send(Time(0), NodeId(1), vec![i as u8; len]).unwrap();
    }
    let mut out = Vec::new();
    // A few rounds: a's first packet is the PING that learns b's incarnation, then data.
    for round in 0..4u64 {
        let now = Time(round * 5_000);
        while let Some(t) = a.poll_transmit(now) {
            b.handle_datagram(now, NodeId(0), &t.bytes);
            out.push(t.bytes);
        }
        // b's acks, re-labelled as if from 0, still exercise the ACK parser after re-CRC.
        while let Some(t) = b.poll_transmit(now + std::time::Duration::from_millis(3)) {
            a.handle_datagram(now, NodeId(1), &t.bytes);
            out.push(t.bytes);
        }
    }
    a.monitor(Time(0), NodeId(1), true);
    while let Some(t) = a.poll_transmit(Time(2_000_000)) {
        out.push(t.bytes);
    }
    out
}

fn fix_crc(b: &mut [u8]) {
    if b.len() >= wire::CRC_LEN {
        let n = b.len() - wire::CRC_LEN;
        let crc = crc32c::crc32c(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Feeds `bytes` and checks the core still works: it drains and can exchange a message.
/// The exchange uses a new incarnation of node 0: a forged datagram with a valid CRC and
/// node 0's current identity (same packet number) is indistinguishable from a genuine one.
/// The new incarnation is `u64::MAX`, because a mutated header may claim any smaller one
/// (incarnations only grow, so a forged larger one would make every later datagram stale).
fn feed_and_check(bytes: &[u8]) -> (u64, u64) {
    let (_, mut b) = pair();
    let mut a = Core::new(Config {
        local: NodeId(0),
        incarnation: u64::MAX,
        ..Config::default()
    })
    .unwrap();
    a.add_peer(NodeId(1));
    b.handle_datagram(Time(1), NodeId(0), bytes);
    b.handle_timeout(Time(2));
    while b.poll_transmit(Time(2)).is_some() {}
    while b.poll_event().is_some() {}
    let _ = b.poll_timeout();
    let st = b.stats();
    let result = (st.datagrams_received, st.dropped() + st.refused_packets);
    // Still functional afterwards.
    a.send(Time(3), NodeId(1), b"after".to_vec()).unwrap();
    let mut delivered = false;
    for t in 3..50u64 {
        let now = Time(t * 10_000);
        a.handle_timeout(now);
        b.handle_timeout(now);
        while let Some(tx) = a.poll_transmit(now) {
            b.handle_datagram(now, NodeId(0), &tx.bytes);
        }
        while let Some(tx) = b.poll_transmit(now) {
            a.handle_datagram(now, NodeId(1), &tx.bytes);
        }
        while let Some(e) = b.poll_event() {
            delivered |= matches!(e, shutter_transport::Event::Delivered { ref bytes, .. } if bytes == b"after");
        }
        if delivered {
            break;
        }
    }
    assert!(delivered, "the core must still deliver after hostile input");
    result
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    if b.is_empty() {
        return;
    }
    match m {
        Mutation::Truncate(i) => b.truncate(i % b.len()),
        Mutation::Flip(i, bit) => {
            let n = b.len();
            b[i % n] ^= 1 << bit;
        }
        Mutation::Set(i, v) => {
            let n = b.len();
            b[i % n] = *v;
        }
        Mutation::Insert(i, v) => {
            let at = i % (b.len() + 1);
            b.splice(at..at, v.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_dropped_and_counted(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
        let (received, dropped) = feed_and_check(&bytes);
        prop_assert_eq!(received, 1);
        prop_assert_eq!(dropped, 1);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_header(tail in prop::collection::vec(any::<u8>(), 0..300)) {
        // Valid magic, version, sender and CRC, garbage frames: must be parsed defensively.
        let mut b = wire::MAGIC.to_vec();
        b.push(wire::VERSION);
        b.extend_from_slice(&[0, 3, 4, 7]);
        b.extend_from_slice(&tail);
        b.extend_from_slice(&[0; 4]);
        fix_crc(&mut b);
        let (received, _) = feed_and_check(&b);
        prop_assert_eq!(received, 1);
    }

    #[test]
    fn mutated_datagrams_never_panic(
        sizes in prop::collection::vec(0usize..5000, 1..5),
        pick in any::<usize>(),
        muts in prop::collection::vec(mutation(), 1..4),
        recrc in any::<bool>(),
    ) {
        let all = valid_datagrams(&sizes);
        let original = &all[pick % all.len()];
        let mut b = original.clone();
        for m in &muts {
            apply(&mut b, m);
        }
        if recrc {
            fix_crc(&mut b);
        }
        let (received, dropped) = feed_and_check(&b);
        prop_assert_eq!(received, 1);
        if !recrc && b != *original {
            prop_assert_eq!(dropped, 1, "a damaged datagram must be dropped and counted");
        }
    }
}

#[test]
fn wrong_sender_and_unknown_peer_are_counted() {
    let dgs = valid_datagrams(&[10]);
    let (_, mut b) = pair();
    b.handle_datagram(Time(1), NodeId(2), &dgs[0]);
    assert_eq!(b.stats().sender_mismatch_dropped, 1);
    let mut c = Core::new(Config {
        local: NodeId(1),
        ..Config::default()
    })
    .unwrap();
    c.handle_datagram(Time(1), NodeId(0), &dgs[0]);
    assert_eq!(c.stats().unknown_peer_dropped, 1);
    assert!(c.poll_event().is_none());
}
