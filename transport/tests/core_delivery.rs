//! Exactly-once delivery between simulated cores under loss, duplication, reordering and
//! corruption; ordered mode; flow control.

mod core_sim;

use std::time::Duration;

use core_sim::{Faults, Net, payload, seed};
use rand::Rng;
use shutter_transport::core::{Config, Event, SendError};
use shutter_transport::{Core, Time};
use shutter_vclock::NodeId;

const BIN: &str = "core_delivery";

/// Every node sends `per_pair` messages of random small sizes to every other node.
fn all_to_all(net: &mut Net, per_pair: u64, max_len: usize, rng_seed: u64) {
    let mut rng = core_sim::rng(rng_seed);
    let n = net.nodes.len();
    for seq in 0..per_pair {
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    let len = rng.random_range(16..=max_len);
                    net.send(from, to, payload(from, to, seq, len));
                }
            }
        }
    }
}

#[test]
fn exactly_once_under_loss_dup_reorder_corruption() {
    let base = seed(1, "exactly_once_under_loss_dup_reorder_corruption", BIN);
    for (k, loss) in [0.0, 0.1, 0.3, 0.5].into_iter().enumerate() {
        let s = base.wrapping_add(k as u64);
        let faults = Faults {
            loss,
            dup: 0.1,
            corrupt: 0.05,
            base: 300,
            jitter: 800,
        };
        let mut net = Net::new(3, Config::default(), faults, s);
        all_to_all(&mut net, 150, 600, s);
        let done = net.run_until(Time(600_000_000), Net::all_done);
        assert!(done, "seed {s} loss {loss}: not done by {:?}", net.now);
        net.check_exactly_once();
        let st = net.nodes[0].core.stats();
        println!(
            "loss {loss}: t={:?} steps={} sent={} retx={} corrupt={} dup={} dup_pkts={} srtt={:?} p50={}us p99={}us",
            net.now,
            net.steps,
            st.datagrams_sent,
            st.retransmits,
            st.corrupt_dropped,
            st.duplicates_dropped,
            st.duplicate_packets,
            st.min_srtt(),
            st.delivery_latency.value_at_quantile(0.5),
            st.delivery_latency.value_at_quantile(0.99),
        );
        if loss > 0.0 {
            assert!(st.retransmits > 0 && st.packets_lost > 0);
        }
        let corrupt: u64 = net
            .nodes
            .iter()
            .map(|n| n.core.stats().corrupt_dropped)
            .sum();
        assert!(corrupt > 0, "corruption must be detected");
        assert_eq!(st.messages_delivered, 300);
        assert_eq!(st.delivery_latency.len(), 300);
        // Quiescence: once everything is acked the cores stop talking (no ack ping-pong).
        let sent = net
            .nodes
            .iter()
            .map(|n| n.core.stats().datagrams_sent)
            .sum::<u64>();
        net.run_for(Duration::from_millis(50));
        let after = net
            .nodes
            .iter()
            .map(|n| n.core.stats().datagrams_sent)
            .sum::<u64>();
        assert!(
            after - sent < 20,
            "seed {s}: chatter after completion: {}",
            after - sent
        );
    }
}

#[test]
fn clean_network_is_fast_and_coalesces() {
    let s = seed(7, "clean_network_is_fast_and_coalesces", BIN);
    let mut net = Net::new(2, Config::default(), Faults::default(), s);
    for seq in 0..100 {
        net.queue(0, 1, payload(0, 1, seq, 50));
    }
    net.flush(0);
    assert!(net.run_until(Time(1_000_000), Net::all_done));
    net.check_exactly_once();
    let st = net.nodes[0].core.stats();
    assert_eq!(st.retransmits, 0);
    assert!(
        st.datagrams_sent < 20,
        "100 small messages must coalesce: {}",
        st.datagrams_sent
    );
    let srtt = st.rtt[&NodeId(1)].srtt;
    assert!(srtt < Duration::from_millis(3), "srtt {srtt:?}");
    assert!(net.now < Time(10_000), "took {:?}", net.now);
}

