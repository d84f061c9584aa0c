//! A retransmission timeout resends each lost fragment once, however many copies of it
//! were in flight (urgent echoes, `expedite`). Found while profiling the `core_datagram`
//! fuzz target (tests/fuzz/README.md, bug #8): a timeout after 20 `expedite`s of a
//! 7,228-byte message sent 147 datagrams carrying 8 distinct fragments 21 times each, and
//! again at every backoff until the message was acknowledged.

use std::collections::BTreeSet;
use std::time::Duration;

use shutter_transport::core::Config;
use shutter_transport::wire::{self, Frame, Header, Writer};
use shutter_transport::{Core, Time};
use shutter_vclock::NodeId;

/// Drains the core; returns `(DATA frames, distinct fragments)` of what it sent.
fn drain(core: &mut Core, now: Time) -> (usize, usize) {
    let mut frames = 0;
    let mut distinct = BTreeSet::new();
    while let Some(t) = core.poll_transmit(now) {
        let (_, fs) = wire::decode(&t.bytes).expect("the core's own datagram");
        for f in fs {
            if let Frame::Data(d) = f {
                frames += 1;
                distinct.insert((d.message_id, d.index));
            }
        }
    }
    while core.poll_event().is_some() {}
    (frames, distinct.len())
}

#[test]
fn a_timeout_resends_each_lost_fragment_once_however_many_copies_were_in_flight() {
    let cfg = Config {
        local: NodeId(0),
        ..Config::default()
    };
    let mut core = Core::new(cfg.clone()).unwrap();
    core.add_peer(NodeId(1));
    let mut now = Time(1_000_000);
    core.send(now, NodeId(1), vec![7; 40]).unwrap();
    drain(&mut core, now);
    // The peer is heard from (its incarnation becomes known), nothing is acknowledged.
    let mut w = Writer::new(
        &Header {
            sender: NodeId(1),
            sender_incarnation: 7,
            dest_incarnation: cfg.incarnation,
            packet_number: 0,
        },
        1200,
    );
    assert!(w.push_ping());
    core.handle_datagram(now, NodeId(1), &w.finish());
    drain(&mut core, now);
    // A timeout declares the first packet lost: the link counts as lossy.
    now += Duration::from_secs(1);
    core.handle_timeout(now);
    drain(&mut core, now);
    core.send(now, NodeId(1), vec![9; 7228]).unwrap();
    drain(&mut core, now);
    for _ in 0..20 {
        core.expedite(now);
        drain(&mut core, now);
    }
    let mut timeouts = 0;
    for _ in 0..3 {
        let Some(t) = core.poll_timeout() else { break };
        now = now.max(t);
        core.handle_timeout(now);
        let (frames, distinct) = drain(&mut core, now);
        if distinct > 0 {
            timeouts += 1;
            assert_eq!(
                frames, distinct,
                "a timeout sent {frames} DATA frames for {distinct} distinct fragments"
            );
        }
    }
    assert!(
        timeouts > 0,
        "no timeout retransmitted anything: the test tests nothing"
    );
}
