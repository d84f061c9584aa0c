//! Hand-built schedules for the Mattern engine over an in-test network that delivers
//! messages exactly in the order each test chooses.

mod engine_support;

use std::time::Duration;

use engine_support::{Body, Net, decode_state, n};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shutter_snapshot::mattern::{Engine, EngineConfig};
use shutter_snapshot::{AbortWhy, Control, SnapshotEngine, SnapshotEvent};

const TIMEOUT: Duration = Duration::from_secs(5);
const ROUNDS: u64 = 60;

fn net(size: u32) -> Net<Engine> {
    Net::new(size, |me, nodes| {
        let mut cfg = EngineConfig::new(me, nodes);
        cfg.timeout = TIMEOUT;
        Engine::new(cfg)
    })
}

fn is_begin_to(m: &engine_support::Msg<Control>, to: u32) -> bool {
    m.to == n(to) && matches!(m.body, Body::Control(Control::Begin { .. }))
}

#[test]
fn pre_cut_message_arriving_after_the_announcement_is_in_the_channel_state() {
    let mut net = net(3);
    let m = net.send(n(1), n(2));
    let id = net.initiate(n(0));
    net.deliver_controls();
    assert!(
        net.completed().is_empty(),
        "n2 must wait for the pre-cut message"
    );
    assert_eq!(net.local_cuts(id), vec![n(0), n(1), n(2)]);
    net.deliver(m);
    net.deliver_controls();
    let snaps = net.completed();
    assert_eq!(snaps.len(), 1);
    let snap = &snaps[0];
    assert_eq!(snap.id, id);
    assert_eq!(
        Net::<Engine>::recorded_channels(snap),
        [((n(1), n(2)), vec![m])].into_iter().collect()
    );
    assert!(decode_state(&snap.states[&n(2)]).is_empty());
    net.check(snap).unwrap();
    // Begin and Cut (with the report at the cut) for n1 and n2, then only n2, whose
    // channel was open at its cut, gets its column and reports again; Done to both.
    assert_eq!(snap.control_messages, 8);
    assert!(net.all_timers_clear());
}

/// With no message in flight at any cut, the rows' early reports complete the snapshot:
/// no column and no second report, `3 (N - 1)` control messages, two one-way delays.
#[test]
fn with_every_channel_closed_at_the_cuts_the_rows_complete_the_snapshot() {
    let mut net = net(4);
    for (a, b) in [(1, 2), (2, 3), (3, 1), (0, 2)] {
        let m = net.send(n(a), n(b));
        assert!(net.deliver(m));
    }
    let id = net.initiate(n(0));
    // Begins out; deliver them and then the Cuts.
    assert_eq!(net.controls().len(), 3);
    net.deliver_controls_except(|m| matches!(m.body, Body::Control(Control::Done { .. })));
    let snaps = net.completed();
    assert_eq!(snaps.len(), 1);
    let snap = &snaps[0];
    assert_eq!(snap.id, id);
    net.check(snap).unwrap();
    assert!(snap.channels.values().all(Vec::is_empty));
    assert_eq!(snap.control_messages, 9, "3 (N - 1)");
    // Only Dones are left: no Expect ever went out.
    assert!(
        net.controls_where(|m| !matches!(m.body, Body::Control(Control::Done { .. })))
            .is_empty()
    );
    net.deliver_all();
    assert!(net.all_timers_clear());
}

/// A participant that restarts during a snapshot and joins it again in its new life
/// sent a second report at its cut; the snapshot completes from its first life's, and
/// the new life commits nothing (its Done names the other life).
#[test]
fn a_participant_restarted_mid_snapshot_commits_nothing_of_its_predecessors_part() {
    let mut net = net(3);
    let id = net.initiate(n(0));
    // n1 joins and its Cut goes out; n2's is held.
    net.deliver_controls_except(|m| {
        m.from == n(2) && matches!(m.body, Body::Control(Control::Cut { .. }))
    });
    restart(&mut net, 1, 2);
    // The new life joins through a post-cut message that announces the snapshot.
    let m = net.send(n(0), n(1));
    assert!(net.deliver(m));
    let cuts_at_n1 = net.peers[&n(1)]
        .events
        .iter()
        .filter(|e| matches!(e, SnapshotEvent::LocalCut { id: i, .. } if *i == id))
        .count();
    assert_eq!(cuts_at_n1, 2, "one cut per life");
    net.deliver_all();
    let snaps = net.completed();
    assert_eq!(snaps.len(), 1);
    let committed_at_n1 = net.peers[&n(1)]
        .events
        .iter()
        .any(|e| matches!(e, SnapshotEvent::Committed(p) if p.id == id));
    assert!(
        !committed_at_n1,
        "n1's new life committed its predecessor's snapshot"
    );
}

