//! Crashes with recovery in the simulator: every node keeps a checkpoint store on its
//! (simulated) disk, and a node that comes back after a real crash rolls the cluster
//! back (`sim::Options::recovery`). Over `SHUTTER_SIM_SEEDS` random scenarios (default
//! 100, from `SHUTTER_SIM_SEED`, default 1) with loss, duplication, reordering, delay,
//! corruption, partitions, pauses and crashes (some during rollbacks, some losing the
//! node's disk or tearing its newest checkpoint), every completed
//! snapshot is consistent and holds exactly the opening money, every committed part is
//! exactly the node's part of its snapshot, and at the end the nodes hold exactly the
//! opening money again. A failing seed prints its replay command.

use shutter_tests::sim::scenario::{ChangeKind, MemberChange};
use shutter_tests::sim::swarm::{replay_command, seeds_from_env};
use shutter_tests::sim::{Algorithm, Options, Outcome, Scenario, run_with};

/// Prints a failed run with its replay command and records its seed.
fn report(seed: u64, sc: &Scenario, out: &Outcome, failed: &mut Vec<u64>) {
    if !out.passed() {
        println!("FAILED seed={seed}: {sc}");
        for v in out.violations.iter().take(8) {
            println!("  violation: {v}");
        }
        println!("  replay: {}", replay_command(seed, "sim_recovery"));
        failed.push(seed);
    }
}

#[test]
fn crashes_roll_the_cluster_back_and_the_money_stays_exact() {
    let opts = Options {
        recovery: true,
        ..Options::default()
    };
    let mut failed = Vec::new();
    let (mut crashes, mut rollbacks, mut completed, mut seeds) = (0, 0, 0, 0);
    let (mut disks_lost, mut torn, mut refunded, mut supplied) = (0, 0, 0, 0);
    for seed in seeds_from_env(1, 100) {
        let sc = Scenario::random(seed);
        let out = run_with(&sc, Algorithm::Mattern, opts);
        seeds += 1;
        crashes += out.crashes;
        rollbacks += out.rollbacks;
        completed += out.completed;
        disks_lost += out.disks_lost;
        torn += out.checkpoints_torn;
        refunded += out.returned;
        supplied += out.supplied;
        report(seed, &sc, &out, &mut failed);
    }
    println!(
        "sim_recovery summary: seeds={seeds} failed={} crashes={crashes} (disk lost {disks_lost}, newest checkpoint torn {torn}) rollbacks={rollbacks} snapshots-completed={completed} refunds={refunded} restores-from-replicas={supplied}",
        failed.len()
    );
    assert!(failed.is_empty(), "failed seeds: {failed:?}");
    assert!(
        rollbacks > 0,
        "no scenario rolled back: the test exercises nothing"
    );
    assert!(
        disks_lost > 0 && torn > 0,
        "no crash lost a disk or tore a checkpoint: those cases went untested"
    );
}

/// Recovery on; crashes keep their disks (see `Options::disk_damage`): a survivor that
/// lost its disk holds no snapshot with the removed part. Lost disks are the first
/// test's.
fn membership_options() -> Options {
    Options {
        recovery: true,
        disk_damage: false,
        ..Options::default()
    }
}

/// The membership scenario of `seed`: the random scenario plus a removal and an
/// addition (see [`members_leave_and_join_and_the_money_stays_exact`]).
fn membership_scenario(seed: u64) -> Scenario {
    let mut sc = Scenario::random(seed);
    let n = sc.nodes as u32;
    let gone = 1 + (seed as u32 % (n - 1));
    sc.nodes += 1;
    // A removal needs a snapshot whose initiator kept the removed part: a few tries
    // by other members once every partition has healed (the world kills the victim
    // only after one completed). Crashes come after both changes (they then roll
    // the changed cluster back from its re-based stores).
    let healed = sc
        .partitions
        .iter()
        .map(|p| p.end.as_millis() as u64)
        .max()
        .unwrap_or(0)
        .max(sc.traffic_ms / 3);
    let tries = [0, 40, 80, 120].map(|d| ((gone + 1 + d as u32) % n, healed + d));
    sc.initiations
        .extend(tries.iter().filter(|(k, _)| *k != gone));
    sc.initiations.sort_by_key(|&(k, t)| (t, k));
    let remove_at = healed + 150;
    let add_at = remove_at + 200;
    sc.traffic_ms = sc.traffic_ms.max(add_at + 300);
    sc.crashes.retain(|c| c.at_ms > add_at + 50);
    sc.changes = vec![
        MemberChange {
            at_ms: remove_at,
            via: 0,
            change: ChangeKind::Remove(gone),
        },
        MemberChange {
            at_ms: add_at,
            via: if gone == n - 1 { 0 } else { n - 1 },
            change: ChangeKind::Add(n),
        },
    ];
    sc
}