#[test]
fn ordered_mode_delivers_in_id_order() {
    let s = seed(3, "ordered_mode_delivers_in_id_order", BIN);
    let faults = Faults {
        loss: 0.2,
        dup: 0.1,
        corrupt: 0.0,
        base: 300,
        jitter: 2000,
    };
    let cfg = Config {
        ordered: true,
        ..Config::default()
    };
    let mut net = Net::new(2, cfg, faults, s);
    for seq in 0..300 {
        net.send(0, 1, payload(0, 1, seq, 100 + (seq as usize * 37) % 3000));
    }
    assert!(net.run_until(Time(600_000_000), Net::all_done), "seed {s}");
    net.check_exactly_once();
    let ids: Vec<u64> = net.nodes[1].delivered().map(|(_, id, _)| id.0).collect();
    assert_eq!(ids, (0..300).collect::<Vec<_>>(), "seed {s}");

    // The same faults without ordered mode do reorder (the mode matters).
    let mut net = Net::new(2, Config::default(), faults, s);
    for seq in 0..300 {
        net.send(0, 1, payload(0, 1, seq, 100 + (seq as usize * 37) % 3000));
    }
    assert!(net.run_until(Time(600_000_000), Net::all_done), "seed {s}");
    let ids: Vec<u64> = net.nodes[1].delivered().map(|(_, id, _)| id.0).collect();
    assert!(
        ids.windows(2).any(|w| w[0] > w[1]),
        "expected some reordering"
    );
}

#[test]
fn window_full_then_writable() {
    let s = seed(5, "window_full_then_writable", BIN);
    let cfg = Config {
        max_in_flight: 4,
        dedup_window: 8,
        ..Config::default()
    };
    let mut core = Core::new(Config {
        local: NodeId(0),
        ..cfg.clone()
    })
    .unwrap();
    let mut peer = Core::new(Config {
        local: NodeId(1),
        incarnation: 9,
        ..cfg
    })
    .unwrap();
    core.add_peer(NodeId(1));
    peer.add_peer(NodeId(0));
    let now = Time(0);
    assert_eq!(
        core.send(now, NodeId(2), vec![1]),
        Err(SendError::UnknownPeer)
    );
    assert_eq!(
        core.send(now, NodeId(1), vec![0; (16 << 20) + 1]),
        Err(SendError::TooLarge)
    );
    for i in 0..4 {
        assert_eq!(core.next_message_id(NodeId(1)).0, i);
        assert_eq!(core.send(now, NodeId(1), vec![i as u8]).unwrap().0, i);
    }
    assert!(!core.can_send(NodeId(1)));
    assert_eq!(
        core.send(now, NodeId(1), vec![9]),
        Err(SendError::WindowFull)
    );
    assert_eq!(core.next_message_id(NodeId(1)).0, 4);
    // Deliver everything by hand, losslessly, and watch for Writable.
    let mut t = now;
    let mut writable = false;
    for _ in 0..50 {
        while let Some(tx) = core.poll_transmit(t) {
            peer.handle_datagram(t, NodeId(0), &tx.bytes);
        }
        while let Some(tx) = peer.poll_transmit(t) {
            core.handle_datagram(t, NodeId(1), &tx.bytes);
        }
        while let Some(e) = core.poll_event() {
            writable |= e == Event::Writable { to: NodeId(1) };
        }
        while peer.poll_event().is_some() {}
        if writable {
            break;
        }
        t = core
            .poll_timeout()
            .into_iter()
            .chain(peer.poll_timeout())
            .min()
            .unwrap_or(t)
            .max(t);
        core.handle_timeout(t);
        peer.handle_timeout(t);
    }
    assert!(writable, "seed {s}: no Writable event");
    assert!(core.can_send(NodeId(1)));
    assert_eq!(core.send(t, NodeId(1), vec![4]).unwrap().0, 4);
}