#[test]
fn post_cut_message_overtaking_the_control_message_makes_the_receiver_join_first() {
    let mut net = net(3);
    let id = net.initiate(n(0));
    // Begin to n2 is held back; the initiator's next message to n2 announces the snapshot.
    let m = net.send(n(0), n(2));
    net.deliver(m);
    let cut2 = net.local_cuts(id);
    assert!(cut2.contains(&n(2)), "n2 joined on the announcing message");
    net.deliver_controls();
    let snap = net.completed().pop().unwrap();
    assert!(
        decode_state(&snap.states[&n(2)]).is_empty(),
        "joined before delivering"
    );
    assert_eq!(net.peers[&n(2)].delivered, vec![m], "and then delivered it");
    assert!(Net::<Engine>::recorded_channels(&snap).is_empty());
    net.check(&snap).unwrap();
}

#[test]
fn announcement_relayed_through_a_third_node() {
    let mut net = net(3);
    let id = net.initiate(n(0));
    let begin1 = net.controls_where(|m| is_begin_to(m, 1))[0];
    net.deliver(begin1);
    // n1 joined; its message to n2 is post-cut and overtakes n0's Begin to n2.
    let pre = net.send(n(2), n(1));
    let post = net.send(n(1), n(2));
    net.deliver(post);
    assert!(net.local_cuts(id).contains(&n(2)));
    net.deliver_controls();
    assert!(
        net.completed().is_empty(),
        "n1 still waits for pre-cut {pre}"
    );
    net.deliver(pre);
    net.deliver_controls();
    let snap = net.completed().pop().unwrap();
    assert_eq!(
        Net::<Engine>::recorded_channels(&snap),
        [((n(2), n(1)), vec![pre])].into_iter().collect()
    );
    net.check(&snap).unwrap();
}

#[test]
fn concurrent_snapshots_from_two_initiators() {
    let mut net = net(4);
    let a0 = net.send(n(0), n(3));
    let a1 = net.send(n(3), n(1));
    let x = net.initiate(n(0));
    let b0 = net.send(n(1), n(2));
    let y = net.initiate(n(2));
    let b1 = net.send(n(2), n(0));
    let b2 = net.send(n(0), n(1));
    assert_ne!(x, y);
    // Deliver in a scrambled order, interleaving control messages.
    for m in [b1, a1] {
        net.deliver(m);
    }
    let ctl = net.controls();
    for &c in ctl.iter().rev().step_by(2) {
        net.deliver(c);
    }
    for m in [b2, a0, b0] {
        net.deliver(m);
    }
    net.deliver_all();
    let snaps = net.completed();
    assert_eq!(snaps.len(), 2);
    for s in &snaps {
        net.check(s).unwrap_or_else(|e| panic!("{}: {e}", s.id));
    }
    assert!(net.all_timers_clear());
}

#[test]
fn duplicate_and_late_control_messages_are_ignored() {
    let mut net = net(3);
    let pre = net.send(n(2), n(0));
    let id = net.initiate(n(0));
    let mut copies = Vec::new();
    // Every control message arrives twice; the copies only after the snapshot completed.
    while let Some(&c) = net.controls().iter().find(|c| !copies.contains(*c)) {
        copies.push(net.duplicate(c));
        net.deliver(c);
        if net.completed().is_empty() && net.controls().iter().all(|c| copies.contains(c)) {
            net.deliver(pre);
        }
    }
    assert_eq!(net.completed().len(), 1);
    let events_before: Vec<usize> = net.peers.values().map(|p| p.events.len()).collect();
    for c in copies {
        net.deliver(c);
    }
    assert!(net.flight.is_empty(), "late duplicates produce no traffic");
    let events_after: Vec<usize> = net.peers.values().map(|p| p.events.len()).collect();
    assert_eq!(events_before, events_after, "and no events");
    assert!(net.all_timers_clear());
    // An announcement of the finished snapshot cannot resurrect it either.
    let late = net.send(n(1), n(2));
    if let Some(m) = net.flight.get_mut(&late)
        && let Body::App(h, _) = &mut m.body
    {
        h.joined.push(id);
    }
    net.deliver(late);
    assert!(net.all_timers_clear());
    let snap = net.completed().pop().unwrap();
    net.check(&snap).unwrap();
}

