//! The seed swarm: `SHUTTER_SIM_SEEDS` seeds (default 200) from `SHUTTER_SIM_SEED`
//! (default 1), each with its own fault mix, Mattern over the unordered transport.

use shutter_tests::sim::Algorithm;
use shutter_tests::sim::swarm::{run_seeds, seeds_from_env};

#[test]
fn swarm_mattern() {
    let seeds = seeds_from_env(1, 200);
    let cov = run_seeds(seeds, Algorithm::Mattern, "sim_swarm");
    println!("sim_swarm summary: {cov}");
    assert!(
        cov.failed.is_empty(),
        "{} seed(s) failed: {:?} (replay commands above)",
        cov.failed.len(),
        cov.failed
    );
}
