//! Bugs the simulator found in other crates, reduced to a few lines each, kept as
//! regression tests.

use std::time::Duration;

use shutter_transport::Time;
use shutter_transport::core::{Config, Core, Event};
use shutter_vclock::NodeId;

fn core(me: u32, incarnation: u64) -> Core {
    let mut c = Core::new(Config {
        local: NodeId(me),
        incarnation,
        ..Config::default()
    })
    .unwrap();
    c.add_peer(NodeId(1 - me));
    c
}

fn deliveries(c: &mut Core) -> usize {
    let mut n = 0;
    while let Some(e) = c.poll_event() {
        n += usize::from(matches!(e, Event::Delivered { .. }));
    }
    n
}

/// Exchanges datagrams both ways at `now` until both are quiet; returns b's deliveries.
fn exchange(a: &mut Core, b: &mut Core, now: Time) -> usize {
    let mut delivered = 0;
    for _ in 0..10 {
        let mut moved = false;
        while let Some(t) = a.poll_transmit(now) {
            b.handle_datagram(now, NodeId(0), &t.bytes);
            moved = true;
        }
        delivered += deliveries(b);
        while let Some(t) = b.poll_transmit(now) {
            a.handle_datagram(now, NodeId(1), &t.bytes);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    delivered
}

/// Found by `sim_swarm` seed 157 (`SHUTTER_SIM_SEED=157 SHUTTER_SIM_SEEDS=1 cargo test -p
/// shutter-tests --test sim_swarm -- --nocapture`).
///
/// A sender that had never heard from its peer stamped `dest_incarnation = 0`, which the
/// receiver accepted in *any* incarnation: if the receiver delivered a message, restarted
/// before its ACK got through, and the sender retransmitted, the new incarnation delivered
/// the same message again (and money was created in the bank). Fixed in the transport:
/// data only goes to a known incarnation (first contact is a PING), and DATA addressed to
/// incarnation 0 is refused. The message must instead be reported `Abandoned` to its
/// sender once the new incarnation shows up.
#[test]
fn message_is_not_delivered_to_two_incarnations_of_the_receiver() {
    let mut a = core(0, 1);
    let mut b = core(1, 1);
    let mut now = Time::ZERO;
    a.send(now, NodeId(1), b"pay 10".to_vec()).unwrap();
    // First contact: a learns b's incarnation, then its data goes out and is delivered.
    let mut first = 0;
    for _ in 0..5 {
        first += exchange_one_way_until_data(&mut a, &mut b, now);
        if first > 0 {
            break;
        }
        now += Duration::from_millis(3);
    }
    assert_eq!(first, 1);
    // B's ACK is lost: drain and drop it. Then B's transport restarts.
    now += Duration::from_millis(5);
    while b.poll_transmit(now).is_some() {}
    let mut b = core(1, 2);
    // A retransmits after its RTO, and keeps talking until the new life is known.
    let mut again = 0;
    let mut abandoned = false;
    for _ in 0..20 {
        now += Duration::from_millis(200);
        a.handle_timeout(now);
        b.handle_timeout(now);
        again += exchange(&mut a, &mut b, now);
        while let Some(e) = a.poll_event() {
            abandoned |= matches!(e, Event::Abandoned { .. });
        }
    }
    assert_eq!(
        again, 0,
        "the restarted receiver delivered a message its previous incarnation already delivered"
    );
    assert!(
        abandoned,
        "the sender must learn the message is lost with b's old life"
    );
}

/// Moves a's datagrams to b and, until something is delivered, b's replies back; returns
/// b's deliveries.
fn exchange_one_way_until_data(a: &mut Core, b: &mut Core, now: Time) -> usize {
    let mut delivered = 0;
    while let Some(t) = a.poll_transmit(now) {
        b.handle_datagram(now, NodeId(0), &t.bytes);
    }
    delivered += deliveries(b);
    if delivered == 0 {
        // Handshake replies go back; once the data is delivered, its ACK stays with b.
        while let Some(t) = b.poll_transmit(now + Duration::from_millis(3)) {
            a.handle_datagram(now, NodeId(1), &t.bytes);
        }
    }
    delivered
}

/// Found once the simulator modelled real crashes (`CrashKind::Crash`: the bank, the
/// engine with its vector clock and the transport are all lost, a new process comes
/// back): `sim_swarm` seed 7 (`SHUTTER_SIM_SEED=7 SHUTTER_SIM_SEEDS=1 cargo test -p
/// shutter-tests --test sim_swarm -- --nocapture`), six nodes with loss, duplication,
/// corruption, a partition and a crash of n3.
///
/// A restarted process counted its own clock entry from 0 again, so its new events
/// looked like old ones to every node that had seen its earlier life: completed
/// snapshots had inconsistent cuts and channel states holding messages "never sent",
/// two sends shared an identity, and an initiator's own check refused what it had
/// assembled. Fixed in the engine: every life starts its entry at a floor derived from
/// the wall clock (`shutter_snapshot::life`). The same run without floors must still
/// fail, so this test keeps proving it exercises the bug.
#[test]
fn a_crashed_node_never_reuses_vector_time() {
    use shutter_tests::sim::{Algorithm, CrashKind, Options, Scenario, run, run_with};

    let sc = Scenario::random(7);
    assert!(
        sc.crashes.iter().any(|c| c.kind == CrashKind::Crash),
        "seed 7 must still draw a real crash: {sc}"
    );
    let out = run(&sc, Algorithm::Mattern);
    assert!(out.passed(), "{sc}: {:#?}", out.violations);
    assert!(out.completed > 0, "{sc}: nothing completed");
    assert_eq!(out.failed_checks, 0);

    let without = run_with(
        &sc,
        Algorithm::Mattern,
        Options {
            clock_floors: false,
            ..Options::default()
        },
    );
    assert!(
        !without.passed(),
        "without clock floors the crash must break snapshots; the scenario no longer \
         exercises the bug: {sc}"
    );
    assert!(
        without
            .violations
            .iter()
            .any(|v| v.contains("inconsistent cut")),
        "{:#?}",
        without.violations
    );
}