#[test]
fn abort_on_timeout_names_the_missing_node_everywhere() {
    let mut net = net(3);
    let id = net.initiate(n(0));
    let held = net.controls_where(|m| is_begin_to(m, 2))[0];
    net.deliver_controls_except(|m| is_begin_to(m, 2));
    assert!(net.completed().is_empty());
    net.advance(TIMEOUT);
    net.fire_timers();
    net.deliver_controls_except(|m| is_begin_to(m, 2));
    // The held Begin arrives after the Abort: too late, n2 never joins.
    net.deliver(held);
    let aborted = net.aborted();
    assert_eq!(aborted.len(), 2, "{aborted:?}");
    for (node, aid, reason) in &aborted {
        assert_eq!(*aid, id);
        assert_eq!(reason.missing, vec![n(2)], "at {node}");
        assert_eq!(reason.why, AbortWhy::Timeout);
    }
    assert_eq!(
        aborted.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![n(0), n(1)]
    );
    assert!(!net.local_cuts(id).contains(&n(2)));
    net.deliver_all();
    net.advance(TIMEOUT * 3);
    net.fire_timers();
    assert!(net.completed().is_empty());
    assert!(net.all_timers_clear());
    assert!(net.flight.is_empty());
}

#[test]
fn abort_on_unreachable_at_initiator_and_at_participant() {
    let mut net = net(3);
    let id = net.initiate(n(0));
    net.unreachable(n(0), n(2));
    net.deliver_all();
    let aborted = net.aborted();
    assert_eq!(aborted.len(), 3, "{aborted:?}");
    for (_, aid, reason) in &aborted {
        assert_eq!(*aid, id);
        assert!(reason.missing.contains(&n(2)));
        assert_eq!(reason.why, AbortWhy::Unreachable(n(2)));
    }
    assert!(net.completed().is_empty());
    assert!(net.all_timers_clear());

    // Now a participant loses its initiator after its row (with its report at the cut)
    // went out: the verdict is the initiator's, so it stays quiet. n2's row is held
    // meanwhile; once it arrives every channel was closed at the cuts (no traffic), so
    // the snapshot completes from the early reports and n1 commits its part on Done.
    let id2 = net.initiate(n(0));
    net.deliver_controls_except(|m| {
        m.from == n(2) && matches!(m.body, Body::Control(Control::Cut { .. }))
    });
    net.unreachable(n(1), n(0));
    assert!(net.aborted().iter().all(|a| a.1 != id2));
    net.deliver_all();
    assert!(net.aborted().iter().all(|a| a.1 != id2));
    let done: Vec<_> = net
        .completed()
        .into_iter()
        .filter(|s| s.id == id2)
        .collect();
    assert_eq!(done.len(), 1);
    assert!(
        done[0].channels.values().all(Vec::is_empty),
        "closed at the cuts"
    );
    assert!(net.all_timers_clear());
}

#[test]
fn single_node_snapshot_completes_at_once() {
    let mut net = net(1);
    let id = net.initiate(n(0));
    let snap = net.completed().pop().unwrap();
    assert_eq!(snap.id, id);
    assert_eq!(snap.control_messages, 0);
    net.check(&snap).unwrap();
}

#[test]
fn too_many_active_snapshots_is_refused() {
    let mut cfg = EngineConfig::new(n(0), vec![n(0), n(1)]);
    cfg.max_active = 2;
    let mut e = Engine::new(cfg);
    let now = shutter_transport::Time(0);
    e.initiate(now, vec![]).unwrap();
    e.initiate(now, vec![]).unwrap();
    assert!(e.initiate(now, vec![]).is_err());
}

/// Random sends, initiations and delivery order; every completed snapshot must match the
/// oracle exactly. Replay a failure with `SHUTTER_SEED=<seed> cargo test -p
/// shutter-snapshot --test engine_mattern random_schedules`.
#[test]
fn random_schedules_produce_exact_consistent_snapshots() {
    let base: u64 = std::env::var("SHUTTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    for round in 0..ROUNDS {
        let seed = base.wrapping_add(round);
        let result = std::panic::catch_unwind(|| random_schedule(seed));
        if result.is_err() {
            panic!(
                "seed {seed} failed; replay: SHUTTER_SEED={seed} cargo test -p shutter-snapshot \
                 --test engine_mattern random_schedules"
            );
        }
    }
}

