//! Many seeds, VOPR-style: each seed draws its own [`Scenario`]; failures print the seed,
//! the fault mix and a one-line replay command; a summary line says what was covered.

use std::collections::BTreeMap;
use std::fmt;

use super::{Algorithm, Outcome, Scenario, run};

/// Seeds from `SHUTTER_SIM_SEED` (first, default `default_seed`) and `SHUTTER_SIM_SEEDS`
/// (count, default `default_count`).
pub fn seeds_from_env(default_seed: u64, default_count: u64) -> std::ops::Range<u64> {
    let get = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(d)
    };
    let first = get("SHUTTER_SIM_SEED", default_seed);
    first..first.saturating_add(get("SHUTTER_SIM_SEEDS", default_count))
}

/// The command that replays one seed of an integration test binary.
pub fn replay_command(seed: u64, test_binary: &str) -> String {
    format!(
        "SHUTTER_SIM_SEED={seed} SHUTTER_SIM_SEEDS=1 cargo test -p shutter-tests --test {test_binary} -- --nocapture"
    )
}

/// What a swarm covered.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds that failed.
    pub failed: Vec<u64>,
    /// Snapshots started, completed, aborted.
    pub initiated: u64,
    /// Completed (and checked) snapshots.
    pub completed: u64,
    /// Aborted snapshots.
    pub aborted: u64,
    /// Snapshots the initiator's own check refused (must stay 0).
    pub failed_checks: u64,
    /// Channel messages checked against the oracle.
    pub recorded_messages: u64,
    /// Application messages sent.
    pub app_messages: u64,
    /// Datagrams through the fault injector.
    pub datagrams: u64,
    /// Application headers shipped diffed against a baseline, of all shipped.
    pub headers_diffed: u64,
    /// Application headers shipped (whole or diffed).
    pub headers_shipped: u64,
    /// Crashes that happened.
    pub crashes: u64,
    /// Seeds per fault kind.
    pub kinds: BTreeMap<&'static str, u64>,
    /// Seeds per cluster-size bucket.
    pub sizes: BTreeMap<&'static str, u64>,
    /// Seeds per initiator count.
    pub initiators: BTreeMap<usize, u64>,
}

impl Coverage {
    /// Adds one run.
    pub fn add(&mut self, sc: &Scenario, out: &Outcome) {
        self.seeds += 1;
        if !out.passed() {
            self.failed.push(sc.seed);
        }
        self.initiated += out.initiated;
        self.completed += out.completed;
        self.aborted += out.aborted;
        self.failed_checks += out.failed_checks;
        self.recorded_messages += out.recorded_messages;
        self.app_messages += out.app_messages;
        self.datagrams += out.faults.datagrams;
        self.headers_diffed += out.headers_diffed;
        self.headers_shipped += out.headers_diffed + out.headers_whole;
        self.crashes += out.crashes;
        let kinds = sc.fault_kinds();
        if kinds.is_empty() {
            *self.kinds.entry("clean").or_default() += 1;
        }
        for k in kinds {
            *self.kinds.entry(k).or_default() += 1;
        }
        let size = match sc.nodes {
            0..=3 => "2-3",
            4..=8 => "4-8",
            9..=16 => "9-16",
            _ => "17-32",
        };
        *self.sizes.entry(size).or_default() += 1;
        *self.initiators.entry(sc.initiator_count()).or_default() += 1;
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seeds={} failed={} snapshots: initiated={} completed={} aborted={} \
             failed-checks={} channel-msgs-checked={} app-msgs={} headers-diffed={}/{} datagrams={} \
             crashes={} | faults:",
            self.seeds,
            self.failed.len(),
            self.initiated,
            self.completed,
            self.aborted,
            self.failed_checks,
            self.recorded_messages,
            self.app_messages,
            self.headers_diffed,
            self.headers_shipped,
            self.datagrams,
            self.crashes
        )?;
        for (k, n) in &self.kinds {
            write!(f, " {k}={n}")?;
        }
        f.write_str(" | nodes:")?;
        for (k, n) in &self.sizes {
            write!(f, " {k}={n}")?;
        }
        f.write_str(" | initiators:")?;
        for (k, n) in &self.initiators {
            write!(f, " {k}={n}")?;
        }
        Ok(())
    }
}

/// Runs every seed in `seeds` with `algorithm`; prints each failure (seed, fault mix,
/// violations, replay command for `test_binary`) and returns the coverage.
pub fn run_seeds(seeds: std::ops::Range<u64>, algorithm: Algorithm, test_binary: &str) -> Coverage {
    let mut cov = Coverage::default();
    for seed in seeds {
        let sc = Scenario::random(seed);
        let out = run(&sc, algorithm);
        if !out.passed() {
            println!("FAILED seed={seed} algorithm={algorithm:?}");
            println!("  fault mix: {sc}");
            for v in out.violations.iter().take(10) {
                println!("  violation: {v}");
            }
            if out.violations.len() > 10 {
                println!("  ... {} more", out.violations.len() - 10);
            }
            println!("  replay: {}", replay_command(seed, test_binary));
        }
        cov.add(&sc, &out);
    }
    cov
}