/// Membership changes on top of the same random scenarios: a member (not node 0) dies
/// for good a third into the traffic and is removed through node 0; a new node, waiting
/// from the start with no money, is added through another member half-way. Every
/// completed snapshot and the end state hold exactly the founders' money: the removed
/// member's part went to its heir, the new one brought nothing.
#[test]
fn members_leave_and_join_and_the_money_stays_exact() {
    let opts = membership_options();
    let mut failed = Vec::new();
    let (mut changes, mut skipped, mut completed, mut seeds, mut supplied) = (0, 0, 0, 0, 0);
    for seed in seeds_from_env(1, 60) {
        let sc = membership_scenario(seed);
        let out = run_with(&sc, Algorithm::Mattern, opts);
        seeds += 1;
        changes += out.membership_changes;
        skipped += out.membership_skipped;
        completed += out.completed;
        supplied += out.supplied;
        report(seed, &sc, &out, &mut failed);
    }
    println!(
        "sim_recovery membership summary: seeds={seeds} failed={} changes={changes} removals-skipped={skipped} (no snapshot ever completed) snapshots-completed={completed} restores-from-replicas={supplied}",
        failed.len()
    );
    assert!(failed.is_empty(), "failed seeds: {failed:?}");
    assert_eq!(
        changes + skipped,
        2 * seeds,
        "every addition, and every removal that had a snapshot to go back to, was accepted"
    );
    assert!(
        changes >= seeds * 3 / 2,
        "most removals were skipped: the test exercises little"
    );
}

/// Seed 323 lost 57 of the money: a member coordinating a pending addition of n5 (a
/// change a newer round had superseded) still treated n5 as "joining" after the round
/// that added it, and dropped n5's transfers as from a non-member after its transport
/// had acknowledged them. Found at 400 seeds; fails without the fix in
/// `Stack::on_delivered`.
#[test]
fn a_joiner_named_by_a_pending_change_is_a_member_once_added() {
    let opts = membership_options();
    let sc = membership_scenario(323);
    let out = run_with(&sc, Algorithm::Mattern, opts);
    assert!(out.passed(), "{:?}", out.violations);
    assert_eq!(out.membership_changes, 2);
}

/// Seeds the wide sweeps found, run every time (the default range does not reach them):
/// 1889 (a part a supplier sent re-based the disk over the genesis checkpoint, and a
/// later round found nothing every member held), 2788 and 2927 (a process that lost its
/// disk and started fresh during a round sent messages in a life above its epoch, which
/// the others delivered as early after their restore: money made), 937 of the
/// membership scenario (no snapshot every member held while `Done`s were on their way).
#[test]
fn seeds_the_wide_sweeps_found() {
    let mut failed = Vec::new();
    let crash = Options {
        recovery: true,
        ..Options::default()
    };
    for seed in [1889, 2788, 2927] {
        let sc = Scenario::random(seed);
        report(
            seed,
            &sc,
            &run_with(&sc, Algorithm::Mattern, crash),
            &mut failed,
        );
    }
    let sc = membership_scenario(937);
    report(
        937,
        &sc,
        &run_with(&sc, Algorithm::Mattern, membership_options()),
        &mut failed,
    );
    assert!(failed.is_empty(), "failed seeds: {failed:?}");
}