fn random_schedule(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let size = rng.random_range(2..=5u32);
    let mut net = net(size);
    let mut initiated = Vec::new();
    for _ in 0..400 {
        match rng.random_range(0..10) {
            0..=3 => {
                let from = n(rng.random_range(0..size));
                let to = n(rng.random_range(0..size));
                if from != to {
                    net.send(from, to);
                }
            }
            4 if initiated.len() < 12 => {
                initiated.push(net.initiate(n(rng.random_range(0..size))));
            }
            _ => {
                if !net.flight.is_empty() {
                    let ids: Vec<u64> = net.flight.keys().copied().collect();
                    let pick = ids[rng.random_range(0..ids.len())];
                    net.deliver(pick);
                }
            }
        }
    }
    net.deliver_all();
    let snaps = net.completed();
    assert_eq!(snaps.len(), initiated.len(), "seed {seed}");
    for s in &snaps {
        if let Err(e) = net.check(s) {
            panic!("seed {seed}, snapshot {}: {e}", s.id);
        }
    }
    assert!(net.aborted().is_empty());
    assert!(net.all_timers_clear());
    assert!(net.peers.values().all(|p| p.engine.is_idle()));
}

#[test]
fn channel_state_over_the_byte_limit_aborts_everywhere() {
    let mut net = Net::new(2, |me, nodes| {
        let mut cfg = EngineConfig::new(me, nodes);
        cfg.max_channel_bytes = 4;
        Engine::new(cfg)
    });
    let m = net.send(n(1), n(0)); // 8-byte payload, pre-cut
    let id = net.initiate(n(0));
    net.deliver_controls();
    net.deliver(m);
    net.deliver_all();
    let aborted = net.aborted();
    assert_eq!(aborted.len(), 2, "{aborted:?}");
    assert!(
        aborted
            .iter()
            .all(|a| a.1 == id && a.2.why == AbortWhy::ChannelStateTooLarge)
    );
    assert!(net.completed().is_empty());
    assert!(net.all_timers_clear());
}

#[test]
fn a_message_lost_to_a_restart_stops_blocking_once_its_sender_declares_it() {
    let mut net = net(3);
    // Number 1 on 1 -> 2 is stuck in a session that is about to end; number 2 arrives.
    let lost = net.send(n(1), n(2));
    let kept = net.send(n(1), n(2));
    let id = net.initiate(n(0));
    assert!(net.deliver(kept));
    net.deliver_controls();
    assert!(
        net.completed().is_empty(),
        "n2 must wait for number 1 while it may still come"
    );
    // The session ends: n1 declares everything it sent to n2 so far resolved.
    net.handle_link_reset(n(1), n(2));
    net.deliver_controls();
    let snaps = net.completed();
    assert_eq!(snaps.len(), 1, "the Lost declaration closes the channel");
    let snap = &snaps[0];
    assert_eq!(snap.id, id);
    assert!(
        snap.channels.values().all(Vec::is_empty),
        "a lost message is in no channel state"
    );
    shutter_snapshot::verify::check_cut_consistency(snap).unwrap();
    // A straggler of the ended session must not reach the application any more: the
    // snapshot already counted it as never arriving.
    assert!(!net.deliver(lost), "a declared-lost message is stale");
    assert!(!net.peers[&n(2)].delivered.contains(&lost));
    assert!(net.all_timers_clear());
}

/// Replaces node `i`'s engine with a fresh one of life `life` whose own clock entry
/// starts at `floor` (a process restart; a real one takes the floor from `life`).
fn restart_with_floor(net: &mut Net<Engine>, i: u32, life: u64, floor: u64) {
    let nodes = net.peers.keys().copied().collect();
    let mut cfg = EngineConfig::new(n(i), nodes);
    cfg.timeout = TIMEOUT;
    cfg.life = life;
    cfg.clock_floor = floor;
    net.peers.get_mut(&n(i)).unwrap().engine = Engine::new(cfg);
}

/// A process restart with a floor above anything these tests' earlier lives reach.
fn restart(net: &mut Net<Engine>, i: u32, life: u64) {
    restart_with_floor(net, i, life, life * 1_000);
}