#[test]
fn back_pressure_under_loss_with_small_window() {
    let s = seed(11, "back_pressure_under_loss_with_small_window", BIN);
    let cfg = Config {
        max_in_flight: 3,
        dedup_window: 3,
        ..Config::default()
    };
    let faults = Faults {
        loss: 0.3,
        dup: 0.05,
        corrupt: 0.0,
        base: 300,
        jitter: 1000,
    };
    let mut net = Net::new(2, cfg, faults, s);
    for seq in 0..200 {
        net.send(0, 1, payload(0, 1, seq, 64));
        net.send(1, 0, payload(1, 0, seq, 2000));
    }
    assert!(net.run_until(Time(600_000_000), Net::all_done), "seed {s}");
    net.check_exactly_once();
    let writable = net.nodes[0].count(|e| matches!(e, Event::Writable { .. }));
    assert!(
        writable > 10,
        "expected repeated back-pressure, got {writable} Writable events"
    );
}

#[test]
fn many_seeds_random_faults_four_nodes() {
    let base = seed(1000, "many_seeds_random_faults_four_nodes", BIN);
    for k in 0..12u64 {
        let s = base.wrapping_add(k);
        let mut rng = core_sim::rng(s);
        let faults = Faults {
            loss: rng.random_range(0.0..0.5),
            dup: rng.random_range(0.0..0.3),
            corrupt: rng.random_range(0.0..0.1),
            base: rng.random_range(50..2000),
            jitter: rng.random_range(0..3000),
        };
        println!("seed {s}: {faults:?}");
        let cfg = Config {
            max_in_flight: rng.random_range(1..64),
            ..Config::default()
        };
        let cfg = Config {
            dedup_window: cfg.max_in_flight as u64 * 2,
            ..cfg
        };
        let mut net = Net::new(4, cfg, faults, s);
        all_to_all(&mut net, 40, 4000, s);
        let done = net.run_until(Time(600_000_000), Net::all_done);
        assert!(
            done,
            "seed {s}: not done by {:?}; replay with SHUTTER_SEED={s}",
            net.now
        );
        net.check_exactly_once();
    }
}

/// Two cores that have completed the first-contact handshake and one exchange; returns
/// them and the time reached. Plain sends stay plain (`lone_urgent` off), so the tests
/// below see only the urgency they ask for.
fn handshaken_pair(urgent_echo_window: Option<Duration>) -> (Core, Core, Time) {
    handshaken_pair_with(urgent_echo_window, false)
}

fn handshaken_pair_with(
    urgent_echo_window: Option<Duration>,
    lone_urgent: bool,
) -> (Core, Core, Time) {
    let make = |me: u32| {
        let mut c = Core::new(Config {
            local: NodeId(me),
            incarnation: 1,
            urgent_echo_window,
            lone_urgent,
            ..Config::default()
        })
        .unwrap();
        c.add_peer(NodeId(1 - me));
        c
    };
    let (mut a, mut b) = (make(0), make(1));
    let mut t = Time(1_000);
    a.send(t, NodeId(1), b"hello".to_vec()).unwrap();
    // Steps of 3 ms let delayed acks (max_ack_delay 2 ms) go out.
    exchange(&mut a, &mut b, &mut t, 10);
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    assert_eq!(a.unacked(NodeId(1)), 0, "handshake and first message done");
    (a, b, t)
}

#[test]
fn urgent_messages_survive_one_lost_datagram_without_a_timeout() {
    // Always copy (`None`), so the copy happens on this loss-free exchange.
    let (mut a, mut b, t) = handshaken_pair(None);
    a.send_urgent(t, NodeId(1), b"cut".to_vec()).unwrap();
    let copies: Vec<_> = std::iter::from_fn(|| a.poll_transmit(t)).collect();
    assert_eq!(
        copies.len(),
        2,
        "the message and its copy, in two datagrams"
    );
    assert_eq!(a.stats().urgent_copies, 1);
    // The first datagram is lost; the copy alone delivers the message, at once.
    b.handle_datagram(t, NodeId(0), &copies[1].bytes);
    let delivered: Vec<_> = std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            Event::Delivered { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, vec![b"cut".to_vec()]);
    // A late first copy is a duplicate: still exactly once.
    b.handle_datagram(t, NodeId(0), &copies[0].bytes);
    assert!(!std::iter::from_fn(|| b.poll_event()).any(|e| matches!(e, Event::Delivered { .. })));

    // A plain message goes out once.
    a.send(t, NodeId(1), b"transfer".to_vec()).unwrap();
    assert_eq!(std::iter::from_fn(|| a.poll_transmit(t)).count(), 1);
}

