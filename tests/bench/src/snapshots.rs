//! (c) Snapshot completion latency, Mattern vs Chandy-Lamport, side by side.
//!
//! A bank cluster (`LocalCluster`, one process, 127.0.0.1) with the runtime's own fault
//! injection (Bernoulli loss on every link). *Warm*: traffic runs for a warm-up, then
//! snapshots are taken one at a time from rotating initiators. *Cold*: a fresh cluster
//! takes one snapshot the instant it is connected (first contact: no RTT estimate, no
//! sessions yet), repeated over fresh clusters. The two algorithms alternate within each
//! (size, loss) cell so both see the same machine load. Every completed snapshot is
//! checked (structure and conserved money); aborts and timeouts are counted, not hidden.

use std::time::Duration;

use anyhow::Result;
use hdrhistogram::Histogram;
use shutter_snapshot::bank::{Bank, BankConfig, BankInvariant};
use shutter_snapshot::runtime::{Algorithm, LocalCluster};
use shutter_vclock::NodeId;

use crate::cluster::{Finish, config, wait_for};
use crate::report::{Goal, Section, Target, num, text};

const INITIAL: u64 = 1_000;

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Cluster sizes.
    pub sizes: Vec<usize>,
    /// Loss rates.
    pub losses: Vec<f64>,
    /// Warm snapshots per cell (per algorithm) for each size: `(size, count)`;
    /// sizes not listed take `warm_default`.
    pub warm: Vec<(usize, usize)>,
    /// Warm snapshots for sizes not in `warm`.
    pub warm_default: usize,
    /// Cold starts per cell (per algorithm), by size as `warm`.
    pub cold: Vec<(usize, usize)>,
    /// Cold starts for sizes not in `cold`.
    pub cold_default: usize,
    /// Traffic before the first warm snapshot, by size as `warm` (it also supplies most
    /// of the application latency samples).
    pub warmup: Vec<(usize, Duration)>,
    /// Traffic before the first warm snapshot for sizes not in `warmup`.
    pub warmup_default: Duration,
    /// Longest wait for one snapshot.
    pub wait: Duration,
}

impl Opts {
    /// The matrix at sample counts that fit a few minutes.
    pub fn full() -> Opts {
        Opts {
            sizes: vec![8, 64],
            losses: vec![0.0, 0.1, 0.2],
            // 8 nodes: 100 samples a cell, so that a p99 is not simply the maximum,
            // and enough bank traffic for a p99 of thousands of deliveries; 64 nodes
            // cost a second a cold start, and send 8 times the traffic.
            warm: vec![(8, 100), (64, 12)],
            warm_default: 10,
            cold: vec![(8, 100), (64, 3)],
            cold_default: 3,
            warmup: vec![(8, Duration::from_millis(1500))],
            warmup_default: Duration::from_millis(300),
            wait: Duration::from_secs(20),
        }
    }

    /// Seconds-long size for tests.
    pub fn tiny() -> Opts {
        Opts {
            sizes: vec![3],
            losses: vec![0.0, 0.1],
            warm: vec![],
            warm_default: 2,
            cold: vec![],
            cold_default: 1,
            warmup: vec![],
            warmup_default: Duration::from_millis(50),
            wait: Duration::from_secs(10),
        }
    }

    fn count(table: &[(usize, usize)], default: usize, n: usize) -> usize {
        table
            .iter()
            .find(|(s, _)| *s == n)
            .map_or(default, |(_, c)| *c)
    }
}

/// Outcomes of one (size, loss, algorithm, start) cell.
#[derive(Debug)]
struct Cell {
    latency: Histogram<u64>,
    /// Application message delivery latency over the warm runs (µs; the stack's
    /// `app_delivery_latency`: first transmission to decoding, control excluded).
    delivery: Histogram<u64>,
    failed_checks: u64,
    aborted: u64,
    timed_out: u64,
}

impl Cell {
    fn new() -> Result<Cell> {
        Ok(Cell {
            latency: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            delivery: Histogram::new_with_bounds(1, shutter_transport::core::LATENCY_MAX_US, 3)?,
            failed_checks: 0,
            aborted: 0,
            timed_out: 0,
        })
    }

