//! Sealed datagrams: two cores with one cluster key exchange messages; everything an
//! off-path attacker can send (forged, replayed, wrong-key, plain, bit-flipped) is dropped
//! and counted before it changes anything, and the peers keep talking.

use shutter_transport::auth::{Auth, KeyRing};
use shutter_transport::core::{Config, Core, Event};
use shutter_transport::wire::{self, Header, Writer};
use shutter_transport::{Stats, Time};
use shutter_vclock::NodeId;

fn ring(byte: u8) -> KeyRing {
    KeyRing::single(1, [byte; 32])
}

fn core(me: u32, incarnation: u64, auth: Auth) -> Core {
    let mut c = Core::new(Config {
        local: NodeId(me),
        incarnation,
        auth,
        ..Config::default()
    })
    .unwrap();
    c.add_peer(NodeId(1 - me));
    c
}

/// Deliveries at a, deliveries at b, datagrams a sent to b.
type Traffic = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Runs both cores for 200 ms of virtual time from `start` (timers included), moving
/// every datagram; returns (a's, b's) deliveries and every datagram a sent to b (the
/// attacker's capture).
fn exchange(a: &mut Core, b: &mut Core, start: Time) -> Traffic {
    let (mut da, mut db, mut captured) = (Vec::new(), Vec::new(), Vec::new());
    for ms in 0..200 {
        let now = Time(start.0 + ms * 1000);
        a.handle_timeout(now);
        b.handle_timeout(now);
        while let Some(t) = a.poll_transmit(now) {
            captured.push(t.bytes.clone());
            b.handle_datagram(now, NodeId(0), &t.bytes);
        }
        while let Some(t) = b.poll_transmit(now) {
            a.handle_datagram(now, NodeId(1), &t.bytes);
        }
        for (c, d) in [(&mut *a, &mut da), (&mut *b, &mut db)] {
            while let Some(e) = c.poll_event() {
                if let Event::Delivered { bytes, .. } = e {
                    d.push(bytes);
                }
            }
        }
    }
    (da, db, captured)
}

fn drops(s: &Stats) -> u64 {
    s.auth_failed_dropped + s.replayed_dropped + s.wrong_protection_dropped + s.malformed_dropped
}

#[test]
fn sealed_cores_talk_and_the_payload_is_not_in_the_clear() {
    let mut a = core(0, 7, Auth::Keys(ring(1)));
    let mut b = core(1, 9, Auth::Keys(ring(1)));
    let now = Time(1_000);
    a.send(now, NodeId(1), b"transfer 1000000 to n0".to_vec())
        .unwrap();
    let (_, got, captured) = exchange(&mut a, &mut b, now);
    assert_eq!(got, vec![b"transfer 1000000 to n0".to_vec()]);
    for d in &captured {
        assert!(
            !d.windows(8).any(|w| w == b"transfer"),
            "payload visible on the wire"
        );
        assert_eq!(d[3], wire::VERSION_SEALED);
    }
    assert_eq!(drops(b.stats()), 0);
}

#[test]
fn forged_replayed_wrong_key_plain_and_flipped_datagrams_change_nothing() {
    let mut a = core(0, 7, Auth::Keys(ring(1)));
    let mut b = core(1, 9, Auth::Keys(ring(1)));
    let mut now = Time(1_000);
    a.send(now, NodeId(1), b"pay 10".to_vec()).unwrap();
    let (_, got, captured) = exchange(&mut a, &mut b, now);
    assert_eq!(got.len(), 1);
    let before = b.stats().clone();

    // 1. Replays of everything captured: authentic, but seen.
    for d in &captured {
        b.handle_datagram(now, NodeId(0), d);
    }
    // 2. Bit flips anywhere (header included), 1-4 bits.
    let mut flipped = 0;
    for d in &captured {
        for i in 0..d.len() {
            for bits in [0x01u8, 0x81, 0x0f] {
                let mut x = d.clone();
                x[i] ^= bits;
                b.handle_datagram(now, NodeId(0), &x);
                flipped += 1;
            }
        }
    }
    // 3. The same traffic sealed with another key (an outsider's cluster).
    let mut outsider = core(0, 7, Auth::Keys(ring(2)));
    outsider
        .send(now, NodeId(1), b"pay 1000000".to_vec())
        .unwrap();
    let mut wrong_key = 0;
    while let Some(t) = outsider.poll_transmit(now) {
        b.handle_datagram(now, NodeId(0), &t.bytes);
        wrong_key += 1;
    }
    // 4. A plain PING claiming that n0 restarted with incarnation 2^62, valid CRC.
    let mut w = Writer::new(
        &Header {
            sender: NodeId(0),
            sender_incarnation: 1 << 62,
            dest_incarnation: 9,
            packet_number: 1,
        },
        1200,
    );
    assert!(w.push_ping());
    b.handle_datagram(now, NodeId(0), &w.finish());
    // 5. A sealed-looking header with a huge incarnation and garbage instead of a tag.
    let mut forged = captured[0].clone();
    let n = forged.len();
    forged[n - 16..].copy_from_slice(&[0xaa; 16]);
    b.handle_datagram(now, NodeId(0), &forged);

    let s = b.stats();
    assert_eq!(
        s.messages_delivered, before.messages_delivered,
        "nothing delivered"
    );
    assert_eq!(s.peer_restarts, 0, "nobody made n0 look restarted");
    assert_eq!(
        s.replayed_dropped - before.replayed_dropped,
        captured.len() as u64
    );
    assert_eq!(s.wrong_protection_dropped, 1, "the plain PING");
    // Every flipped datagram and every wrong-key one was refused by the AEAD, except
    // flips that broke the clear header's structure (counted malformed) or its
    // routing fields (sender mismatch / unknown peer).
    let refused = (s.auth_failed_dropped - before.auth_failed_dropped)
        + (s.malformed_dropped - before.malformed_dropped)
        + (s.sender_mismatch_dropped - before.sender_mismatch_dropped)
        + (s.unknown_peer_dropped - before.unknown_peer_dropped)
        + (s.wrong_protection_dropped - before.wrong_protection_dropped)
        - 1;
    assert_eq!(refused, flipped + wrong_key + 1, "{s:#?}");
    assert!(s.auth_failed_dropped - before.auth_failed_dropped > wrong_key);

    // The real peers still talk.
    now = Time(1_000_000);
    a.send(now, NodeId(1), b"pay 20".to_vec()).unwrap();
    let (_, got, _) = exchange(&mut a, &mut b, now);
    assert_eq!(got, vec![b"pay 20".to_vec()]);
}