/// Delivers everything both ways, in 3 ms steps for `steps` steps.
fn exchange(a: &mut Core, b: &mut Core, t: &mut Time, steps: u32) {
    exchange_with(a, b, NodeId(1), t, steps);
}

/// Like `exchange`, between `a` (node 0) and `b` (node `b_id`); what `a` sends to
/// anyone else is lost.
fn exchange_with(a: &mut Core, b: &mut Core, b_id: NodeId, t: &mut Time, steps: u32) {
    for _ in 0..steps {
        a.handle_timeout(*t);
        b.handle_timeout(*t);
        while let Some(x) = a.poll_transmit(*t) {
            if x.to == b_id {
                b.handle_datagram(*t, NodeId(0), &x.bytes);
            }
        }
        while let Some(x) = b.poll_transmit(*t) {
            a.handle_datagram(*t, b_id, &x.bytes);
        }
        *t += Duration::from_millis(3);
    }
}

#[test]
fn urgent_messages_are_copied_only_on_links_that_lose_packets() {
    let (mut a, mut b, mut t) = handshaken_pair(Some(Duration::from_secs(10)));
    let copies = |a: &Core| a.stats().urgent_copies;
    a.send_urgent(t, NodeId(1), b"clean".to_vec()).unwrap();
    exchange(&mut a, &mut b, &mut t, 5);
    assert_eq!(copies(&a), 0, "clean link: no copy");
    // Lose one datagram; the retransmission timer declares it lost.
    a.send(t, NodeId(1), b"lost".to_vec()).unwrap();
    while a.poll_transmit(t).is_some() {}
    t += Duration::from_millis(500);
    exchange(&mut a, &mut b, &mut t, 5);
    assert_eq!(a.unacked(NodeId(1)), 0);
    a.send_urgent(t, NodeId(1), b"lossy".to_vec()).unwrap();
    exchange(&mut a, &mut b, &mut t, 5);
    assert_eq!(copies(&a), 1, "after a loss the urgent message is copied");
    // More than 10 s after the last loss the link counts as clean again.
    for _ in 0..11 {
        t += Duration::from_secs(1);
        exchange(&mut a, &mut b, &mut t, 1);
    }
    a.send_urgent(t, NodeId(1), b"calm".to_vec()).unwrap();
    exchange(&mut a, &mut b, &mut t, 5);
    assert_eq!(copies(&a), 1);
}

/// A host that stalls past the sender's retransmission timeout: the timer only probes
/// (a PING and a copy of the unacknowledged data), it declares nothing lost, so the late
/// ACK proves nothing spurious and the link still counts as clean: urgent messages are
/// not copied on it.
#[test]
fn a_stalled_host_costs_a_probe_not_a_loss() {
    let (mut a, mut b, mut t) = handshaken_pair(Some(Duration::from_secs(10)));
    a.send(t, NodeId(1), b"slow ack".to_vec()).unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| a.poll_transmit(t)).collect();
    for d in &sent {
        b.handle_datagram(t, NodeId(0), &d.bytes);
    }
    // The receiver's delayed ACK is due; its host then stalls before the ACK gets out.
    t += Duration::from_millis(3);
    b.handle_timeout(t);
    let late_acks: Vec<_> = std::iter::from_fn(|| b.poll_transmit(t)).collect();
    assert!(!late_acks.is_empty(), "the receiver acknowledges");
    t += Duration::from_millis(500);
    a.handle_timeout(t);
    assert!(a.stats().rto_expirations >= 1, "the timer fired");
    let probes: Vec<_> = std::iter::from_fn(|| a.poll_transmit(t)).collect();
    assert!(!probes.is_empty(), "the timeout probes");
    assert!(
        a.stats().probe_copies >= 1,
        "the probe copies the unacknowledged message"
    );
    assert_eq!(a.stats().packets_lost, 0, "a timeout declares nothing lost");
    assert_eq!(a.stats().retransmits, 0);
    // The probes are lost with the stall; the late ACK arrives.
    for d in &late_acks {
        a.handle_datagram(t, NodeId(1), &d.bytes);
    }
    assert_eq!(a.stats().spurious_losses, 0, "nothing to withdraw");
    assert_eq!(
        a.stats().packets_lost,
        0,
        "the lost probes are not judged yet"
    );
    assert_eq!(a.unacked(NodeId(1)), 0);
    a.send_urgent(t, NodeId(1), b"cut".to_vec()).unwrap();
    exchange(&mut a, &mut b, &mut t, 5);
    assert_eq!(a.unacked(NodeId(1)), 0);
    assert_eq!(a.stats().urgent_copies, 0, "a clean link: no copy");
    // A real loss still counts (the copy test above), and so does one after this.
    a.send(t, NodeId(1), b"lost".to_vec()).unwrap();
    while a.poll_transmit(t).is_some() {}
    t += Duration::from_millis(500);
    exchange(&mut a, &mut b, &mut t, 5);
    a.send_urgent(t, NodeId(1), b"lossy".to_vec()).unwrap();
    exchange(&mut a, &mut b, &mut t, 5);
    // How many copies follows the loss average (`copies_for`'s own test); here: some.
    assert!(
        a.stats().urgent_copies >= 1,
        "after a real loss the copy goes"
    );
}