    fn add(&mut self, f: Finish) {
        match f {
            Finish::Completed { micros, ok } => {
                self.latency.saturating_record(micros.max(1));
                if !ok {
                    self.failed_checks += 1;
                }
            }
            Finish::Aborted(_) => self.aborted += 1,
            Finish::TimedOut => self.timed_out += 1,
        }
    }

    fn ms(&self, q: f64) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q) as f64 / 1e3)
    }

    fn app_ms(&self, q: f64) -> Option<f64> {
        (!self.delivery.is_empty()).then(|| self.delivery.value_at_quantile(q) as f64 / 1e3)
    }
}

/// Fault seed of the warm runs; cold start `rep` uses `SEED + rep`.
const SEED: u64 = 14;

async fn bank_cluster(
    n: usize,
    algorithm: Algorithm,
    loss: f64,
    seed: u64,
) -> Result<LocalCluster> {
    let base = config(algorithm, loss, Duration::from_millis(5), seed);
    let bank = |id| {
        Bank::new(
            id,
            BankConfig {
                seed: 1,
                initial: INITIAL,
                transfer_probability: 0.5,
                max_transfer: 50,
            },
        )
    };
    Ok(LocalCluster::start(n, base, bank).await?)
}

async fn warm(
    n: usize,
    algorithm: Algorithm,
    loss: f64,
    opts: &Opts,
    snapshots: usize,
    cell: &mut Cell,
) -> Result<()> {
    let mut cluster = bank_cluster(n, algorithm, loss, SEED).await?;
    let invariant = BankInvariant {
        total: n as u64 * INITIAL,
    };
    let warmup = opts
        .warmup
        .iter()
        .find(|(s, _)| *s == n)
        .map_or(opts.warmup_default, |(_, d)| *d);
    tokio::time::sleep(warmup).await;
    for i in 0..snapshots {
        let id = cluster.initiate(NodeId((i % n) as u32)).await?;
        cell.add(wait_for(&mut cluster, id, opts.wait, &[&invariant]).await);
    }
    for stats in cluster.shutdown().await? {
        cell.delivery.add(&stats.app_delivery_latency)?;
    }
    Ok(())
}

/// One cold start. Each repetition `rep` draws its losses from its own seed: with one
/// seed for all, every cold start of a cell met the same losses on first contact and
/// its samples were one sample repeated.
async fn cold(
    n: usize,
    algorithm: Algorithm,
    loss: f64,
    opts: &Opts,
    rep: u64,
    cell: &mut Cell,
) -> Result<()> {
    let mut cluster = bank_cluster(n, algorithm, loss, SEED + rep).await?;
    let invariant = BankInvariant {
        total: n as u64 * INITIAL,
    };
    let id = cluster.initiate(NodeId(0)).await?;
    cell.add(wait_for(&mut cluster, id, opts.wait, &[&invariant]).await);
    cluster.shutdown().await?;
    Ok(())
}

const ALGOS: [Algorithm; 2] = [Algorithm::Mattern, Algorithm::ChandyLamport];

