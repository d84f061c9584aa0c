//! A lone message on a quiet link asks for its acknowledgement at once (a PING in its
//! packet), so the probe timeout that would find it lost leaves the peer's ack delay
//! out; a busier link keeps its delayed, coalesced acknowledgements.

use std::time::Duration;

use shutter_transport::core::Config;
use shutter_transport::wire::{self, Frame};
use shutter_transport::{Core, Time};
use shutter_vclock::NodeId;

const A: NodeId = NodeId(0);
const B: NodeId = NodeId(1);

fn pair() -> (Core, Core) {
    let mut a = Core::new(Config {
        local: A,
        incarnation: 1,
        ..Config::default()
    })
    .unwrap();
    let mut b = Core::new(Config {
        local: B,
        incarnation: 2,
        ..Config::default()
    })
    .unwrap();
    a.add_peer(B);
    b.add_peer(A);
    (a, b)
}

/// What `from` sends now, as `(has a PING, has DATA)` per datagram, and the datagrams.
fn take(from: &mut Core, now: Time) -> Vec<(bool, bool, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = from.poll_transmit(now) {
        let (_, frames) = wire::decode(&t.bytes).expect("the core's own datagram");
        let ping = frames.iter().any(|f| matches!(f, Frame::Ping));
        let data = frames.iter().any(|f| matches!(f, Frame::Data(_)));
        out.push((ping, data, t.bytes));
    }
    while from.poll_event().is_some() {}
    out
}

/// Runs both cores until neither has anything to send at `now` (timers included).
fn settle(a: &mut Core, b: &mut Core, now: Time) {
    for _ in 0..20 {
        a.handle_timeout(now);
        b.handle_timeout(now);
        let (ta, tb) = (take(a, now), take(b, now));
        if ta.is_empty() && tb.is_empty() {
            return;
        }
        for (_, _, d) in ta {
            b.handle_datagram(now, A, &d);
        }
        for (_, _, d) in tb {
            a.handle_datagram(now, B, &d);
        }
    }
    panic!("the pair did not settle");
}

#[test]
fn a_lone_message_asks_for_its_ack_and_is_timed_without_the_ack_delay() {
    let (mut a, mut b) = pair();
    let mut now = Time(1_000_000);
    // First contact and a first message, everything acknowledged (the delayed ACK too).
    a.send(now, B, vec![1; 40]).unwrap();
    for _ in 0..5 {
        settle(&mut a, &mut b, now);
        now += Duration::from_millis(3);
    }
    // Quiet for longer than the ack delay: a lone message carries a PING.
    let cfg = Config::default();
    a.send(now, B, vec![2; 40]).unwrap();
    let sent = take(&mut a, now);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].0 && sent[0].1,
        "the lone data packet carries a PING"
    );
    // The peer acknowledges it at once, not after max_ack_delay.
    b.handle_datagram(now, A, &sent[0].2);
    let acks = take(&mut b, now);
    assert_eq!(acks.len(), 1, "an immediate ACK");
    a.handle_datagram(now, B, &acks[0].2);
    // Had it been lost, the probe timeout would leave the ack delay out.
    let later = now + Duration::from_micros(100);
    a.send(later, B, vec![3; 40]).unwrap();
    let sent = take(&mut a, later);
    assert!(
        !sent[0].0,
        "not quiet any more (a packet left 100 us ago): no PING"
    );
    let data_timeout = a.poll_timeout().expect("a probe timeout is armed");
    a.handle_datagram(later, B, &{
        b.handle_datagram(later, A, &sent[0].2);
        // The peer delays this ACK: take it once due.
        let due = later + cfg.max_ack_delay;
        b.handle_timeout(due);
        take(&mut b, due).remove(0).2
    });
    now = later + Duration::from_millis(10);
    a.send(now, B, vec![4; 40]).unwrap();
    let lost = take(&mut a, now);
    assert!(lost[0].0, "quiet again: PING");
    let ping_timeout = a.poll_timeout().expect("a probe timeout is armed");
    assert!(
        ping_timeout.saturating_since(now) + cfg.max_ack_delay
            <= data_timeout.saturating_since(later) + Duration::from_micros(1),
        "the pinged packet's timeout ({:?}) leaves out the ack delay the data packet's ({:?}) has",
        ping_timeout.saturating_since(now),
        data_timeout.saturating_since(later)
    );
}

#[test]
fn the_first_data_packet_after_the_handshake_asks_for_its_ack() {
    let (mut a, mut b) = pair();
    let now = Time(1_000_000);
    a.send(now, B, vec![1; 40]).unwrap();
    // First contact: a PING alone asks for the peer's incarnation.
    let hello = take(&mut a, now);
    assert_eq!(hello.len(), 1);
    assert!(hello[0].0 && !hello[0].1, "a bare PING first");
    b.handle_datagram(now, A, &hello[0].2);
    let later = now + Duration::from_micros(60);
    for (_, _, d) in take(&mut b, later) {
        a.handle_datagram(later, B, &d);
    }
    // The data goes 60 us after the PING, well within the ack delay, yet nothing is in
    // flight and the peer has nothing to coalesce its ACK with: it asks for it at once,
    // and were it lost, the probe timeout would not wait for the peer's ack delay.
    let data = take(&mut a, later);
    assert_eq!(data.len(), 1);
    assert!(
        data[0].0 && data[0].1,
        "the first data packet carries a PING"
    );
    let timeout = a.poll_timeout().expect("a probe timeout is armed");
    assert!(
        timeout.saturating_since(later) < Config::default().max_ack_delay,
        "probe timeout {:?} after the first data packet",
        timeout.saturating_since(later)
    );
    b.handle_datagram(later, A, &data[0].2);
    assert!(
        !take(&mut b, later).is_empty(),
        "the peer acknowledges at once"
    );
}