#[test]
fn urgent_copies_scale_with_the_measured_loss() {
    let (mut a, mut b, mut t) = handshaken_pair(None);
    // Every datagram of 40 messages is lost until the link looks very lossy.
    for i in 0..40u8 {
        a.send(t, NodeId(1), vec![i]).unwrap();
        while a.poll_transmit(t).is_some() {}
        t += Duration::from_secs(1);
        a.handle_timeout(t);
        while a.poll_transmit(t).is_some() {}
    }
    // The link heals; everything is retransmitted and acknowledged.
    for _ in 0..20 {
        t += Duration::from_secs(2);
        exchange(&mut a, &mut b, &mut t, 3);
    }
    assert_eq!(a.unacked(NodeId(1)), 0);
    let before = a.stats().urgent_copies;
    a.send_urgent(t, NodeId(1), b"cut".to_vec()).unwrap();
    let datagrams = std::iter::from_fn(|| a.poll_transmit(t)).count();
    assert_eq!(
        a.stats().urgent_copies - before,
        4,
        "the most copies on a bad link"
    );
    assert!(
        datagrams >= 5,
        "each copy in a datagram of its own: {datagrams}"
    );
}

#[test]
fn expedite_resends_what_is_in_flight_only_on_lossy_links() {
    let (mut a, mut b, mut t) = handshaken_pair(Some(Duration::from_secs(10)));
    let copies = |a: &Core| a.stats().urgent_copies;
    // Clean link: nothing to hurry.
    a.send(t, NodeId(1), b"x".to_vec()).unwrap();
    while a.poll_transmit(t).is_some() {}
    a.expedite(t);
    assert!(a.poll_transmit(t).is_none());
    assert_eq!(copies(&a), 0);
    // The first datagram was lost; the timer declares it, the retransmission arrives.
    t += Duration::from_millis(500);
    exchange(&mut a, &mut b, &mut t, 5);
    assert_eq!(a.unacked(NodeId(1)), 0);
    // Now the link is lossy: a message in flight is copied at once when expedited, and
    // the copy alone delivers it.
    a.send(t, NodeId(1), b"pre-cut".to_vec()).unwrap();
    while a.poll_transmit(t).is_some() {}
    a.expedite(t);
    let copy = a.poll_transmit(t).expect("the copy");
    assert_eq!(copies(&a), 1);
    while b.poll_event().is_some() {}
    b.handle_datagram(t, NodeId(0), &copy.bytes);
    assert!(
        std::iter::from_fn(|| b.poll_event())
            .any(|e| matches!(e, Event::Delivered { bytes, .. } if bytes == b"pre-cut"))
    );
}

