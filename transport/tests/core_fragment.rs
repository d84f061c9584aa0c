//! Fragmentation and reassembly of large messages under loss and reordering.

mod core_sim;

use core_sim::{Faults, Net, payload, seed};
use shutter_transport::Time;
use shutter_transport::core::Config;

const BIN: &str = "core_fragment";

#[test]
fn megabyte_messages_under_loss_and_reordering() {
    let s = seed(21, "megabyte_messages_under_loss_and_reordering", BIN);
    let faults = Faults {
        loss: 0.2,
        dup: 0.05,
        corrupt: 0.01,
        base: 300,
        jitter: 1500,
    };
    let mut net = Net::new(2, Config::default(), faults, s);
    let sizes = [
        3 << 20,
        1 << 20,
        1,
        0,
        2_000_000,
        1044,
        1045,
        2088,
        2089,
        70_000,
    ];
    for (seq, &len) in sizes.iter().enumerate() {
        net.send(0, 1, payload(0, 1, seq as u64, len));
        net.send(1, 0, payload(1, 0, seq as u64, len / 3));
    }
    assert!(
        net.run_until(Time(600_000_000), Net::all_done),
        "seed {s} stuck at {:?}",
        net.now
    );
    net.check_exactly_once();
    let st = net.nodes[0].core.stats();
    println!(
        "t={:?} steps={} datagrams={} fragments={} retx={} lost={} rto={} spurious={}",
        net.now,
        net.steps,
        st.datagrams_sent,
        st.fragments_sent,
        st.retransmits,
        st.packets_lost,
        st.rto_expirations,
        st.spurious_losses
    );
    assert!(st.retransmits > 0);
}

#[test]
fn reassembly_memory_is_bounded_but_progresses() {
    let s = seed(22, "reassembly_memory_is_bounded_but_progresses", BIN);
    // Room for one message at a time: the others are refused and retried.
    let cfg = Config {
        max_message: 200_000,
        max_reassembly_bytes: 200_000,
        ..Config::default()
    };
    let faults = Faults {
        loss: 0.1,
        dup: 0.0,
        corrupt: 0.0,
        base: 300,
        jitter: 1000,
    };
    let mut net = Net::new(2, cfg, faults, s);
    for seq in 0..8 {
        net.queue(0, 1, payload(0, 1, seq, 150_000));
    }
    net.flush(0);
    assert!(
        net.run_until(Time(600_000_000), Net::all_done),
        "seed {s} stuck at {:?}",
        net.now
    );
    net.check_exactly_once();
    assert!(
        net.nodes[1].core.stats().refused_packets > 0,
        "the bound should have been hit"
    );
}