#[test]
fn a_restart_that_reuses_vector_time_is_refused_by_the_check_not_completed() {
    let mut net = net(3);
    for _ in 0..3 {
        let m = net.send(n(0), n(1));
        assert!(net.deliver(m));
    }
    // n0 comes back with its clock at 0 (what every restart did before lives had a
    // floor): n1 has seen n0's event 3, and n0's new cut is at 1.
    restart_with_floor(&mut net, 0, 2, 0);
    let id = net.initiate(n(0));
    assert_eq!(id.s, 1, "the reused snapshot id");
    net.deliver_controls();
    assert!(net.completed().is_empty());
    let aborts = net.aborted();
    let (_, _, reason) = aborts
        .iter()
        .find(|a| a.0 == n(0) && a.1 == id)
        .expect("the initiator aborts");
    assert_eq!(reason.why, AbortWhy::FailedCheck, "{reason}");
    assert!(reason.missing.contains(&n(0)), "{reason}");

    // With a floor, the same restart completes.
    restart(&mut net, 0, 3);
    net.initiate(n(0));
    net.deliver_controls();
    let snap = net.completed().pop().expect("completes");
    shutter_snapshot::verify::check_structure(&snap).unwrap();
}

#[test]
fn restarted_processes_number_afresh_and_snapshots_still_close() {
    let mut net = net(2);
    for _ in 0..3 {
        let m = net.send(n(0), n(1));
        assert!(net.deliver(m));
    }
    // The sender restarts: its numbers start again at 1 in a new life.
    restart(&mut net, 0, 2);
    let m = net.send(n(0), n(1));
    assert!(net.deliver(m), "number 1 of the new life is new");
    let first = net.initiate(n(1));
    net.deliver_controls();
    assert_eq!(net.completed().len(), 1);

    // The receiver restarts: its fresh engine knows none of n0's numbers, and n0's next
    // message is number 2. Only n0's Lost (sent when it sees the restart) resolves
    // number 1, which the receiver's previous life had received.
    restart(&mut net, 1, 2);
    let m = net.send(n(0), n(1));
    assert!(net.deliver(m));
    let second = net.initiate(n(0));
    net.deliver_controls();
    assert_eq!(
        net.completed().len(),
        1,
        "n1 waits for number 1 of n0's life 2"
    );
    net.handle_link_reset(n(0), n(1));
    net.deliver_controls();
    let mut ids: Vec<_> = net.completed().iter().map(|s| s.id).collect();
    ids.sort();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(ids, want);
}

/// Once a snapshot completes, every node commits exactly its part of it (what its
/// checkpoint store writes); an aborted snapshot commits nothing anywhere.
#[test]
fn every_node_commits_exactly_its_part_of_a_completed_snapshot_and_nothing_of_an_aborted_one() {
    let mut net = net(4);
    let m = net.send(n(1), n(2));
    let id = net.initiate(n(0));
    net.deliver_controls();
    net.deliver(m);
    net.deliver_all();
    let snaps = net.completed();
    assert_eq!(snaps.len(), 1);
    let snap = &snaps[0];
    for (node, peer) in &net.peers {
        let parts: Vec<_> = peer
            .events
            .iter()
            .filter_map(|e| match e {
                SnapshotEvent::Committed(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(parts.len(), 1, "{node} commits once");
        let part = parts[0];
        assert_eq!(part.id, id);
        assert_eq!(Some(&part.state), snap.states.get(node));
        assert_eq!(Some(&part.cut), snap.cuts.get(node));
        for ((from, to), msgs) in &snap.channels {
            if to == node {
                let mine = part
                    .channels
                    .iter()
                    .find(|(f, _)| f == from)
                    .map_or(&[][..], |(_, m)| m.as_slice());
                assert_eq!(mine, msgs.as_slice(), "{from}->{to}");
            }
        }
    }
    assert!(net.all_timers_clear());

    // A snapshot that times out commits nothing.
    let id2 = net.initiate(n(1));
    let begins = net.controls_where(|m| m.to == n(3));
    for b in begins {
        net.drop_msg(b);
    }
    net.deliver_controls();
    net.advance(TIMEOUT * 3);
    net.fire_timers();
    net.deliver_all();
    assert!(net.aborted().iter().any(|(_, i, _)| *i == id2));
    for peer in net.peers.values() {
        assert!(
            !peer
                .events
                .iter()
                .any(|e| matches!(e, SnapshotEvent::Committed(p) if p.id == id2))
        );
    }
    assert!(net.all_timers_clear());
}
