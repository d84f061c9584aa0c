//! Distributed deadlock detection: 5 nodes, each owning 4 locks, run random two-lock
//! transactions for a second over links with 2 ms (+-1 ms) delay, 10% loss,
//! duplication, reordering and corruption, with a snapshot every 10 ms. The detector
//! reads each snapshot's wait-for graph (lock tables plus the messages in flight) and
//! reports its cycles; every reported deadlock must still be there in every later
//! snapshot and at the end (deadlocks are stable), or it was a phantom.
//!
//! For contrast it also reads the same snapshots the naive ways, ignoring the messages
//! in flight or polling one node per snapshot, and counts the phantoms those report.
//!
//! `cargo run -p shutter-sim --example deadlock [SEEDS]` (default 10 seeds); exits 1
//! and prints the report with its replay line on the first failing seed.

mod app;

use std::time::Duration;

use shutter_sim::{LinkFaults, NodeId, Sim, Topology};

const NODES: u32 = 5;

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let nodes: Vec<NodeId> = (0..NODES).map(NodeId).collect();
    let (mut snapshots, mut runs_deadlocked, mut deadlocks) = (0, 0, 0);
    let (mut blind_phantoms, mut polled_phantoms) = (0, 0);
    for seed in 0..seeds {
        let detector = app::Detector::shared();
        let sim = Sim::new(Topology::complete(&nodes), move |me| {
            app::Locks::new(me, app::Workload::random(seed))
        })
        .seed(seed)
        .faults(LinkFaults {
            duplicate: 0.05,
            reorder: 0.2,
            reorder_delay: Duration::from_millis(2),
            corrupt: 0.01,
            delay: Duration::from_millis(2),
            jitter: Duration::from_millis(1),
            ..LinkFaults::lossy(0.1)
        })
        .snapshot_every(Duration::from_millis(10));
        let mut report = app::Detector::watch(&detector, sim).run_for(Duration::from_secs(1));
        let verdict = app::judge(&detector, &mut report);
        if !report.passed() {
            eprintln!("{report}");
            std::process::exit(1);
        }
        let detector = detector.borrow();
        let mut poller = app::Poller::default();
        // The naive readings of the same snapshots, judged alike (the log added up:
        // the exact judgment above would have failed otherwise).
        let naive = |read: &mut dyn FnMut(&app::Seen) -> Vec<Vec<NodeId>>| {
            detector
                .verdict(&report, read)
                .map_or(0, |v| v.phantoms.len())
        };
        let blind = naive(&mut app::channel_blind);
        let polled = naive(&mut |s| poller.poll(s).into_iter().collect());
        for f in &verdict.found {
            println!(
                "seed {seed}: deadlock {} found by snapshot {} (started at {} ms), still \
                 there at the end",
                app::show(&f.cycle),
                f.by,
                f.started.as_micros() / 1000
            );
        }
        snapshots += report.completed.len();
        deadlocks += verdict.found.len();
        runs_deadlocked += usize::from(!verdict.found.is_empty());
        blind_phantoms += blind;
        polled_phantoms += polled;
    }
    println!(
        "{seeds} seeds passed: {snapshots} snapshots checked, {deadlocks} deadlocks found in \
         {runs_deadlocked} runs, no phantom; the same snapshots read ignoring the messages in \
         flight would have reported {blind_phantoms} phantom deadlocks, polled one node at a \
         time {polled_phantoms}"
    );
}
