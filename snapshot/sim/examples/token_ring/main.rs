//! Numbered tokens circling a one-way ring of 5 nodes under 10% loss, duplication,
//! reordering, corruption and two random crashes per run, with a snapshot every 50 ms
//! checked by the application's own invariant: every token exactly once.
//!
//! `cargo run -p shutter-sim --example token_ring [SEEDS]` (default 20 seeds);
//! exits 1 and prints the replay line of the first failing seed.

mod app;

use std::time::Duration;

use shutter_sim::{LinkFaults, Sim, Topology};

const NODES: u32 = 5;
const TOKENS: u32 = 3;

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (mut snapshots, mut crashes) = (0, 0);
    for seed in 0..seeds {
        let report = Sim::new(Topology::ring(NODES), |me| {
            app::TokenRing::new(me, NODES, TOKENS)
        })
        .seed(seed)
        .faults(LinkFaults {
            duplicate: 0.05,
            reorder: 0.2,
            reorder_delay: Duration::from_millis(2),
            corrupt: 0.01,
            ..LinkFaults::lossy(0.1)
        })
        .random_crashes(2)
        .snapshot_every(Duration::from_millis(50))
        .invariant("every token once", app::every_token_once(TOKENS))
        .at_end("every token held", app::all_tokens_held(TOKENS))
        .log(false)
        .run_for(Duration::from_secs(2));
        if !report.passed() {
            eprintln!("{report}");
            std::process::exit(1);
        }
        snapshots += report.completed.len();
        crashes += report.crashes;
    }
    println!(
        "{seeds} seeds passed: {snapshots} snapshots checked, every token exactly once, \
         across {crashes} crashes"
    );
}