#[test]
fn a_restart_changes_the_keys_and_old_life_datagrams_stay_stale() {
    let mut a = core(0, 7, Auth::Keys(ring(1)));
    let mut b = core(1, 9, Auth::Keys(ring(1)));
    let now = Time(1_000);
    a.send(now, NodeId(1), b"one".to_vec()).unwrap();
    let (_, _, old) = exchange(&mut a, &mut b, now);
    // a restarts: packet numbers start again, under a new incarnation's key.
    let mut a = core(0, 8, Auth::Keys(ring(1)));
    let now = Time(1_000_000);
    a.send(now, NodeId(1), b"two".to_vec()).unwrap();
    let (_, got, _) = exchange(&mut a, &mut b, now);
    assert_eq!(got, vec![b"two".to_vec()]);
    let restarts = b.stats().peer_restarts;
    for d in &old {
        b.handle_datagram(now, NodeId(0), d);
    }
    assert_eq!(b.stats().peer_restarts, restarts);
    assert_eq!(b.stats().messages_delivered, 2);
}

#[test]
fn key_rotation_accepts_old_and_new_during_the_switch() {
    let old = [1u8; 32];
    let new = [2u8; 32];
    let hex = |k: &[u8; 32]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let both_send_old =
        KeyRing::parse(&format!("1 {}\n2 {}\nsend 1", hex(&old), hex(&new))).unwrap();
    let both_send_new =
        KeyRing::parse(&format!("1 {}\n2 {}\nsend 2", hex(&old), hex(&new))).unwrap();
    // n0 already switched to the new key, n1 still sends with the old one.
    let mut a = core(0, 7, Auth::Keys(both_send_new));
    let mut b = core(1, 9, Auth::Keys(both_send_old));
    let now = Time(1_000);
    a.send(now, NodeId(1), b"a->b".to_vec()).unwrap();
    b.send(now, NodeId(0), b"b->a".to_vec()).unwrap();
    let (ga, gb, _) = exchange(&mut a, &mut b, now);
    assert_eq!(ga, vec![b"b->a".to_vec()]);
    assert_eq!(gb, vec![b"a->b".to_vec()]);
    // A node that has dropped the old key refuses the old one.
    let mut c = core(1, 9, Auth::Keys(KeyRing::single(2, new)));
    let mut old_only = core(0, 7, Auth::Keys(KeyRing::single(1, old)));
    old_only.send(now, NodeId(1), b"x".to_vec()).unwrap();
    let (_, got, _) = exchange(&mut old_only, &mut c, now);
    assert!(got.is_empty());
    assert!(c.stats().auth_failed_dropped > 0);
}

#[test]
fn plain_and_sealed_nodes_do_not_talk() {
    let mut a = core(0, 7, Auth::Insecure);
    let mut b = core(1, 9, Auth::Keys(ring(1)));
    let now = Time(1_000);
    a.send(now, NodeId(1), b"x".to_vec()).unwrap();
    let (_, got, _) = exchange(&mut a, &mut b, now);
    assert!(got.is_empty());
    assert!(b.stats().wrong_protection_dropped > 0);
}