/// A link too young to have a loss record of its own goes by the node's other links:
/// while they lose, its urgent messages are copied; once it has shown itself clean over
/// enough packets, they are not.
#[test]
fn a_young_link_borrows_the_nodes_loss_record() {
    let make = |me: u32| {
        let mut c = Core::new(Config {
            local: NodeId(me),
            incarnation: 1,
            ..Config::default()
        })
        .unwrap();
        for peer in (0..3).filter(|&p| p != me) {
            c.add_peer(NodeId(peer));
        }
        c
    };
    let (mut a, mut b, mut c) = (make(0), make(1), make(2));
    let mut t = Time(1_000);
    // a -> b: first contact, then one datagram lost, declared lost by the timer.
    a.send(t, NodeId(1), b"hello".to_vec()).unwrap();
    exchange(&mut a, &mut b, &mut t, 10);
    a.send(t, NodeId(1), b"lost".to_vec()).unwrap();
    while a.poll_transmit(t).is_some() {}
    t += Duration::from_millis(500);
    exchange(&mut a, &mut b, &mut t, 5);
    assert!(a.stats().packets_lost >= 1);
    // a -> c has never lost anything, but has no record either: the copy goes.
    let before = a.stats().urgent_copies;
    a.send_urgent(t, NodeId(2), b"cut".to_vec()).unwrap();
    exchange_with(&mut a, &mut c, NodeId(2), &mut t, 5);
    assert_eq!(a.unacked(NodeId(2)), 0);
    assert_eq!(a.stats().urgent_copies, before + 1, "a young link copies");
    // Forty clean packets later a -> c has its own record, and it says clean.
    for i in 0..40u8 {
        a.send(t, NodeId(2), vec![i]).unwrap();
        exchange_with(&mut a, &mut c, NodeId(2), &mut t, 1);
    }
    exchange_with(&mut a, &mut c, NodeId(2), &mut t, 3);
    let before = a.stats().urgent_copies;
    a.send_urgent(t, NodeId(2), b"cut again".to_vec()).unwrap();
    exchange_with(&mut a, &mut c, NodeId(2), &mut t, 5);
    assert_eq!(a.unacked(NodeId(2)), 0);
    assert_eq!(
        a.stats().urgent_copies,
        before,
        "a clean link with a record: no copy"
    );
}

/// `Config::lone_urgent` (the default): on a link that lost a packet, a message sent
/// while nothing is unacknowledged goes out with copies, one sent behind an
/// unacknowledged one does not; on a clean link nothing is copied.
#[test]
fn a_lone_message_on_a_lossy_link_goes_out_in_copies() {
    let (mut a, mut b, mut t) = handshaken_pair_with(Some(Duration::from_secs(10)), true);
    let copies = |a: &Core| a.stats().urgent_copies;
    // Clean link: a lone message is sent once.
    a.send(t, NodeId(1), b"clean".to_vec()).unwrap();
    assert_eq!(std::iter::from_fn(|| a.poll_transmit(t)).count(), 1);
    assert_eq!(copies(&a), 0);
    // That datagram is lost; the timer declares it, and the link is lossy from then on.
    t += Duration::from_millis(500);
    exchange(&mut a, &mut b, &mut t, 5);
    assert_eq!(a.unacked(NodeId(1)), 0);
    while b.poll_event().is_some() {}
    // A lone message: sent with a copy, and the copy alone delivers it.
    a.send(t, NodeId(1), b"lone".to_vec()).unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| a.poll_transmit(t)).collect();
    assert!(copies(&a) >= 1, "a lone message on a lossy link is copied");
    assert!(sent.len() >= 2, "the message and its copy: {}", sent.len());
    b.handle_datagram(t, NodeId(0), &sent[sent.len() - 1].bytes);
    assert!(
        std::iter::from_fn(|| b.poll_event())
            .any(|e| matches!(e, Event::Delivered { bytes, .. } if bytes == b"lone"))
    );
    // Behind it (still unacknowledged at the sender), a message goes out once.
    let before = copies(&a);
    a.send(t, NodeId(1), b"behind".to_vec()).unwrap();
    assert_eq!(std::iter::from_fn(|| a.poll_transmit(t)).count(), 1);
    assert_eq!(
        copies(&a),
        before,
        "no copies behind an unacknowledged message"
    );
}
