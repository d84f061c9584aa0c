//! Crashes with recovery in the simulator: every node keeps a checkpoint store on its
//! (simulated) disk, and a node that comes back after a real crash rolls the cluster
//! back (`sim::Options::recovery`). Over `SHUTTER_SIM_SEEDS` random scenarios (default
//! 100, from `SHUTTER_SIM_SEED`, default 1) with loss, duplication, reordering, delay,
//! corruption, partitions, pauses and crashes (some during rollbacks, some losing the
//! node's disk or tearing its newest checkpoint), every completed
//! snapshot is consistent and holds exactly the opening money, every committed part is
//! exactly the node's part of its snapshot, and at the end the nodes hold exactly the
//! opening money again. A failing seed prints its replay command.

use shutter_tests::sim::swarm::{replay_command, seeds_from_env};
use shutter_tests::sim::{Algorithm, Options, Scenario, run_with};

#[test]
fn crashes_roll_the_cluster_back_and_the_money_stays_exact() {
    let opts = Options {
        recovery: true,
        ..Options::default()
    };
    let mut failed = Vec::new();
    let (mut crashes, mut rollbacks, mut completed, mut seeds) = (0, 0, 0, 0);
    let (mut disks_lost, mut torn, mut refunded) = (0, 0, 0);
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
        if !out.passed() {
            println!("FAILED seed={seed}: {sc}");
            for v in out.violations.iter().take(8) {
                println!("  violation: {v}");
            }
            println!("  replay: {}", replay_command(seed, "sim_recovery"));
            failed.push(seed);
        }
    }
    println!(
        "sim_recovery summary: seeds={seeds} failed={} crashes={crashes} (disk lost {disks_lost}, newest checkpoint torn {torn}) rollbacks={rollbacks} snapshots-completed={completed} refunds={refunded}",
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