/// Runs the matrix and judges the snapshot targets.
pub async fn run(opts: &Opts) -> Result<Section> {
    let mut s = Section::new(
        "snapshots",
        "snapshot completion latency (initiation to assembly at the initiator), bank cluster on loopback, runtime fault injection",
        &[
            "N",
            "loss %",
            "start",
            "algorithm",
            "samples",
            "p50 ms",
            "p99 ms",
            "max ms",
            "aborted",
            "timed out",
            "failed checks",
            "app p50 ms",
            "app p99 ms",
        ],
    );
    // (n, loss, warm?, algorithm index) -> p99 for the targets.
    let mut p99 = std::collections::BTreeMap::new();
    let mut app99 = std::collections::BTreeMap::new();
    for &n in &opts.sizes {
        for &loss in &opts.losses {
            for start in ["warm", "cold"] {
                let mut cells = [Cell::new()?, Cell::new()?];
                // Warm snapshots in two halves per algorithm, cold starts one by one,
                // alternating the algorithms: side by side under the same load.
                let warm_total = Opts::count(&opts.warm, opts.warm_default, n);
                let reps = if start == "warm" {
                    2
                } else {
                    Opts::count(&opts.cold, opts.cold_default, n)
                };
                for rep in 0..reps {
                    for (a, algorithm) in ALGOS.iter().enumerate() {
                        if start == "warm" {
                            let half = warm_total / 2 + usize::from(rep == 0) * (warm_total % 2);
                            warm(n, *algorithm, loss, opts, half, &mut cells[a]).await?;
                        } else {
                            cold(n, *algorithm, loss, opts, rep as u64, &mut cells[a]).await?;
                        }
                    }
                }
                for (a, algorithm) in ALGOS.iter().enumerate() {
                    let c = &cells[a];
                    p99.insert((n, (loss * 100.0).round() as u32, start, a), c.ms(0.99));
                    if start == "warm" {
                        app99.insert((n, (loss * 100.0).round() as u32, a), c.app_ms(0.99));
                    }
                    s.row(vec![
                        num(n as f64),
                        num((loss * 100.0).round()),
                        text(start),
                        text(algorithm.to_string()),
                        num(c.latency.len() as f64),
                        c.ms(0.5).map_or(serde_json::Value::Null, num),
                        c.ms(0.99).map_or(serde_json::Value::Null, num),
                        c.ms(1.0).map_or(serde_json::Value::Null, num),
                        num(c.aborted as f64),
                        num(c.timed_out as f64),
                        num(c.failed_checks as f64),
                        c.app_ms(0.5).map_or(serde_json::Value::Null, num),
                        c.app_ms(0.99).map_or(serde_json::Value::Null, num),
                    ]);
                }
            }
        }
    }
    let get = |n, l, st, a| p99.get(&(n, l, st, a)).copied().flatten();
    s.targets.push(Target::new(
        "8-node snapshot p99 at 0% loss (warm, Mattern) <= 0.5 ms",
        get(8, 0, "warm", 0),
        Goal::AtMost,
        0.5,
        "ms",
    ));
    s.targets.push(Target::new(
        "8-node snapshot p99 at 10% loss (warm, Mattern) <= 7.5 ms",
        get(8, 10, "warm", 0),
        Goal::AtMost,
        7.5,
        "ms",
    ));
    s.targets.push(Target::new(
        "64-node snapshot p99 at 0% loss (warm, Mattern) <= 5 ms",
        get(64, 0, "warm", 0),
        Goal::AtMost,
        5.0,
        "ms",
    ));
    for n in [8, 64] {
        for l in [10, 20] {
            for st in ["warm", "cold"] {
                let (m, c) = (get(n, l, st, 0), get(n, l, st, 1));
                // Mattern's p99 as a fraction of Chandy-Lamport's: below 1 is better.
                let ratio = m.zip(c).map(|(m, c)| m / c.max(1e-9));
                s.targets.push(Target::new(
                    format!("Mattern snapshot p99 / Chandy-Lamport's, N={n}, {l}% loss, {st} < 1"),
                    ratio,
                    Goal::AtMost,
                    1.0,
                    "x",
                ));
            }
            let app = app99
                .get(&(n, l, 0))
                .copied()
                .flatten()
                .zip(app99.get(&(n, l, 1)).copied().flatten());
            s.targets.push(Target::new(
                format!("Mattern application p99 / Chandy-Lamport's, N={n}, {l}% loss, warm < 1"),
                app.map(|(m, c)| m / c.max(1e-9)),
                Goal::AtMost,
                1.0,
                "x",
            ));
        }
    }
    s.notes.push("cold = one snapshot per fresh cluster right after it connects; p99 of few samples is close to the max".into());
    s.notes.push("app p50/p99: delivery latency of the bank's messages over the warm runs (`Stack::app_delivery_latency`: first transmission to decoding at the receiver; snapshot control messages are not in it, which the transport's own histogram counts too; Chandy-Lamport runs the transport in FIFO mode); strict '<' is judged as '<= 1'".into());
    Ok(s)
}
