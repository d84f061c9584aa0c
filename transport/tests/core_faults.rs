//! Partitions, restarts (incarnations) and unreachability between simulated cores.

mod core_sim;

use std::time::Duration;

use core_sim::{Faults, Net, payload, seed};
use shutter_transport::Time;
use shutter_transport::core::{Config, Event, MessageId};
use shutter_vclock::NodeId;

const BIN: &str = "core_faults";

fn cfg() -> Config {
    Config {
        idle_timeout: Duration::from_millis(500),
        keepalive: Duration::from_millis(100),
        max_rto: Duration::from_millis(200),
        ..Config::default()
    }
}

#[test]
fn partition_then_heal_delivers_everything() {
    let s = seed(31, "partition_then_heal_delivers_everything", BIN);
    let faults = Faults {
        loss: 0.1,
        dup: 0.05,
        corrupt: 0.01,
        base: 300,
        jitter: 500,
    };
    let mut net = Net::new(3, cfg(), faults, s);
    net.partition(0, 1, true);
    for seq in 0..50 {
        for (a, b) in [(0, 1), (1, 0), (0, 2), (2, 1)] {
            net.send(a, b, payload(a, b, seq, 300));
        }
    }
    net.run_for(Duration::from_secs(2));
    // Node 0 and 1 could not talk: each reported the other unreachable exactly once.
    assert_eq!(
        net.nodes[0].count(|e| *e == Event::Unreachable { peer: NodeId(1) }),
        1
    );
    assert_eq!(
        net.nodes[1].count(|e| *e == Event::Unreachable { peer: NodeId(0) }),
        1
    );
    assert_eq!(
        net.nodes[0].count(|e| *e == Event::Unreachable { peer: NodeId(2) }),
        0
    );
    assert!(!net.all_done());
    net.partition(0, 1, false);
    assert!(
        net.run_until(Time(600_000_000), Net::all_done),
        "seed {s} stuck at {:?}",
        net.now
    );
    net.check_exactly_once();
    // Heard again, then lost again: a second event.
    net.partition(0, 1, true);
    net.send(0, 1, payload(0, 1, 99, 10));
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        net.nodes[0].count(|e| *e == Event::Unreachable { peer: NodeId(1) }),
        2
    );
    assert_eq!(net.nodes[0].core.stats().unreachable_events, 2);
}

#[test]
fn unreachable_only_while_waiting_and_monitor_pings() {
    let s = seed(32, "unreachable_only_while_waiting_and_monitor_pings", BIN);
    let mut net = Net::new(2, cfg(), Faults::default(), s);
    net.nodes[1].up = false;
    // Idle: nothing outstanding, no event, no traffic.
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.nodes[0].events.len(), 0);
    assert_eq!(net.nodes[0].core.stats().datagrams_sent, 0);
    // Monitoring a dead peer: keepalive pings, then Unreachable after idle_timeout.
    let start = net.now;
    net.nodes[0].core.monitor(net.now, NodeId(1), true);
    net.flush(0);
    let found = net.run_until(start + Duration::from_secs(5), |n| {
        !n.nodes[0].events.is_empty()
    });
    assert!(found);
    assert_eq!(
        net.nodes[0].events,
        vec![Event::Unreachable { peer: NodeId(1) }]
    );
    let elapsed = net.now - start;
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(600),
        "{elapsed:?}"
    );
    assert!(net.nodes[0].core.stats().pings_sent >= 4);
    // A live monitored peer is never reported.
    net.nodes[1].up = true;
    net.nodes[0].core.monitor(net.now, NodeId(1), false);
    let mut net = Net::new(2, cfg(), Faults::default(), s);
    net.nodes[0].core.monitor(net.now, NodeId(1), true);
    net.flush(0);
    net.run_for(Duration::from_secs(3));
    assert!(net.nodes[0].events.is_empty(), "{:?}", net.nodes[0].events);
}

#[test]
fn restart_abandons_and_restarts_ids() {
    let s = seed(33, "restart_abandons_and_restarts_ids", BIN);
    let faults = Faults {
        loss: 0.05,
        dup: 0.05,
        corrupt: 0.0,
        base: 300,
        jitter: 300,
    };
    let mut net = Net::new(2, cfg(), faults, s);
    for seq in 0..20 {
        net.send(0, 1, payload(0, 1, seq, 100));
        net.send(1, 0, payload(1, 0, seq, 100));
    }
    assert!(net.run_until(Time(60_000_000), Net::all_done), "seed {s}");
    // Node 1 goes down with messages to it outstanding.
    net.nodes[1].up = false;
    for seq in 20..25 {
        net.send(0, 1, payload(0, 1, seq, 100));
    }
    net.run_for(Duration::from_millis(100));
    net.restart(1, 2);
    // The new life sends first; node 0 learns the new incarnation from its header.
    net.send(1, 0, payload(1, 0, 0, 100));
    let done = net.run_until(Time(600_000_000), |n| {
        n.nodes[0].count(|e| matches!(e, Event::Abandoned { .. })) == 5
            && n.nodes[1].backlog.is_empty()
    });
    assert!(done, "seed {s}");
    let ev = &net.nodes[0].events;
    let restarted = ev.iter().position(|e| {
        *e == Event::PeerRestarted {
            peer: NodeId(1),
            incarnation: 2,
        }
    });
    let first_abandon = ev.iter().position(|e| matches!(e, Event::Abandoned { .. }));
    assert!(restarted.unwrap() < first_abandon.unwrap());
    let abandoned: Vec<MessageId> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Abandoned { to, id, .. } if *to == NodeId(1) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(abandoned, (20..25).map(MessageId).collect::<Vec<_>>());
    // Ids towards the new life start from 0 again, and traffic flows both ways.
    assert_eq!(net.nodes[0].core.next_message_id(NodeId(1)), MessageId(0));
    assert_eq!(net.nodes[0].core.peer_incarnation(NodeId(1)), Some(2));
    net.send(0, 1, payload(0, 1, 0, 100));
    let delivered_new = |n: &Net| {
        n.nodes[1]
            .delivered()
            .any(|(f, id, _)| f == NodeId(0) && id == MessageId(0))
    };
    assert!(net.run_until(Time(600_000_000), delivered_new), "seed {s}");
    assert_eq!(net.nodes[0].core.stats().peer_restarts, 1);
}

#[test]
fn restarted_node_announces_itself_to_a_sender_of_its_old_life() {
    let s = seed(
        34,
        "restarted_node_announces_itself_to_a_sender_of_its_old_life",
        BIN,
    );
    let mut net = Net::new(2, cfg(), Faults::default(), s);
    net.send(0, 1, payload(0, 1, 0, 10));
    assert!(net.run_until(Time(60_000_000), Net::all_done));
    // Node 1 restarts silently; node 0 keeps sending to the old life, node 1 drops those
    // datagrams as stale and answers with a ping carrying its new incarnation.
    net.restart(1, 5);
    net.send(0, 1, payload(0, 1, 1, 10));
    let seen = |n: &Net| {
        n.nodes[0].events.contains(&Event::PeerRestarted {
            peer: NodeId(1),
            incarnation: 5,
        })
    };
    assert!(net.run_until(Time(60_000_000), seen), "seed {s}");
    assert!(net.nodes[1].core.stats().stale_incarnation_dropped > 0);
    assert!(net.nodes[0].events.iter().any(|e| matches!(
        e,
        Event::Abandoned { to: NodeId(1), id: MessageId(1), bytes } if *bytes == payload(0, 1, 1, 10)
    )));
}
