//! (f) Simulator wall time per simulated second, by cluster size.
//!
//! Runs `shutter_tests::sim` on a calm scenario (bank traffic every 5 ms per node,
//! 300 µs link delay, one snapshot every 100 ms) to quiescence, with the traffic span
//! shortened so 256 nodes finish in seconds, and reports wall time / simulated time
//! (virtual time at the end of the run, drain included). The run's own checks must pass.

use std::time::Instant;

use shutter_tests::sim::{Algorithm, Scenario, run as simulate};

use crate::report::{Goal, Section, Target, num, text};

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// `(nodes, simulated traffic span in ms)`.
    pub runs: Vec<(usize, u64)>,
}

impl Opts {
    /// The sizes; shorter spans for the bigger clusters.
    pub fn full() -> Opts {
        Opts {
            runs: vec![(64, 400), (128, 250), (256, 150)],
        }
    }

    /// Seconds-long size for tests.
    pub fn tiny() -> Opts {
        Opts {
            runs: vec![(4, 50)],
        }
    }
}

/// Runs each size once and judges the 256-node target.
pub fn run(opts: &Opts) -> Section {
    let mut s = Section::new(
        "sim",
        "deterministic simulator (Mattern, calm scenario, snapshot every 100 ms), wall time per simulated second",
        &[
            "N",
            "traffic ms",
            "simulated s",
            "wall s",
            "wall s per sim s",
            "steps",
            "snapshots",
            "checks",
        ],
    );
    let mut at256 = None;
    for &(n, span) in &opts.runs {
        let mut sc = Scenario::calm(1, n);
        sc.traffic_ms = span;
        sc.initiations = (1..)
            .map(|k| (0, k * 100))
            .take_while(|(_, t)| *t < span)
            .collect();
        let t0 = Instant::now();
        let out = simulate(&sc, Algorithm::Mattern);
        let wall = t0.elapsed().as_secs_f64();
        let sim_s = out.end.as_micros() as f64 / 1e6;
        let per = wall / sim_s.max(1e-9);
        if n == 256 {
            at256 = Some(per);
        }
        s.row(vec![
            num(n as f64),
            num(span as f64),
            num(sim_s),
            num(wall),
            num(per),
            num(out.steps as f64),
            num(out.completed as f64),
            text(if out.passed() {
                "pass".to_owned()
            } else {
                format!("{} violations", out.violations.len())
            }),
        ]);
    }
    s.targets.push(Target::new(
        "simulator wall time per simulated second at 256 nodes <= 2 s",
        at256,
        Goal::AtMost,
        2.0,
        "s",
    ));
    s
}
